"""Kills during saves survived: kill -9 a process that saves over one checkpoint again and again, then load it.

A chain of runs: run 0 saves step 1, then step after step ("saving K" ... "saved K"); once it has saved
in that loop, it waits a random 0.05-1.5 s and is killed with SIGKILL. Run 1, a fresh process, loads what
is at the path, checks it (``whole``: every value equals the step it records; ``valid``: that step is
the last save that finished before the kill or the one in progress), saves the next step, lists the
folder (anything beside the checkpoint is a leftover) and is killed in its own loop in turn; the last
run only loads, saves and ends. N kills take N + 1 runs.

- ``kill``: ``scripts/save_loop.py``, one CPU process, a ~50 MB state, ``fabric.save`` to one file.
- ``sharded_kill``: ``scripts/sharded_loop.py``, fabric-fsdp's sharded checkpoint (a folder) written by two
  gloo processes; the kill hits rank 0, rank 1 or both (in turn), the load is a fresh two-process run.
"""

from __future__ import annotations

import ast
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tools.reliability.context import Context
from tools.reliability.processes import SCRIPTS, Ended, Run, crash_problems, tail

SINGLE_RUNS, SHARDED_RUNS = 20, 4
SIZE_MB = 50
SHARDED_LAYERS = 4  # Linear(1024, 1024) each: 16 MB in all, 8 MB per rank
DELAY_S = (0.05, 1.5)
SHARDED_VICTIMS = ("rank 0", "rank 1", "both")


def _last(ended: Ended, prefix: str) -> int:
    steps = [int(text) for text in ended.lines(prefix)]
    return max(steps, default=0)


def _killed(ctx: Context, run: Run, victim: str) -> dict:
    """Wait for the first save of the loop, then SIGKILL ``victim`` after a random delay; what it was doing."""
    if run.wait_for("saved ", time.time() + ctx.timeout) is None:
        ended = run.finish(ctx.timeout)
        return {"error": f"no save before the kill; {'; '.join(crash_problems(ended))}: {tail(ended.stderr)}"}
    delay = ctx.rng.uniform(*DELAY_S)
    time.sleep(delay)
    pids = {int(rank): int(pid) for _, rank, pid in (line.split() for line in run.stdout if line.startswith("pid "))}
    rank = {"rank 0": 0, "rank 1": 1}.get(victim)
    if rank is not None and rank not in pids:
        victim = f"all ({victim} printed no pid)"
    run.kill(pids.get(rank))  # None: the whole process group
    ended = run.finish(ctx.timeout)
    started, done = _last(ended, "saving "), _last(ended, "saved ")
    return {
        "victim": victim,
        "delay_s": round(delay, 3),
        "last_started": started,
        "last_done": done,
        "mid_save": started > done,
        "returncode": ended.returncode,
        "stragglers": ended.stragglers,
    }


def _loaded(ctx: Context, run: Run, record: dict, name: str) -> None:
    """Read the load's result and the folder's entries from a fresh run into the previous kill's record."""
    line = run.wait_for("entries: ", time.time() + ctx.timeout)
    loads = [text for text in run.stdout if text.startswith(("loaded ", "load failed: "))]
    record["warnings"] = [text for text in run.stdout if text.startswith("warning: ")]
    if not loads:
        record["load"] = "no result"
    elif loads[-1].startswith("load failed: "):
        record["load"] = loads[-1]
    else:
        _, step, how = loads[-1].split()
        record.update(loaded_step=int(step), whole=how == "whole", load="ok")
        record["valid"] = record["whole"] and int(step) in (record.get("last_done"), record.get("last_started"))
    entries = ast.literal_eval(line[len("entries: ") :]) if line else None
    record["leftovers"] = None if entries is None else [entry for entry in entries if entry != name]


#: The command of one run of a chain, given the folder and whether to load first and to loop.
Command = Callable[[Path, bool, bool], list[str]]


def chain(ctx: Context, n: int, command: Command, name: str, victims: tuple[str, ...]) -> list[dict]:
    """N kills in N + 1 runs saving to ``folder/name``, the kills hitting ``victims`` in turn; one record each."""
    folder = ctx.folder(name)
    records: list[dict] = []
    run = None
    try:
        for index in range(n + 1):
            run = Run(command(folder, index > 0, index < n))
            if index > 0:
                _loaded(ctx, run, records[-1], name)
                ctx.log(f"  kill {index}/{n}: {_verdict(records[-1])}")
            if index < n:
                records.append(_killed(ctx, run, victims[index % len(victims)]))
            else:
                ended = run.finish(ctx.timeout)
                if crash_problems(ended):
                    records[-1]["final_run"] = "; ".join(crash_problems(ended)) + ": " + tail(ended.stderr)
    finally:
        if run is not None:
            run.kill()  # after a harness error: nothing of the run may outlive it
        shutil.rmtree(folder, ignore_errors=True)
    return records


def _verdict(record: dict) -> str:
    if "error" in record:
        return record["error"]
    when = "mid-save" if record["mid_save"] else "between saves"
    what = f"loaded step {record.get('loaded_step')}" if record["load"] == "ok" else record["load"]
    whole = "whole" if record.get("valid") else "NOT whole or not the right step"
    warned = f"; warnings {record['warnings']}" if record["warnings"] else ""
    return (
        f"{record['victim']} killed {when} (step {record['last_started']} started, {record['last_done']} done); "
        f"{what}, {whole}; leftovers {record['leftovers']}{warned}"
    )


def _summary(records: list[dict], title: str, variant: str, id: str) -> dict:
    n = len(records)
    survived = sum(bool(r.get("valid")) for r in records)
    mid = sum(bool(r.get("mid_save")) for r in records)
    leftovers = sum(len(r.get("leftovers") or []) for r in records)
    warned = sum(bool(r.get("warnings")) for r in records)
    notes = [f"{mid} of the kills hit a save in progress", f"{leftovers} leftover files after the next save"]
    if warned:
        notes.append(f"{warned} loads warned (read a complete copy beside the path)")
    errors = [r.get("error") or r.get("final_run") for r in records if r.get("error") or r.get("final_run")]
    notes += errors
    row = {"variant": variant, "runs": n, "result": f"{survived}/{n} loaded whole", "notes": "; ".join(notes)}
    line = f"{survived}/{n} loaded whole, {mid} killed mid-save, {leftovers} leftovers"
    return {"id": id, "title": title, "line": line, "rows": [row], "records": records}


def _loop(script: str, size: int) -> Command:
    """The command of one run of a chain: ``python SCRIPT FOLDER SIZE LOAD LOOP``."""

    def command(folder: Path, load: bool, loop: bool) -> list[str]:
        return [sys.executable, str(SCRIPTS / script), str(folder), str(size), str(int(load)), str(int(loop))]

    return command


def run_single(ctx: Context) -> dict:
    records = chain(ctx, ctx.runs_for(SINGLE_RUNS), _loop("save_loop.py", SIZE_MB), "ckpt.pt", ("process",))
    variant = f"`fabric.save`, one file, {SIZE_MB} MB, 1 process"
    return _summary(records, "Kills during single-file saves survived", variant, "kill")


def run_sharded(ctx: Context) -> dict:
    n = ctx.runs_for(SHARDED_RUNS)
    records = chain(ctx, n, _loop("sharded_loop.py", SHARDED_LAYERS), "ckpt", SHARDED_VICTIMS)
    victims = "/".join(SHARDED_VICTIMS[:n])
    variant = f"fabric-fsdp sharded folder, {SHARDED_LAYERS * 4} MB, 2 gloo processes (kill {victims})"
    return _summary(records, "Kills during sharded saves survived", variant, "sharded_kill")

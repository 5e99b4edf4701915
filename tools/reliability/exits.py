"""Runs without an exit crash: a short two-process DDP run (``scripts/ddp_exit.py``) that ends normally.

Each run trains a few steps, saves a checkpoint and ends; it counts as clean when the top process exits 0
within the time limit, both ranks printed their last line, the checkpoint exists, stderr holds none of
:data:`~tools.reliability.processes.CRASH_SIGNATURES` and no process of the run is left behind. The two
launchers alternate run by run: ``python script.py`` (``fabric.launch()`` starts rank 1) and
``fabric run --accelerator cpu --devices 2 script.py``.
"""

from __future__ import annotations

import shutil

from tools.reliability.context import Context, spread
from tools.reliability.processes import Run, crash_problems, script_command, tail

DEFAULT_RUNS = 4
LAUNCHERS = ("python", "fabric run")
SCRIPT = "ddp_exit.py"


def once(ctx: Context, launcher: str) -> dict:
    folder = ctx.folder("exit")
    try:
        ended = Run(script_command(launcher, SCRIPT, str(folder / "ckpt.pt"))).finish(ctx.timeout)
        problems = crash_problems(ended)
        problems += [f"no 'rank {r} done'" for r in (0, 1) if f"rank {r} done" not in ended.stdout]
        if not (folder / "ckpt.pt").is_file():
            problems.append("no checkpoint")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "launcher": launcher,
        "returncode": ended.returncode,
        "seconds": round(ended.seconds, 2),
        "problems": problems,
        "stderr_tail": tail(ended.stderr) if problems else "",
    }


def run(ctx: Context) -> dict:
    n = ctx.runs_for(DEFAULT_RUNS)
    records = []
    for index in range(n):
        for launcher in LAUNCHERS:
            record = once(ctx, launcher)
            records.append(record)
            verdict = "clean" if not record["problems"] else "; ".join(record["problems"])
            ctx.log(f"exit {index + 1}/{n} {launcher}: {verdict} ({record['seconds']:.1f} s)")
    rows = []
    for launcher in LAUNCHERS:
        mine = [r for r in records if r["launcher"] == launcher]
        clean = sum(not r["problems"] for r in mine)
        seen = sorted({p for r in mine for p in r["problems"]})
        rows.append(
            {
                "variant": f"`{launcher} script.py`",
                "runs": len(mine),
                "result": f"{clean}/{len(mine)} clean",
                "notes": "; ".join(seen) or f"median run {spread([r['seconds'] for r in mine])['median']:.1f} s",
            }
        )
    line = ", ".join(f"{row['variant']} {row['result']}" for row in rows)
    return {"id": "exit", "title": "Runs without an exit crash", "line": line, "rows": rows, "records": records}

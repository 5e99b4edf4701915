"""Time for a dead rank to end the run: rank 1 of a training DDP run dies, how long until the run has ended.

``scripts/rank_dies.py``: both ranks train with a collective every step; after 20 steps rank 1 writes
``time.time()`` to a file and dies, by ``os._exit(1)`` or by an uncaught exception. The time measured runs
from that stamp to the moment the top process (rank 0, or ``fabric run``) has ended; its exit status is
recorded too (the run failed, so it must not be 0). The four variants alternate run by run.
"""

from __future__ import annotations

import shutil

from tools.reliability.context import Context, spread
from tools.reliability.processes import Run, crash_problems, script_command, tail

DEFAULT_RUNS = 3
VARIANTS = [(launcher, how) for launcher in ("python", "fabric run") for how in ("exit", "raise")]
HOW = {"exit": "os._exit(1)", "raise": "raise"}


def once(ctx: Context, launcher: str, how: str) -> dict:
    folder = ctx.folder("dead-rank")
    stamp = folder / "died"
    try:
        ended = Run(script_command(launcher, "rank_dies.py", how, str(stamp))).finish(ctx.timeout)
        died = float(stamp.read_text()) if stamp.is_file() else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    problems = [p for p in crash_problems(ended) if not p.startswith(("exit code", "killed by", "stderr: 'Traceback'"))]
    return {
        "launcher": launcher,
        "how": how,
        "returncode": ended.returncode,
        "seconds": None if died is None or ended.timed_out else round(ended.ended - died, 3),
        "problems": problems if died is not None else [*problems, "rank 1 never died"],
        "summary": [line for line in ended.stderr.splitlines() if line.startswith("fabric run:")],
        "stderr_tail": tail(ended.stderr),
    }


def _row(records: list[dict], launcher: str, how: str) -> dict:
    mine = [r for r in records if r["launcher"] == launcher and r["how"] == how]
    times = spread([r["seconds"] for r in mine if r["seconds"] is not None])
    codes = sorted({str(r["returncode"]) for r in mine})
    result = "no time" if times["n"] == 0 else f"{times['median']:.2f} s ({times['min']:.2f}\u2013{times['max']:.2f})"
    notes = [f"exit status {', '.join(codes)}"]
    notes += sorted({p for r in mine for p in r["problems"]})
    if any(r["returncode"] == 0 for r in mine):
        notes.append("exit status 0 after a rank died")
    return {
        "variant": f"`{launcher} script.py`, rank 1 {HOW[how]}",
        "runs": len(mine),
        "result": result,
        "notes": "; ".join(notes),
        **{k: times[k] for k in ("median", "min", "max")},
    }


def run(ctx: Context) -> dict:
    n = ctx.runs_for(DEFAULT_RUNS)
    records = []
    for index in range(n):
        for launcher, how in VARIANTS:
            record = once(ctx, launcher, how)
            records.append(record)
            took = "no time" if record["seconds"] is None else f"{record['seconds']:.2f} s"
            extra = "; ".join(record["problems"])
            ctx.log(f"dead rank {index + 1}/{n} {launcher} {how}: {took}, exit status {record['returncode']} {extra}")
    rows = [_row(records, launcher, how) for launcher, how in VARIANTS]
    line = ", ".join(f"{row['variant']}: {row['result']}" for row in rows)
    return {
        "id": "dead_rank",
        "title": "Time for a dead rank to end the run",
        "line": line,
        "rows": rows,
        "records": records,
    }

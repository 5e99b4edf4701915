"""The reliability figures of docs/reliability.md: ``python -m tools.reliability [--runs N] [--only a,b] [--json F]``.

Runs the chosen measurements (all by default), one process run after another, each bounded in time;
progress goes to stderr, a one-line result per measurement and a Markdown table at the end to stdout,
and with ``--json`` every run's record too. Run it from the repository root on an otherwise idle machine:
the times of ``dead_rank`` include the interpreter shutdown of the processes that end. The defaults take
about 6 minutes on two idle cores (a two-process run costs about 15 s there, twice that on busy cores).

- ``exit``          runs of a 2-process CPU DDP script that end without a crash, ``python`` and ``fabric run``
- ``kill``          SIGKILL during a single-file ``fabric.save`` (one process, 50 MB): loads whole afterwards
- ``sharded_kill``  the same with fabric-fsdp's sharded checkpoint on 2 gloo processes
- ``dead_rank``     seconds from rank 1's death (``os._exit(1)`` or an exception) to the end of the run
- ``verify``        seconds per GiB of checkpoint verification, beside ``torch.load`` of the same file
- ``checks``        extra time per collective with ``FABRIC_CHECK_COLLECTIVES=1`` (2 gloo processes)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import traceback
from pathlib import Path

from tools.bench.report import machine
from tools.reliability import costs, dead_rank, exits, kills
from tools.reliability.context import Context

MEASUREMENTS = {
    "exit": exits.run,
    "kill": kills.run_single,
    "sharded_kill": kills.run_sharded,
    "dead_rank": dead_rank.run,
    "verify": costs.run_verify,
    "checks": costs.run_checks,
}
ALIASES = {"exits": "exit", "kills": "kill", "sharded": "sharded_kill", "dead": "dead_rank"}
COLUMNS = ("measurement", "variant", "runs", "result", "notes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.reliability", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--only", default=",".join(MEASUREMENTS), help=f"measurements, comma-separated: {', '.join(MEASUREMENTS)}"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs (kills for kill/sharded_kill) per variant of every measurement (default: each one's own, "
        f"exit {exits.DEFAULT_RUNS}, kill {kills.SINGLE_RUNS}, sharded_kill {kills.SHARDED_RUNS}, "
        f"dead_rank {dead_rank.DEFAULT_RUNS}, verify {costs.VERIFY_RUNS}, checks {costs.CHECK_ROUNDS} rounds)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every figure and run record to this file")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each process run may take (default 120)")
    parser.add_argument("--tmp-dir", default=None, help="where checkpoints go (default: the system temp dir)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill delays (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    names = [ALIASES.get(name.strip(), name.strip()) for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    args.only = [name for name in MEASUREMENTS if name in names]
    return args


def markdown(results: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for result in results:
        for row in result["rows"]:
            cells = [result["title"], *(str(row.get(column, "")) for column in COLUMNS[1:])]
            lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = Context(runs=args.runs, timeout=args.timeout, tmp_dir=args.tmp_dir, verbose=not args.quiet, seed=args.seed)
    started = time.time()
    results, failed = [], []
    for name in args.only:
        began = time.time()
        ctx.log(f"{name}: starting")
        try:
            result = MEASUREMENTS[name](ctx)
        except Exception:  # a bug in the harness: report it, go on with the other measurements
            failed.append(name)
            result = {"id": name, "title": name, "line": "harness failure", "rows": [], "error": traceback.format_exc()}
            print(result["error"], file=sys.stderr)
        result["duration_s"] = round(time.time() - began, 1)
        results.append(result)
        print(f"{name}: {result['line']} ({result['duration_s']:.0f} s)", flush=True)
    meta = machine()
    meta.update(
        duration_s=round(time.time() - started, 1),
        command=" ".join(["python -m tools.reliability", shlex.join(argv if argv is not None else sys.argv[1:])]),
        timeout_s=args.timeout,
        seed=args.seed,
    )
    print(f"\n{markdown(results)}\n\n{meta['date']}, {meta['machine']}; {meta['duration_s']:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "measurements": results}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

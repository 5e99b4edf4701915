"""The benchmark's command line: ``python -m tools.bench [--quick] [--only W,..] [--rounds N] [--out DIR]``.

Runs the chosen workloads (all by default) with the candidates that are installed, then writes
``benchmarks.md`` and ``benchmarks.json`` into ``--out`` (default: docs/). This driver process imports
none of the frameworks: each candidate runs in processes of its own. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path

from tools.bench import checkpoint, ddp, deepspeed_zero, first_fabric, gpu, imports, report, step
from tools.bench.common import CANDIDATES, NOT_INSTALLED, ROOT, Context, installed

WORKLOADS = {
    "step": (step, "Training-step overhead (CPU, single process)"),
    "import": (imports, "Import cost over `import torch`"),
    "first_fabric": (first_fabric, "First Fabric()"),
    "ddp": (ddp, "DDP throughput (2 processes, gloo)"),
    "deepspeed": (deepspeed_zero, "DeepSpeed ZeRO 2 and 3 training step (2 processes, gloo)"),
    "checkpoint": (checkpoint, "Checkpoint save and load"),
    "gpu": (gpu, "GPU training step (reported separately)"),
}
ALIASES = {
    "imports": "import",
    "first-fabric": "first_fabric",
    "fabric": "first_fabric",
    "ckpt": "checkpoint",
    "ds": "deepspeed",
}


def _names(text: str, known: list[str], aliases: dict[str, str], what: str) -> list[str]:
    names = [aliases.get(name.strip(), name.strip()) for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return [name for name in known if name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and 1-2 rounds: checks the harness, the numbers mean nothing (what the test suite runs)",
    )
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help=f"workloads, comma-separated: {', '.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="measured rounds for every workload (default: each workload's own, e.g. 20 for step, 5 for ddp)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where benchmarks.md/.json go (default: docs/)")
    parser.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        help=f"candidates to run if installed (default: all of {', '.join(CANDIDATES)})",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every worker (default 1)")
    parser.add_argument("--tmp-dir", default=None, help="where checkpoint files go (default: the system temp dir)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="with --only: drop the other workloads from an existing report instead of keeping them",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    only = _names(args.only, list(WORKLOADS), ALIASES, "workload")
    chosen = _names(args.candidates, list(CANDIDATES), {}, "candidate")
    missing = {name: NOT_INSTALLED for name in CANDIDATES if not installed(name)}
    missing.update({name: "not selected" for name in CANDIDATES if name not in chosen and name not in missing})
    ctx = Context(
        quick=args.quick,
        rounds=args.rounds,
        candidates=[c for c in CANDIDATES if c not in missing],
        missing=missing,
        threads=args.threads,
        tmp_dir=args.tmp_dir,
        verbose=not args.quiet,
    )
    ctx.log(f"candidates: {', '.join(ctx.candidates)}; " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    started = time.time()
    meta = report.machine()
    results, failed = {}, []
    for name in only:
        module, title = WORKLOADS[name]
        began = time.time()
        try:
            tables = module.run(ctx)
        except Exception:  # a bug in the harness: report it, go on with the other workloads
            failed.append(name)
            tables = [{"id": name, "title": title, "skipped": f"harness failure: {traceback.format_exc()}", "rows": []}]
        seconds = time.time() - began
        ctx.log(f"{name} done in {seconds:.0f} s")
        results[name] = {
            "meta": {"title": title, "date": meta["date"], "machine": meta["machine"], "duration_s": round(seconds, 1)},
            "tables": tables,
        }
    meta.update(
        mode="quick" if args.quick else "full",
        duration_s=round(time.time() - started, 1),
        command=" ".join(["python -m tools.bench", shlex.join(argv if argv is not None else sys.argv[1:])]).strip(),
        threads=args.threads,
        candidates=ctx.candidates,
        missing=missing,
    )
    merge = set(only) != set(WORKLOADS) and not args.fresh
    md_path, json_path = report.write(args.out, meta, results, merge=merge)
    print(f"wrote {md_path} and {json_path} in {meta['duration_s']:.0f} s")
    if failed:
        print(f"harness failure in: {', '.join(failed)} (see the report)", file=sys.stderr)
    return 1 if failed else 0

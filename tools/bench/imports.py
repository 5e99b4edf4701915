"""Import cost over ``import torch``: wall time and resident memory of one import statement.

Each measurement is a fresh ``python -c`` process (PYTHONDONTWRITEBYTECODE removed, so the ``.pyc``
files written by the warm-up round are used, as on a user's machine) that imports torch, then times
the candidate's statement alone: nothing for raw PyTorch (the floor of the method),
``from fabric_core import Fabric``, ``from lightning.fabric import Fabric`` or
``from accelerate import Accelerator``. Memory is the growth of the peak resident set (``ru_maxrss``)
across the statement; the growth of the current resident set is kept in the JSON too. Candidates
alternate, one process at a time. After the rounds, one ``python -X importtime`` run lists the modules
that fabric_core's import spends most time in.

The same processes then time the first construction (``first_fabric.py`` reports it): ``fresh_processes``
runs them once for both workloads.
"""

from __future__ import annotations

import subprocess
import sys

from tools.bench.common import ROOT, Context, Target, alternate, clean_env, run_snippet, table

#: candidate -> (import statement, first construction)
STATEMENTS = {
    "raw": ("", ""),
    "fabric_core": ("from fabric_core import Fabric", 'Fabric(accelerator="cpu")'),
    "lightning": ("from lightning.fabric import Fabric", 'Fabric(accelerator="cpu")'),
    "accelerate": ("from accelerate import Accelerator", "Accelerator(cpu=True)"),
}
TIME_TARGET = Target(on="value", op="<=", limit=25.0, text="<= 25 ms")
MEMORY_TARGET = Target(on="value", op="<=", limit=5.0, text="<= 5 MB")

CODE = """
import json, resource, sys, time
import torch

KIB = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB

def current():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0

namespace = {}
peak0, current0 = peak(), current()
start = time.perf_counter()
exec(compile(sys.argv[1], "<import>", "exec"), namespace)
seconds = time.perf_counter() - start
result = {"seconds": seconds, "peak_bytes": peak() - peak0, "rss_bytes": current() - current0}
start = time.perf_counter()
exec(compile(sys.argv[2], "<construct>", "exec"), namespace)
result["construct_seconds"] = time.perf_counter() - start
print("BENCH_RESULT " + json.dumps(result))
"""


def fresh_processes(ctx: Context) -> tuple[dict[str, list[dict]], dict[str, str], int, int]:
    """The fresh-process measurements (import, then first construction), taken once per benchmark run."""
    if "fresh" not in ctx.cache:
        rounds, warmup = ctx.rounds_for(12, 1), (0 if ctx.quick else 1)
        errors: dict[str, str] = {}
        ctx.log(f"import + first construction: {warmup} warm-up + {rounds} rounds, a fresh process for each")
        samples = alternate(ctx.candidates, rounds, warmup, lambda name: run_snippet(CODE, STATEMENTS[name]), errors)
        ctx.cache["fresh"] = (samples, errors, rounds, warmup)
    return ctx.cache["fresh"]


def import_profile(statement: str, top: int = 12) -> str:
    """The modules ``statement`` spends most time in after ``import torch`` (``python -X importtime``)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import torch\n{statement}"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    after_torch = next((i for i, line in enumerate(lines) if line.rstrip().endswith("| torch")), -1)
    entries = []
    for line in lines[after_torch + 1 :]:
        fields = [field.strip() for field in line[len("import time:") :].split("|")]
        if len(fields) == 3 and fields[0].isdigit():
            entries.append((int(fields[1]), int(fields[0]), fields[2]))
    entries.sort(reverse=True)
    rows = [f"{total / 1000:8.2f} ms cumulative {own / 1000:7.2f} ms self  {name}" for total, own, name in entries]
    return "\n".join(rows[:top]) or "(no module imported after torch)"


def run(ctx: Context) -> list[dict]:
    samples, errors, rounds, warmup = fresh_processes(ctx)
    times = {name: [s["seconds"] * 1e3 for s in values] for name, values in samples.items()}
    memory = {name: [s["peak_bytes"] / 1e6 for s in values] for name, values in samples.items()}
    params = {"rounds": rounds, "warmup_rounds": warmup, "statements": {k: v[0] for k, v in STATEMENTS.items()}}
    about = "Cost of the import statement alone, measured after `import torch` in a fresh process."
    time_table = table(
        ctx, id="import-time", title="Import time over `import torch`", unit="ms", samples=times, errors=errors,
        target=TIME_TARGET, about=about, params=dict(params, raw_samples=samples),
    )  # fmt: skip
    memory_table = table(
        ctx, id="import-memory", title="Resident memory over `import torch` (peak RSS growth)", unit="MB",
        samples=memory, errors=errors, target=MEMORY_TARGET, about=about + " 1 MB = 10^6 bytes.", params=params,
    )  # fmt: skip
    if "fabric_core" in ctx.candidates and "fabric_core" not in errors and not ctx.quick:
        time_table["profile"] = {
            "command": "python -X importtime -c 'import torch; from fabric_core import Fabric', slowest modules",
            "text": import_profile(STATEMENTS["fabric_core"][0]),
        }
    return [time_table, memory_table]

"""The first construction of the framework object, right after its import, in a fresh process.

``Fabric(accelerator="cpu")`` for fabric_core (with every first-party plugin of the environment
installed: the bench environment installs all of packages/*, so plugin discovery is part of the
figure) and for Lightning, ``Accelerator(cpu=True)`` for Accelerate; nothing for raw PyTorch (the
floor of the method). The processes are those of the import workload (``imports.fresh_processes``:
fresh, alternating, after a warm-up round that writes the ``.pyc`` files), which time the construction
right after the import. After the rounds, one cProfile of fabric_core's first ``Fabric()`` shows where
the time goes.
"""

from __future__ import annotations

from importlib import metadata

from tools.bench.common import BenchError, Context, Target, run_snippet, table
from tools.bench.imports import STATEMENTS, fresh_processes

TARGET = Target(on="value", op="<=", limit=20.0, text="<= 20 ms")

PROFILE = """
import cProfile, io, json, pstats, sys
import torch

namespace = {}
exec(sys.argv[1], namespace)
profiler = cProfile.Profile()
profiler.enable()
exec(sys.argv[2], namespace)
profiler.disable()
text = io.StringIO()
pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("cumulative").print_stats(15)
print("BENCH_RESULT " + json.dumps({"text": text.getvalue()}))
"""


def first_party_plugins() -> list[str]:
    """The installed distributions that register with the ``fabric`` entry-point group, with versions."""
    found = set()
    for entry_point in metadata.entry_points(group="fabric"):
        dist = entry_point.dist
        found.add(f"{dist.metadata['Name']} {dist.version}" if dist is not None else entry_point.value)
    return sorted(found)


def run(ctx: Context) -> list[dict]:
    samples, errors, rounds, warmup = fresh_processes(ctx)
    times = {name: [s["construct_seconds"] * 1e3 for s in values] for name, values in samples.items()}
    plugins = first_party_plugins()
    result = table(
        ctx,
        id="first-fabric",
        title='First `Fabric(accelerator="cpu")` after the import',
        unit="ms",
        samples=times,
        errors=errors,
        target=TARGET,
        about="Wall time of the first construction in a fresh process, right after the import (plugins "
        f"registered in the `fabric` entry-point group: {', '.join(plugins) or 'none'}).",
        params={"rounds": rounds, "warmup_rounds": warmup, "cases": STATEMENTS, "plugins": plugins},
        notes={"raw": "nothing constructed (the floor)", "accelerate": "Accelerator(cpu=True)"},
    )
    if "fabric_core" in ctx.candidates and "fabric_core" not in errors and not ctx.quick:
        try:
            text = run_snippet(PROFILE, STATEMENTS["fabric_core"], timeout=300)["text"]
            result["profile"] = {"command": "cProfile of the first Fabric(accelerator='cpu')", "text": text.strip()}
        except BenchError as err:
            result["profile"] = {"command": "cProfile", "text": f"failed: {err}"}
    return [result]

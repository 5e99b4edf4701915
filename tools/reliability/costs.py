"""What the opt-in safety checks cost: ``verify`` (checksums of a checkpoint) and ``checks`` (collectives).

- ``verify``: a 1 GiB ``torch.save`` file; the seconds per GiB of ``verify_checkpoint`` (what
  ``fabric.load(..., verify=True)`` and ``fabric checkpoint verify`` run) beside a plain ``torch.load`` of
  the same file, alternating, from the page cache ("warm") and, where this process may drop the caches
  (root on Linux), from the disk ("cold").
- ``checks``: ``scripts/collective_checks.py`` on 2 gloo processes: the time per ``all_reduce`` of 4 and of
  1M floats with ``FABRIC_CHECK_COLLECTIVES`` off and on, interleaved in the same processes.
"""

from __future__ import annotations

import os
import shutil
import time

from tools.reliability.context import Context, spread
from tools.reliability.processes import Run, script_command, tail

VERIFY_RUNS = 5
VERIFY_GIB = 1
CHECK_ROUNDS = 15


def _drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as caches:
            caches.write("3\n")
    except OSError:
        return False
    return True


def run_verify(ctx: Context) -> dict:
    import torch

    from fabric_core.io.integrity import verify_checkpoint

    folder = ctx.folder("verify")
    path = folder / "big.ckpt"
    n = ctx.runs_for(VERIFY_RUNS)
    try:
        # 256 MiB tensors of random data: the CRC and the read cannot take shortcuts.
        torch.save({"weights": [torch.randn(64, 1024, 1024) for _ in range(4 * VERIFY_GIB)]}, path)
        gib = path.stat().st_size / 2**30
        readers = {
            "verify_checkpoint": lambda: verify_checkpoint(path),
            "torch.load": lambda: torch.load(path, weights_only=True),
        }
        times: dict[str, list[float]] = {f"{name} {when}": [] for name in readers for when in ("warm", "cold")}
        for index in range(n):
            for name, read in readers.items():
                read()  # into the page cache
                start = time.perf_counter()
                result = read()
                times[f"{name} warm"].append((time.perf_counter() - start) / gib)
                if name == "verify_checkpoint" and result:
                    raise RuntimeError(f"an intact checkpoint did not verify: {result}")
                del result
                if _drop_caches():
                    start = time.perf_counter()
                    read()
                    times[f"{name} cold"].append((time.perf_counter() - start) / gib)
            ctx.log(f"verify {index + 1}/{n}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for variant, values in times.items():
        if values:
            s = spread(values)
            rows.append(
                {
                    "variant": variant,
                    "runs": s["n"],
                    "result": f"{s['median']:.2f} s/GiB",
                    "notes": f"min {s['min']:.2f}, max {s['max']:.2f}; {gib:.2f} GiB file",
                }
            )
    line = ", ".join(f"{row['variant']} {row['result']}" for row in rows)
    return {"id": "verify", "title": "Checkpoint verification cost", "line": line, "rows": rows}


def run_checks(ctx: Context) -> dict:
    rounds = ctx.runs_for(CHECK_ROUNDS)
    ended = Run(script_command("python", "collective_checks.py", str(rounds))).finish(ctx.timeout)
    measured = ended.lines("size ")
    if ended.returncode != 0 or len(measured) != 2:
        raise RuntimeError(f"collective_checks.py failed (exit {ended.returncode}):\n{tail(ended.stderr)}")
    rows = []
    for line in measured:
        fields = line.split()
        size = int(fields[0])
        values = dict(zip(fields[1::2], map(float, fields[2::2])))
        rows.append(
            {
                "variant": f"all_reduce of {size:,} float32",
                "runs": rounds,
                "result": f"+{values['extra_ms']:.2f} ms per collective",
                "notes": f"off {values['off_ms']:.2f} ms, on {values['on_ms']:.2f} ms; "
                f"extra min {values['min_ms']:.2f}, max {values['max_ms']:.2f}",
            }
        )
    line = ", ".join(f"{row['variant']} {row['result']}" for row in rows)
    return {"id": "checks", "title": "FABRIC_CHECK_COLLECTIVES cost (2 processes, gloo)", "line": line, "rows": rows}

"""The cost of ``FABRIC_CHECK_COLLECTIVES``: all_reduce timed with the check off and on, interleaved.

usage: python collective_checks.py launch ROUNDS     (2 processes, gloo, started by fabric.launch())

Rank 0 prints one line per tensor size: ``size N off_ms A on_ms B extra_ms D min_ms L max_ms H``, the medians
over ROUNDS rounds of the time per all_reduce, and the median, min and max of the per-round difference. The
check is switched in the process (as ``FABRIC_CHECK_COLLECTIVES=1`` would switch it at start) so that both
settings run in the same processes, one block after the other.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from fabric_core import Fabric
from fabric_core.utilities import distributed

SIZES = (4, 1_000_000)
CALLS = 20


def block(fabric: Fabric, tensor: torch.Tensor, checked: bool) -> float:
    distributed.set_check_collectives(checked)
    fabric.barrier()
    start = time.perf_counter()
    for _ in range(CALLS):
        fabric.all_reduce(tensor, reduce_op="sum")
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    rounds = int(sys.argv[2])
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    for size in SIZES:
        tensor = torch.ones(size)
        for _ in range(CALLS):
            fabric.all_reduce(tensor)  # warm up the connections and buffers
        off, on = [], []
        for _ in range(rounds):
            off.append(block(fabric, tensor, False))
            on.append(block(fabric, tensor, True))
        distributed.set_check_collectives(False)
        extra = [b - a for a, b in zip(off, on)]
        if fabric.global_rank == 0:
            print(
                f"size {size} off_ms {statistics.median(off) * 1e3:.3f} on_ms {statistics.median(on) * 1e3:.3f} "
                f"extra_ms {statistics.median(extra) * 1e3:.3f} min_ms {min(extra) * 1e3:.3f} "
                f"max_ms {max(extra) * 1e3:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

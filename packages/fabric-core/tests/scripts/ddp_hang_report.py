"""Two ranks that call different collectives (or none): each prints the error it gets, then exits 0.

usage: RANK=r WORLD_SIZE=2 ... python ddp_hang_report.py SCENARIO DIRECTORY   (started per rank by the test)

Each rank prints ``CAUGHT rank R <type>:`` and the error's message, or ``RESULT rank R`` and its values;
a rank that must outlive the other's error waits for the other's marker file in DIRECTORY.
"""

import sys
import time
from datetime import timedelta
from pathlib import Path

import torch

from fabric_core import Fabric
from fabric_core.strategies import DDPStrategy

scenario, directory = sys.argv[1], Path(sys.argv[2])
fabric = Fabric(accelerator="cpu", devices=2, strategy=DDPStrategy(timeout=timedelta(seconds=3)))
rank = fabric.global_rank
# Both ranks start the scenario together.
fabric.barrier("start")


def wait_for_the_other_rank() -> None:
    deadline = time.monotonic() + 60
    while not (directory / "rank0.done").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # [skipped-1] rank 1 waits here: its report names this line


def mismatch() -> None:
    if rank == 0:
        fabric.all_reduce(torch.ones(4), reduce_op="sum")  # [mismatch-0]
    else:
        fabric.barrier("epoch end")  # [mismatch-1]


def staggered_mismatch() -> None:
    if rank == 0:
        time.sleep(2)  # rank 0 times out 2 s after rank 1
        fabric.all_gather(torch.zeros(2, 3, dtype=torch.int64))  # [staggered-0]
    else:
        fabric.broadcast({"x": 1}, src=1)  # [staggered-1]


def skipped() -> None:
    if rank == 0:
        fabric.all_reduce(torch.ones(4))  # [skipped-0]
    else:
        wait_for_the_other_rank()


def checked() -> None:
    summed = fabric.all_reduce(torch.tensor([1.0, 2.0]) * (rank + 1), reduce_op="sum")
    gathered = fabric.all_gather(torch.tensor([rank, 10 + rank]))
    received = fabric.broadcast({"from": rank}, src=1)
    fabric.barrier("checked")
    print(f"RESULT rank {rank} {summed.tolist()} {gathered.tolist()} {received}", flush=True)
    if rank == 0:
        fabric.all_reduce(torch.ones(4), reduce_op="sum")  # [checked-0]
    else:
        fabric.all_reduce(torch.ones(5), reduce_op="sum")  # [checked-1]


def twice() -> None:
    try:
        mismatch()
    except RuntimeError as err:
        print(f"FIRST rank {rank}: {err}", flush=True)
    if rank == 0:
        fabric.broadcast([1, 2], src=0)  # [twice-0]
    else:
        fabric.barrier("second")  # [twice-1]


try:
    {"mismatch": mismatch, "staggered": staggered_mismatch, "skipped": skipped, "checked": checked, "twice": twice}[
        scenario
    ]()
    print(f"NO ERROR rank {rank}", flush=True)
except Exception as err:
    print(f"CAUGHT rank {rank} {type(err).__name__}: {err}", flush=True)
finally:
    if rank == 0:
        (directory / "rank0.done").touch()

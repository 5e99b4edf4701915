"""Rank 1 never reaches the barrier: rank 0's wait must end with an error naming its rank and the operation.

usage: python ddp_timeout.py   -> rank 0 prints the error and the run exits non-zero
"""

import time
from datetime import timedelta

from fabric_core import Fabric
from fabric_core.strategies import DDPStrategy
from fabric_core.utilities.distributed import DistributedError

fabric = Fabric(accelerator="cpu", devices=2, strategy=DDPStrategy(timeout=timedelta(seconds=3)))
fabric.launch()
if fabric.global_rank == 1:
    time.sleep(60)  # stuck: the launcher ends this process once rank 0 has failed
try:
    fabric.barrier("epoch end")
except DistributedError as err:
    print(f"CAUGHT: {err}", flush=True)
    raise

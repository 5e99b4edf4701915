"""Two CPU processes, both logging: only rank 0 may write, into a single version folder.

usage: python ddp_log.py WITH_TENSORBOARD   (1 adds a TensorBoardLogger under tb/; run it in an empty folder)
"""

import sys

from fabric_core import Fabric

loggers = ["csv"]
if sys.argv[1] == "1":
    from fabric_loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger("tb"))

fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp", loggers=loggers)
fabric.launch()
for logger in fabric.loggers:
    logger.log_hyperparams({"world_size": fabric.world_size})
for step in range(3):
    fabric.log_dict({"loss": 1.0 / (step + 1), "rank": fabric.global_rank})
fabric.barrier()
print(f"rank {fabric.global_rank} done", flush=True)

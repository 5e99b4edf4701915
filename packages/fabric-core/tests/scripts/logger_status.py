"""How a run ends, as the loggers are told: each rank-0 ``finalize(status)`` is appended to OUT_DIR/status.

usage: python logger_status.py MODE OUT_DIR
    script-ok       launch(), log, end normally
    script-raises   launch(), log, then an uncaught exception ends the process (teardown runs at exit)
    script-exit-0   launch(), log, then sys.exit(0)
    spawn-raises    launch(fn) on 2 spawn-started processes; fn raises on rank 0
    fork-raises     launch(fn) on 2 fork-started processes; fn raises on rank 0
"""

import sys
from pathlib import Path

from fabric_core import Fabric
from fabric_core.loggers import Logger
from fabric_core.utilities.rank_zero import rank_zero_only


class StatusLogger(Logger):
    """Writes each finalize status to a file, on global rank 0 only."""

    name = "status"
    version = 0

    def __init__(self, out_dir: str) -> None:
        self.path = Path(out_dir) / "status"

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        pass

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs):
        pass

    @rank_zero_only
    def finalize(self, status):
        with open(self.path, "a") as f:
            f.write(status + "\n")


def train(fabric):
    fabric.log("loss", 0.5, step=0)
    if fabric.global_rank == 0:
        raise ValueError("raised on rank 0")


if __name__ == "__main__":
    mode, out_dir = sys.argv[1], sys.argv[2]
    if mode.startswith("script"):
        fabric = Fabric(accelerator="cpu", devices=1, loggers=[StatusLogger(out_dir)])
        fabric.launch()
        fabric.log("loss", 0.5, step=0)
        if mode == "script-raises":
            raise ValueError("uncaught in the script")
        if mode == "script-exit-0":
            sys.exit(0)
    else:
        strategy = {"spawn-raises": "ddp_spawn", "fork-raises": "ddp_fork"}[mode]
        fabric = Fabric(accelerator="cpu", devices=2, strategy=strategy, loggers=[StatusLogger(out_dir)])
        try:
            fabric.launch(train)
        except RuntimeError as error:
            print("launch failed:", str(error).splitlines()[0], flush=True)
        else:
            sys.exit("launch did not raise")

"""Each logger of fabric-loggers writes its files, selected by name as a user would: Fabric(loggers=[...]).

usage: python loggers.py ROOT_DIR plain|tensorboard

csv: metrics.csv and hparams.yaml under ROOT_DIR/csv/version_0. tensorboard: with the extra installed
(`tensorboard`), event files under ROOT_DIR/tb/version_0 that TensorBoard reads back; without it
(`plain`), TensorBoardLogger raises ModuleNotFoundError naming `fabric-loggers[tensorboard]`.
Prints "csv ok" and "tensorboard ok".
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from fabric_core import Fabric
from fabric_loggers import CSVLogger, TensorBoardLogger


def check_csv(root: Path) -> None:
    logger = CSVLogger(root, name="csv")
    fabric = Fabric(accelerator="cpu", devices=1, loggers=logger)
    logger.log_hyperparams({"lr": 0.01, "layers": [8, 4]})
    for step in range(3):
        fabric.log_dict({"loss": 1.0 / (step + 1), "acc": 0.5}, step=step)
    fabric.teardown()
    run = root / "csv" / "version_0"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [float(r["loss"]) for r in rows] == [1.0, 0.5, 1 / 3], rows
    assert "lr: 0.01" in (run / "hparams.yaml").read_text(), (run / "hparams.yaml").read_text()
    print("csv ok")


def check_tensorboard(root: Path, installed: bool) -> None:
    if not installed:
        try:
            TensorBoardLogger(root, name="tb")
        except ModuleNotFoundError as err:
            assert "fabric-loggers[tensorboard]" in str(err), err
            print(f"tensorboard ok (not installed: {err})")
            return
        raise AssertionError("TensorBoardLogger was created without the tensorboard package")
    logger = TensorBoardLogger(root, name="tb")
    fabric = Fabric(accelerator="cpu", devices=1, loggers=logger)
    logger.log_hyperparams({"lr": 0.01})
    for step in range(3):
        fabric.log("loss", 1.0 / (step + 1), step=step)
    fabric.teardown()
    run = root / "tb" / "version_0"
    events = sorted(run.glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events), sorted(run.iterdir())

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    values = [(e.step, round(e.value, 6)) for e in accumulator.Scalars("loss")]
    assert values == [(0, 1.0), (1, 0.5), (2, round(1 / 3, 6))], values
    print(f"tensorboard ok ({len(events)} event file(s), loss read back)")


if __name__ == "__main__":
    root, mode = Path(sys.argv[1]), sys.argv[2]
    check_csv(root)
    check_tensorboard(root, installed=mode == "tensorboard")

"""fabric-loggers' plugin: the logger names ``csv`` and ``tensorboard``.

Import-cheap on purpose: the loggers are named by ``"module:attr"`` strings and imported only when a
name is first used. A name builds its logger with ``root_dir="logs"`` (in the working directory) and
every other argument at its default, so runs land in ``logs/fabric_logs/version_N``. For another
place or name, pass an object: ``Fabric(loggers=CSVLogger("runs", name="mnist"))``.
"""

from __future__ import annotations

from fabric_core.plugins import hookimpl

ROOT_DIR = "logs"


@hookimpl
def fabric_register_loggers(registry):
    registry.register(
        "csv",
        "fabric_loggers.csv_logs:CSVLogger",
        description="metrics.csv and hparams.yaml in logs/fabric_logs/version_N",
        root_dir=ROOT_DIR,
    )
    registry.register(
        "tensorboard",
        "fabric_loggers.tensorboard:TensorBoardLogger",
        description="TensorBoard event files in logs/fabric_logs/version_N (needs fabric-loggers[tensorboard])",
        root_dir=ROOT_DIR,
    )

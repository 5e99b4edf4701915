"""CSV and TensorBoard loggers for fabric-core: ``Fabric(loggers="csv")`` or ``loggers=[CSVLogger(...)]``.

Importing this package is cheap: each logger's module is imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports
from fabric_loggers.__about__ import __version__

if TYPE_CHECKING:
    from fabric_loggers.csv_logs import CSVLogger
    from fabric_loggers.tensorboard import TensorBoardLogger

__all__ = ["CSVLogger", "TensorBoardLogger", "__version__"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CSVLogger": "fabric_loggers.csv_logs",
        "TensorBoardLogger": "fabric_loggers.tensorboard",
    },
)

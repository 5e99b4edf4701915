"""Loggers: the base class. Concrete loggers (CSV, TensorBoard) come with fabric-loggers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric_core.utilities.imports import lazy_exports

if TYPE_CHECKING:
    from fabric_core.loggers.logger import Logger

__all__ = ["Logger"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Logger": "fabric_core.loggers.logger",
    },
)

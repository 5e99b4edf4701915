"""Loggers: the base class. Concrete loggers (CSV, TensorBoard) come with fabric-loggers."""

from fabric_core.loggers.logger import Logger

__all__ = ["Logger"]

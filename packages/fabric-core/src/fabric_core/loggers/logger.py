"""The logger interface used by ``Fabric.log`` and ``Fabric.log_dict``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from argparse import Namespace
from collections.abc import Mapping
from typing import Any


class Logger(ABC):
    """Receives metrics and hyperparameters. ``Fabric(loggers=...)`` takes instances or registered names.

    The rank contract, for every logger:

    - ``fabric.log`` and ``fabric.log_dict`` call ``log_metrics`` in the process of global rank 0 only.
    - Every other method is called by the user, often on every rank (``fabric.logger.log_hyperparams``
      in a script that all processes run). A logger that writes anything must guard those methods with
      :func:`~fabric_core.utilities.rank_zero.rank_zero_only` (and ``log_metrics`` too, for direct calls),
      so that a run never writes twice.
    - Fabric calls ``finalize("success")`` when the run ends normally and ``finalize("failed")`` when it
      raised; ``finalize`` may be called more than once and must not fail the second time.

    ``fabric_core.testing.LoggerConformance`` checks all of this for your logger.

    Example::

        from fabric_core.loggers import Logger
        from fabric_core.utilities.rank_zero import rank_zero_only


        class PrintLogger(Logger):
            name = "print"
            version = 0

            @rank_zero_only
            def log_metrics(self, metrics, step=None):
                print(step, metrics)

            @rank_zero_only
            def log_hyperparams(self, params, *args, **kwargs):
                print(params)
    """

    @property
    @abstractmethod
    def name(self) -> str | None:
        """The experiment's name."""

    @property
    @abstractmethod
    def version(self) -> int | str | None:
        """The experiment's version."""

    @property
    def root_dir(self) -> str | None:
        """The directory all versions of the experiment are written under, if any."""
        return None

    @property
    def log_dir(self) -> str | None:
        """The directory this version writes to, if any."""
        return None

    @property
    def group_separator(self) -> str:
        """The separator between a metric group and a metric name (``"train/loss"``)."""
        return "/"

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record scalar ``metrics`` at ``step``."""

    @abstractmethod
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any | None = None) -> None:
        """Record the model's computational graph, where the logger supports it."""

    def save(self) -> None:
        """Flush what was logged to storage."""

    def finalize(self, status: str) -> None:
        """Flush and close at the end of a run: ``status`` is ``"success"``, or ``"failed"`` when the run raised.

        Fabric calls it from :meth:`Fabric.teardown`; it may also be called by the user, and more than once.
        """
        self.save()

"""The launcher interface: how the processes of a multi-process run are started."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class Launcher(ABC):
    """Starts the processes of a run and runs ``function`` in each of them.

    A strategy creates its launcher; ``Fabric.launch`` calls :meth:`launch` once. A launcher must make
    sure that when one process fails, the others are ended and the run exits non-zero.
    """

    @property
    @abstractmethod
    def is_interactive_compatible(self) -> bool:
        """Whether it works in a Jupyter notebook or an interactive interpreter."""

    @abstractmethod
    def launch(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in every process; return rank 0's result."""

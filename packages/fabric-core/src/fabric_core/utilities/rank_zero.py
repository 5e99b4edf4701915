"""Doing things once: on global rank 0, or once per process.

The names follow ``lightning.fabric.utilities.rank_zero``, so a ported script keeps its imports'
last part: ``rank_zero_only`` (with ``rank_zero_only.rank``), ``rank_zero_warn``, ``rank_zero_info``,
``rank_zero_debug``, ``rank_zero_deprecation``, ``rank_prefixed_message`` and ``WarningCache``.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_PACKAGE_LOGGER = "fabric_core"  # every module logs under it: logging.getLogger("fabric_core.<module>")


def _rank_from_launcher() -> int | None:
    # Lightning's order: SLURM_PROCID can be set without SLURM starting the processes, so LOCAL_RANK
    # comes first. None means "not started by a launcher": rank_prefixed_message then leaves the message bare.
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return None


class _RankZero:
    """Holds this process's global rank; strategies set it once they know it."""

    rank: int = _rank_from_launcher() or 0


rank_zero_state = _RankZero()


class _RankZeroOnly:
    """The type of :data:`rank_zero_only`: a decorator whose ``rank`` attribute is the process's global rank."""

    @property
    def rank(self) -> int:
        return rank_zero_state.rank

    @rank.setter
    def rank(self, value: int) -> None:
        rank_zero_state.rank = value

    def __call__(self, fn: Callable[..., T], default: Any = None) -> Callable[..., Any]:
        """Decorate ``fn`` so that it runs on global rank 0 only; other ranks get ``default`` back."""

        @functools.wraps(fn)
        def on_rank_zero(*args: Any, **kwargs: Any) -> Any:
            if rank_zero_state.rank == 0:
                return fn(*args, **kwargs)
            return default

        return on_rank_zero

    def __repr__(self) -> str:
        return f"rank_zero_only(rank={self.rank})"


rank_zero_only = _RankZeroOnly()
"""Decorate a function so that it runs on global rank 0 only, returning ``default`` (``None``) elsewhere.

``rank_zero_only.rank`` reads (and, as in Lightning, sets) the rank it compares with; Fabric sets it
when the processes are launched.

Example::

    @rank_zero_only
    def save_report(text):
        Path("report.txt").write_text(text)

    latest = rank_zero_only(compute_metrics, default={})  # {} on the other ranks
"""


class FabricDeprecationWarning(DeprecationWarning):
    """The category of fabric-core's deprecation warnings, shown by default (unlike a plain ``DeprecationWarning``).

    Example::

        warnings.filterwarnings("ignore", category=FabricDeprecationWarning)  # silence them all
    """


#: Lightning's name for the same category, so ``warnings`` filters written for Lightning keep working.
LightningDeprecationWarning = FabricDeprecationWarning

# Python hides DeprecationWarning outside __main__; these point at the user's own code, so show them.
warnings.simplefilter("default", category=FabricDeprecationWarning)


@functools.cache
def _info_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, after making fabric-core's INFO messages visible as Lightning does.

    The first call gives the ``fabric_core`` logger the INFO level (unless one was set) and, when neither
    it nor the root logger has a handler, a handler writing to stderr: "Seed set to 42" then shows
    without any logging set-up. It runs on the first message rather than at import, so that a level or
    handler the program sets up before then is respected.
    """
    package = logging.getLogger(_PACKAGE_LOGGER)
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
    if not package.handlers and not logging.getLogger().hasHandlers():
        package.addHandler(logging.StreamHandler())
        package.propagate = False
    return logging.getLogger(name)


def rank_prefixed_message(message: str, rank: int | None) -> str:
    """``message`` prefixed with ``[rank: N] `` when ``rank`` is given, unchanged for ``None``.

    Example::

        rank_prefixed_message("starting", 1)  # "[rank: 1] starting"
    """
    return message if rank is None else f"[rank: {rank}] {message}"


@rank_zero_only
def rank_zero_warn(
    message: str | Warning, category: type[Warning] = UserWarning, stacklevel: int = 3, **kwargs: Any
) -> None:
    """``warnings.warn`` on global rank 0 only; the warning points at the caller's line by default.

    ``stacklevel`` counts this function and its rank-zero wrapper: 3 is the caller.

    Example::

        rank_zero_warn("num_workers=0 will be slow", category=PossibleUserWarning)
    """
    warnings.warn(message, category, stacklevel=stacklevel, **kwargs)


def rank_zero_info(*args: Any, stacklevel: int = 2, **kwargs: Any) -> None:
    """``logging.info`` on global rank 0 only, under the ``fabric_core`` logger (shown by default).

    Example::

        rank_zero_info("Epoch %d done", epoch)
    """
    if rank_zero_state.rank == 0:
        _info_logger(__name__).info(*args, stacklevel=stacklevel, **kwargs)


def rank_zero_debug(*args: Any, stacklevel: int = 2, **kwargs: Any) -> None:
    """``logging.debug`` on global rank 0 only, under the ``fabric_core`` logger.

    Example::

        rank_zero_debug("bucket sizes: %s", sizes)
    """
    if rank_zero_state.rank == 0:
        _info_logger(__name__).debug(*args, stacklevel=stacklevel, **kwargs)


def rank_zero_deprecation(message: str | Warning, stacklevel: int = 4, **kwargs: Any) -> None:
    """A :class:`FabricDeprecationWarning` (or ``category=...``) on global rank 0 only.

    Example::

        rank_zero_deprecation("old_name() is deprecated; use new_name()")
    """
    category = kwargs.pop("category", FabricDeprecationWarning)
    rank_zero_warn(message, category, stacklevel=stacklevel, **kwargs)


class WarningCache(set):
    """Emit each distinct message once (on global rank 0); repeats are dropped.

    Example::

        cache = WarningCache()
        for batch in loader:
            cache.warn("the batch has no labels")  # warns the first time only
    """

    def warn(self, message: str, stacklevel: int = 4, **kwargs: Any) -> None:
        """:func:`rank_zero_warn` the first time ``message`` is seen."""
        if message not in self:
            self.add(message)
            rank_zero_warn(message, stacklevel=stacklevel, **kwargs)

    def deprecation(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        """:func:`rank_zero_deprecation` the first time ``message`` is seen."""
        if message not in self:
            self.add(message)
            rank_zero_deprecation(message, stacklevel=stacklevel, **kwargs)

    def info(self, message: str, stacklevel: int = 3, **kwargs: Any) -> None:
        """:func:`rank_zero_info` the first time ``message`` is seen."""
        if message not in self:
            self.add(message)
            rank_zero_info(message, stacklevel=stacklevel, **kwargs)

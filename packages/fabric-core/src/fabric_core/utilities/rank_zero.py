"""Doing things once: on global rank 0, or once per process."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("fabric_core")

T = TypeVar("T")


def _rank_from_env() -> int:
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 0


class _RankZero:
    """Holds this process's global rank; strategies set it once they know it."""

    rank: int = _rank_from_env()


rank_zero_state = _RankZero()


def rank_zero_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Decorate ``fn`` so that it runs on global rank 0 only (returning ``None`` elsewhere)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> T | None:
        if rank_zero_state.rank == 0:
            return fn(*args, **kwargs)
        return None

    return wrapped


@rank_zero_only
def rank_zero_warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 3) -> None:
    """``warnings.warn`` on global rank 0 only."""
    warnings.warn(message, category, stacklevel=stacklevel)


@rank_zero_only
def rank_zero_info(message: str) -> None:
    """Log at INFO level on global rank 0 only."""
    log.info(message)


def rank_zero_deprecation(message: str, stacklevel: int = 4) -> None:
    """A ``DeprecationWarning`` on global rank 0 only."""
    rank_zero_warn(message, DeprecationWarning, stacklevel=stacklevel)

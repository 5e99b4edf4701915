"""What the CSV and TensorBoard loggers share: a run directory ``root_dir/name/version_N``, rank zero only.

The version is resolved the first time it is needed, by looking (never writing) at the folders already
under ``root_dir/name``; the directory itself is created by the first write, on global rank 0 only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from fabric_core.loggers.logger import Logger
from fabric_core.utilities.rank_zero import rank_zero_state
from fabric_loggers._metrics import check_step

_VERSION_DIR = re.compile(r"version_(\d+)", re.ASCII)


def next_version(directory: str) -> int:
    """One more than the highest ``version_N`` folder in ``directory`` (0 when there is none)."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    versions = [int(m.group(1)) for e in entries if (m := _VERSION_DIR.fullmatch(e.name)) and e.is_dir()]
    return max(versions) + 1 if versions else 0


def is_rank_zero() -> bool:
    return rank_zero_state.rank == 0


class NoOpExperiment:
    """Stands in for the experiment on ranks other than 0: every call on it does nothing.

    So ``logger.experiment.add_histogram(...)`` can run on every rank and writes from rank 0 only.
    """

    def __getattr__(self, name: str) -> Any:
        return self._nothing

    def _nothing(self, *args: Any, **kwargs: Any) -> NoOpExperiment:
        return self

    def __getitem__(self, key: Any) -> NoOpExperiment:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class VersionedLogger(Logger):
    """A logger writing to ``root_dir/name/version_N`` (or ``root_dir/name/<version>`` for a string)."""

    #: Joins ``prefix`` and a metric's name: ``prefix="train"`` logs ``"loss"`` as ``"train-loss"``.
    LOGGER_JOIN_CHAR = "-"

    def __init__(self, root_dir: str | os.PathLike, name: str | None, version: int | str | None, prefix: str) -> None:
        super().__init__()
        if not isinstance(root_dir, (str, os.PathLike)):
            raise TypeError(
                f"{type(self).__name__}(root_dir={root_dir!r}): expected a path (str or os.PathLike), "
                f"got {type(root_dir).__name__}."
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}(name={name!r}): expected a string, or None for no subfolder.")
        if version is not None and (isinstance(version, bool) or not isinstance(version, (int, str))):
            raise TypeError(
                f"{type(self).__name__}(version={version!r}): expected an int (for version_N), a string (the folder "
                "name itself) or None (the next free version_N)."
            )
        if isinstance(version, int) and version < 0:
            raise ValueError(f"{type(self).__name__}(version={version}): a version number must be 0 or more.")
        if version == "":
            raise ValueError(f"{type(self).__name__}(version=''): give a folder name, or None for the next version.")
        if not isinstance(prefix, str):
            raise TypeError(f"{type(self).__name__}(prefix={prefix!r}): expected a string ('' for none).")
        self._root_dir = os.fspath(root_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._steps_logged = 0

    @property
    def name(self) -> str:
        """The experiment's name: the folder between ``root_dir`` and the version folders."""
        return self._name

    @property
    def version(self) -> int | str:
        """The version given, or else the next free ``N`` among the ``version_N`` folders (fixed once read)."""
        if self._version is None:
            self._version = next_version(self._versions_dir)
        return self._version

    @property
    def root_dir(self) -> str:
        """The directory that every experiment and version of this logger is written under."""
        return self._root_dir

    @property
    def log_dir(self) -> str:
        """This run's directory: ``root_dir/name/version_N``, or ``root_dir/name/<version>`` for a string."""
        version = self.version
        folder = version if isinstance(version, str) else f"version_{version}"
        return os.path.join(self._versions_dir, folder)

    @property
    def _versions_dir(self) -> str:
        return os.path.expanduser(os.path.expandvars(os.path.join(self._root_dir, self._name)))

    def _step(self, step: Any) -> int:
        """``step`` checked, or the number of ``log_metrics`` calls before this one when it is ``None``."""
        step = self._steps_logged if step is None else check_step(step)
        self._steps_logged += 1
        return step

    def _prefixed(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"{type(self).__name__}.log_metrics() needs a mapping of names to numbers, got "
                f"{type(metrics).__name__}: {metrics!r}."
            )
        if not self._prefix:
            return dict(metrics)
        return {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}": value for key, value in metrics.items()}

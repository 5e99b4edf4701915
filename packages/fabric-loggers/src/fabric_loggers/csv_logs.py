"""The CSV logger: ``metrics.csv`` and ``hparams.yaml`` in ``root_dir/name/version_N``."""

from __future__ import annotations

import csv
import io
import os
import warnings
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from fabric_core.utilities.rank_zero import rank_zero_only
from fabric_loggers._files import append_durably, atomic_write
from fabric_loggers._hparams import convert_params, write_hparams
from fabric_loggers._metrics import to_number
from fabric_loggers._versioned import NoOpExperiment, VersionedLogger, is_rank_zero


class CSVLogger(VersionedLogger):
    """Log metrics to ``root_dir/name/version_N/metrics.csv`` and hyperparameters to ``hparams.yaml`` beside it.

    Only global rank 0 writes; on the other ranks every method does nothing.

    Args:
        root_dir: The folder that holds every experiment and version.
        name: The experiment's folder under ``root_dir`` (``None`` or ``""``: none).
        version: ``None`` takes the next free ``version_N``; an int ``N`` means ``version_N``; a string is
            the folder's name itself.
        prefix: Put before every metric's name, joined with ``"-"`` (``"train"``: ``"train-loss"``).
        flush_logs_every_n_steps: Rows are kept in memory and written every this many ``log_metrics``
            calls, and at ``save()`` and ``finalize()``. A crash loses at most the rows not written yet.

    The file has one row per ``log_metrics`` call and a column per metric name plus ``step``. When a
    name first appears mid-run, the file is rewritten with the wider header, earlier rows left empty in
    the new column (through a temporary file, so a crash leaves the old file or the new one).

    Example::

        from fabric_core import Fabric
        from fabric_loggers import CSVLogger

        fabric = Fabric(loggers=CSVLogger("logs", name="mnist"))
        fabric.log_dict({"loss": 0.25, "acc": 0.9})        # logs/mnist/version_0/metrics.csv
    """

    NAME_METRICS_FILE = "metrics.csv"

    def __init__(
        self,
        root_dir: str | os.PathLike,
        name: str | None = "fabric_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__(root_dir, name, version, prefix)
        if (
            isinstance(flush_logs_every_n_steps, bool)
            or not isinstance(flush_logs_every_n_steps, int)
            or flush_logs_every_n_steps < 1
        ):
            raise ValueError(
                f"CSVLogger(flush_logs_every_n_steps={flush_logs_every_n_steps!r}): expected an int of 1 or more "
                "(1 writes every row as it is logged)."
            )
        self._flush_logs_every_n_steps = flush_logs_every_n_steps
        self._experiment: _MetricsFile | None = None
        self._hparams: dict[str, Any] = {}

    @property
    def experiment(self) -> _MetricsFile | NoOpExperiment:
        """The ``metrics.csv`` writer; creating it creates the run directory. A no-op object on ranks other than 0."""
        if not is_rank_zero():
            return NoOpExperiment()
        return self._metrics_file()

    def _metrics_file(self) -> _MetricsFile:
        if self._experiment is None:
            log_dir = self.log_dir
            if os.path.isfile(os.path.join(log_dir, self.NAME_METRICS_FILE)):
                warnings.warn(
                    f"CSVLogger: {log_dir} already holds a {self.NAME_METRICS_FILE}; it will be replaced by this "
                    "run's. Pass version=None to start a new version instead.",
                    UserWarning,
                    stacklevel=4,
                )
            os.makedirs(log_dir, exist_ok=True)
            self._experiment = _MetricsFile(os.path.join(log_dir, self.NAME_METRICS_FILE))
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Add one row: ``metrics`` (numbers or one-element tensors) and ``step`` (default: a running count)."""
        row: dict[str, Any] = {key: to_number(key, value) for key, value in self._prefixed(metrics).items()}
        row["step"] = self._step(step)
        writer = self._metrics_file()
        writer.add(row)
        if writer.pending >= self._flush_logs_every_n_steps:
            writer.flush()

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:  # type: ignore[override]
        """Merge ``params`` into the run's hyperparameters and rewrite ``hparams.yaml`` at once."""
        self._hparams.update(convert_params(params, type(self).__name__))
        self._metrics_file()  # creates the run directory
        write_hparams(self.log_dir, self._hparams)

    @rank_zero_only
    def save(self) -> None:
        """Write the rows kept in memory to ``metrics.csv``."""
        if self._experiment is not None:
            self._experiment.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is left. Safe to call more than once; logging afterwards goes on in the same file."""
        self.save()


class _MetricsFile:
    """``metrics.csv``: rows are appended; a new column rewrites the whole file atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.columns: list[str] = []  # the header as it is in the file
        self._rows: list[dict[str, Any]] = []  # logged, not written yet

    @property
    def pending(self) -> int:
        """How many rows are waiting to be written."""
        return len(self._rows)

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)

    def flush(self) -> None:
        """Write the waiting rows: appended under the current header, or the file rewritten with a wider one."""
        if not self._rows:
            return
        known, new = set(self.columns), []
        for row in self._rows:
            for key in row:
                if key not in known:
                    known.add(key)
                    new.append(key)
        if new or not os.path.exists(self.path):
            self._rewrite(sorted(self.columns + new))  # sorted by name, as Lightning's CSVLogger writes them
        else:
            buffer = io.StringIO(newline="")
            csv.DictWriter(buffer, fieldnames=self.columns, restval="").writerows(self._rows)
            append_durably(self.path, buffer.getvalue().encode("utf-8"))
        self._rows = []

    def _rewrite(self, columns: list[str]) -> None:
        previous = self.path if self.columns and os.path.exists(self.path) else None
        with atomic_write(self.path, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            rows = csv.DictWriter(f, fieldnames=columns, restval="")
            if previous is not None:
                with open(previous, newline="", encoding="utf-8") as old:
                    rows.writerows(csv.DictReader(old))  # by name: a new column may sort before old ones
            rows.writerows(self._rows)
        self.columns = columns

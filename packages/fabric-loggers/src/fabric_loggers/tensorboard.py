"""The TensorBoard logger: event files (scalars, hyperparameters, graphs) in ``root_dir/name/version_N``."""

from __future__ import annotations

import os
import warnings
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from fabric_core.utilities.rank_zero import rank_zero_only
from fabric_loggers._hparams import convert_params, write_hparams
from fabric_loggers._metrics import to_number
from fabric_loggers._versioned import NoOpExperiment, VersionedLogger, is_rank_zero

if TYPE_CHECKING:
    from torch.nn import Module
    from torch.utils.tensorboard import SummaryWriter

INSTALL_HINT = 'pip install "fabric-loggers[tensorboard]"'


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401  (cheap: the heavy parts load when the first event is written)
    except ImportError as err:
        raise ModuleNotFoundError(
            f"TensorBoardLogger needs the tensorboard package, which is not installed ({err}). "
            f"Install it with: {INSTALL_HINT}"
        ) from err


class TensorBoardLogger(VersionedLogger):
    """Log to TensorBoard event files in ``root_dir/name/version_N[/sub_dir]``.

    Needs the ``tensorboard`` package: ``pip install "fabric-loggers[tensorboard]"``. Only global rank 0
    writes; on the other ranks every method does nothing. View the runs with
    ``tensorboard --logdir <root_dir>``.

    Args:
        root_dir: The folder that holds every experiment and version.
        name: The experiment's folder under ``root_dir`` (``None`` or ``""``: none).
        version: ``None`` takes the next free ``version_N``; an int ``N`` means ``version_N``; a string is
            the folder's name itself.
        default_hp_metric: ``log_hyperparams`` without ``metrics`` records a placeholder metric
            ``hp_metric`` = -1, so TensorBoard's HPARAMS tab shows the run; with ``False`` such a call
            writes ``hparams.yaml`` only.
        prefix: Put before every metric's name, joined with ``"-"`` (``"train"``: ``"train-loss"``).
        sub_dir: A folder inside the version folder to write to instead (``version_0/train``).
        **kwargs: Passed on to ``torch.utils.tensorboard.SummaryWriter`` (``max_queue``, ``flush_secs``,
            ``filename_suffix``, ...).

    Example::

        from fabric_core import Fabric
        from fabric_loggers import TensorBoardLogger

        logger = TensorBoardLogger("logs", name="mnist")
        fabric = Fabric(loggers=logger)
        logger.log_hyperparams({"lr": 1e-3, "batch_size": 32})
        fabric.log("loss", 0.25, step=10)                      # logs/mnist/version_0/events.out.tfevents...
    """

    def __init__(
        self,
        root_dir: str | os.PathLike,
        name: str | None = "fabric_logs",
        version: int | str | None = None,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        _require_tensorboard()
        super().__init__(root_dir, name, version, prefix)
        if sub_dir is not None and not isinstance(sub_dir, (str, os.PathLike)):
            raise TypeError(f"TensorBoardLogger(sub_dir={sub_dir!r}): expected a path, or None to write in log_dir.")
        if "log_dir" in kwargs:
            raise TypeError(
                f"TensorBoardLogger(log_dir={kwargs['log_dir']!r}): the run directory is "
                "root_dir/name/version[/sub_dir]; pass root_dir= (and name=, version=) instead."
            )
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)
        self._default_hp_metric = default_hp_metric
        self._kwargs = kwargs
        self._experiment: SummaryWriter | None = None
        self._hparams: dict[str, Any] = {}

    @property
    def sub_dir(self) -> str | None:
        """The folder inside the version folder that is written to, if any."""
        return self._sub_dir

    @property
    def log_dir(self) -> str:
        """This run's directory: ``root_dir/name/version_N``, then ``sub_dir`` when given."""
        log_dir = super().log_dir
        return log_dir if self._sub_dir is None else os.path.join(log_dir, self._sub_dir)

    @property
    def experiment(self) -> SummaryWriter | NoOpExperiment:
        """The ``SummaryWriter``, created with the run directory on first use; a no-op object on other ranks.

        Use it for what ``log_metrics`` does not cover: ``logger.experiment.add_histogram("w", weights, step)``.
        """
        if not is_rank_zero():
            return NoOpExperiment()
        return self._writer()

    def _writer(self) -> SummaryWriter:
        if self._experiment is None:
            from torch.utils.tensorboard import SummaryWriter

            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record scalars at ``step`` (default: a running count). A dict value is a group (``add_scalars``)."""
        scalars = {
            key: {str(k): to_number(f"{key}/{k}", v) for k, v in value.items()}
            if isinstance(value, Mapping)
            else to_number(key, value)
            for key, value in self._prefixed(metrics).items()
        }
        step = self._step(step)
        writer = self._writer()
        for key, value in scalars.items():
            if isinstance(value, dict):
                writer.add_scalars(key, value, step)
            else:
                writer.add_scalar(key, value, step)

    @rank_zero_only
    def log_hyperparams(  # type: ignore[override]
        self, params: dict[str, Any] | Namespace, metrics: Mapping[str, Any] | float | None = None
    ) -> None:
        """Record hyperparameters for TensorBoard's HPARAMS tab and in ``hparams.yaml``.

        Args:
            params: The hyperparameters; nested dicts are shown with ``/``-joined names (``optimizer/lr``).
                ``hparams.yaml`` gets them merged with those of earlier calls, but TensorBoard shows the
                first record of a run only: log them all in one call.
            metrics: The metrics to compare runs by (a dict, or one number named ``hp_metric``), recorded at
                step 0. Without it, a placeholder ``hp_metric`` = -1 when ``default_hp_metric`` is on.
        """
        from torch.utils.tensorboard.summary import hparams

        params = convert_params(params, type(self).__name__)
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else {}
        elif not isinstance(metrics, Mapping):
            metrics = {"hp_metric": metrics}
        scalars = {key: to_number(key, value) for key, value in self._prefixed(metrics).items()}

        self._hparams.update(params)
        writer = self._writer()
        write_hparams(self.log_dir, self._hparams)
        if not scalars:
            return
        for key, value in scalars.items():
            writer.add_scalar(key, value, 0)
        experiment, session_start, session_end = hparams(_tensorboard_params(self._hparams), scalars)
        # Into this run's own event file: SummaryWriter.add_hparams would start a separate run folder.
        file_writer = writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)

    @rank_zero_only
    def log_graph(self, model: Module, input_array: Any | None = None) -> None:
        """Record ``model``'s graph, traced with ``input_array`` (default: ``model.example_input_array``)."""
        from fabric_core.wrappers import is_wrapped

        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            warnings.warn(
                "TensorBoardLogger.log_graph: no graph recorded, there is no input to trace the model with. "
                "Pass input_array=, or set model.example_input_array.",
                UserWarning,
                stacklevel=3,
            )
            return
        if not isinstance(input_array, (Tensor, tuple, list)):
            warnings.warn(
                f"TensorBoardLogger.log_graph: no graph recorded, input_array is a {type(input_array).__name__}; "
                "pass a tensor, or a tuple of the forward() arguments.",
                UserWarning,
                stacklevel=3,
            )
            return
        if is_wrapped(model):
            model = model.module  # trace the user's module, not Fabric's wrapper around it
        self._writer().add_graph(model, input_array)

    @rank_zero_only
    def save(self) -> None:
        """Flush pending events to the event file."""
        if self._experiment is not None:
            self._experiment.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush and close the event file. Safe to call more than once."""
        if self._experiment is not None:
            self._experiment.close()  # flushes first
            self._experiment = None  # logging after this starts a new event file in the same folder

    def __getstate__(self) -> dict[str, Any]:
        # A SummaryWriter holds a thread and an open file: processes started by spawn make their own.
        state = self.__dict__.copy()
        state["_experiment"] = None
        return state


def _tensorboard_params(params: Mapping[str, Any], parent: str = "") -> dict[str, Any]:
    """Flatten nested mappings (``{"opt": {"lr": 1}}`` -> ``{"opt/lr": 1}``) into values TensorBoard takes."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{parent}/{key}" if parent else str(key)
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping):
            flat.update(_tensorboard_params(value, name))
        elif isinstance(value, Tensor) and value.numel() == 1:
            flat[name] = value.item()
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat

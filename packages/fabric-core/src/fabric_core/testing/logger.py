"""Conformance tests for a :class:`~fabric_core.loggers.logger.Logger`.

Subclass :class:`LoggerConformance` in your test suite and set ``logger_factory``::

    # tests/test_conformance.py of your plugin
    from fabric_core.testing import LoggerConformance

    from my_plugin import JSONLinesLogger


    class TestJSONLinesLogger(LoggerConformance):
        logger_factory = JSONLinesLogger  # called as JSONLinesLogger(tmp_path): it takes one argument

The checks cover the contract every logger follows (see ``docs/loggers.md``):

- ``name`` and ``version`` have the documented types;
- ``log_metrics`` works with and without a ``step``; ``log_hyperparams`` takes a dict and an
  ``argparse.Namespace``;
- ``finalize("success")`` and ``finalize("failed")`` are accepted, may be called twice, and leave what
  was logged on storage (something in ``log_dir`` when the logger has one);
- the logger survives pickling (spawn-based strategies send it to their processes);
- ``fabric.log`` on global rank 0 reaches the logger, and on any other rank it does not;
- on a rank other than 0, the logger's own methods (which users call on every rank) write nothing;
- a launched run that raises ends with ``finalize("failed")``.

Other ranks are simulated by setting ``fabric_core.utilities.rank_zero.rank_zero_state.rank``, the
rank that :func:`~fabric_core.utilities.rank_zero.rank_zero_only` reads; each check restores it.
"""

from __future__ import annotations

import inspect
import os
import pickle
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_core.loggers.logger import Logger
from fabric_core.testing._config import required
from fabric_core.utilities.rank_zero import rank_zero_state


def _make(factory: Callable[..., Any], directory: Path) -> Any:
    """``factory(directory)`` when the factory takes an argument, else ``factory()``."""
    try:
        inspect.signature(factory).bind(directory)
    except TypeError:
        return factory()
    except ValueError:  # no signature to inspect (a builtin): try the documented zero-argument form
        return factory()
    return factory(directory)


def _files_under(directory: str | os.PathLike) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(root, name), directory) for root, _, names in os.walk(directory) for name in names
    )


class _Spy:
    """Records the calls of one logger method, as its argument values in order, and passes them on."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        self.signature = inspect.signature(method)
        self.calls: list[list[Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.calls.append(list(bound.arguments.values()))
        return self.method(*args, **kwargs)


class LoggerConformance:
    """Subclass as ``TestMyLogger`` and set :attr:`logger_factory`."""

    #: A callable returning a fresh logger. When it takes an argument, it is called with a new, empty
    #: directory (a ``pathlib.Path``) to write under, so ``logger_factory = CSVLogger`` works as it is;
    #: otherwise it is called with none.
    logger_factory: Callable[..., Logger] | None = None

    # -- fixtures ------------------------------------------------------------------------------------

    @pytest.fixture
    def logger(self, tmp_path: Path) -> Logger:
        """A fresh logger, writing under ``tmp_path`` when the factory takes a directory."""
        factory = required(
            self, "logger_factory", "a callable returning a fabric_core Logger", "functools.partial(MyLogger)"
        )
        logger = _make(factory, tmp_path)
        if not isinstance(logger, Logger):
            raise TypeError(
                f"{type(self).__name__}.logger_factory returned {logger!r}, a {type(logger).__name__}; expected an "
                "instance of a subclass of fabric_core.loggers.Logger."
            )
        return logger

    @pytest.fixture
    def other_rank(self) -> Iterator[None]:
        """This process plays global rank 1 while the check runs."""
        saved = rank_zero_state.rank
        rank_zero_state.rank = 1
        try:
            yield
        finally:
            rank_zero_state.rank = saved

    @pytest.fixture
    def rank_zero(self) -> Iterator[None]:
        """This process is global rank 0 while the check runs (whatever the environment says)."""
        saved = rank_zero_state.rank
        rank_zero_state.rank = 0
        try:
            yield
        finally:
            rank_zero_state.rank = saved

    # -- identity --------------------------------------------------------------------------------------

    def test_name_is_a_string_or_none(self, logger: Logger) -> None:
        assert logger.name is None or isinstance(logger.name, str), f"name is {logger.name!r}"

    def test_version_is_an_int_a_string_or_none(self, logger: Logger) -> None:
        version = logger.version
        assert version is None or (isinstance(version, (int, str)) and not isinstance(version, bool)), (
            f"version is {version!r}"
        )

    @pytest.mark.parametrize("attribute", ["root_dir", "log_dir"])
    def test_directories_are_strings_or_none(self, logger: Logger, attribute: str) -> None:
        value = getattr(logger, attribute)
        assert value is None or isinstance(value, str), f"{attribute} is {value!r}"

    # -- logging ---------------------------------------------------------------------------------------

    def test_log_metrics_with_a_step(self, logger: Logger, rank_zero: None) -> None:
        logger.log_metrics({"loss": 0.5, "acc": 0.75}, step=3)
        logger.log_metrics({"loss": 0.25}, step=4)

    def test_log_metrics_without_a_step(self, logger: Logger, rank_zero: None) -> None:
        logger.log_metrics({"loss": 0.5})
        logger.log_metrics({"loss": 0.25})

    def test_log_hyperparams_with_a_dict(self, logger: Logger, rank_zero: None) -> None:
        logger.log_hyperparams({"lr": 0.001, "batch_size": 32, "optimizer": "adam"})

    def test_log_hyperparams_with_a_namespace(self, logger: Logger, rank_zero: None) -> None:
        logger.log_hyperparams(Namespace(lr=0.001, batch_size=32, optimizer="adam"))

    # -- ending a run ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("status", ["success", "failed"])
    def test_finalize_accepts_the_status_and_may_be_called_twice(
        self, logger: Logger, rank_zero: None, status: str
    ) -> None:
        logger.log_metrics({"loss": 0.5}, step=0)
        logger.finalize(status)
        logger.finalize(status)

    @pytest.mark.parametrize("status", ["success", "failed"])
    def test_after_finalize_what_was_logged_is_in_log_dir(self, logger: Logger, rank_zero: None, status: str) -> None:
        logger.log_hyperparams({"lr": 0.001})
        for step in range(3):
            logger.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        logger.finalize(status)
        if logger.log_dir is None:
            pytest.skip("log_dir is None: override this check to look where the logger writes")
        files = _files_under(logger.log_dir) if os.path.isdir(logger.log_dir) else []
        sizes = [os.path.getsize(os.path.join(logger.log_dir, name)) for name in files]
        assert any(sizes), f"after finalize({status!r}), {logger.log_dir} holds no data: {files}"

    def test_survives_pickling_after_logging(self, logger: Logger, rank_zero: None) -> None:
        # Spawn-based strategies pickle Fabric, loggers included, to start their processes.
        logger.log_metrics({"loss": 0.5}, step=0)
        copy = pickle.loads(pickle.dumps(logger))
        assert type(copy) is type(logger)
        logger.finalize("success")

    # -- inside Fabric -----------------------------------------------------------------------------------

    def _fabric_with_spy(self, logger: Logger, method: str) -> tuple[Any, _Spy]:
        from fabric_core import Fabric

        spy = _Spy(getattr(logger, method))
        setattr(logger, method, spy)  # an instance attribute shadows the method for this logger only
        return Fabric(accelerator="cpu", devices=1, loggers=[logger]), spy

    def test_fabric_log_on_rank_zero_reaches_the_logger(self, logger: Logger, rank_zero: None) -> None:
        fabric, spy = self._fabric_with_spy(logger, "log_metrics")
        fabric.log("loss", torch.tensor(0.5), step=3)
        fabric.log_dict({"acc": 0.75})
        fabric.teardown()
        received = [call[:2] for call in spy.calls]  # (metrics, step) of each log_metrics call
        assert received == [[{"loss": 0.5}, 3], [{"acc": 0.75}, None]], f"log_metrics received {received}"

    def test_fabric_log_on_another_rank_does_not_call_the_logger(self, logger: Logger, other_rank: None) -> None:
        fabric, spy = self._fabric_with_spy(logger, "log_metrics")
        fabric.log("loss", 0.5, step=3)
        fabric.log_dict({"acc": 0.75})
        assert spy.calls == [], "Fabric.log called the logger on global rank 1; only rank 0 may log"

    def test_on_another_rank_the_loggers_own_methods_write_nothing(self, tmp_path: Path, other_rank: None) -> None:
        # Users call these directly on every rank (fabric.logger.log_hyperparams(...)): only rank 0 may write.
        factory = required(self, "logger_factory", "a callable returning a Logger", "MyLogger")
        logger = _make(factory, tmp_path)
        logger.log_hyperparams({"lr": 0.001})
        logger.log_metrics({"loss": 0.5}, step=0)
        logger.log_metrics({"loss": 0.25})
        logger.save()
        logger.finalize("success")
        assert _files_under(tmp_path) == [], f"rank 1 wrote {_files_under(tmp_path)}"
        log_dir = logger.log_dir
        assert log_dir is None or not os.path.exists(log_dir), f"rank 1 created {log_dir}"

    def test_a_launched_run_that_raises_finalizes_with_failed(self, logger: Logger, rank_zero: None) -> None:
        fabric, spy = self._fabric_with_spy(logger, "finalize")

        def train(fabric: Any) -> None:
            fabric.log("loss", 0.5, step=0)
            raise KeyError("raised inside the run")

        with pytest.raises(KeyError, match="raised inside the run"):
            fabric.launch(train)
        fabric.teardown()  # what runs at exit
        assert [call[:1] for call in spy.calls] == [["failed"]], f"finalize calls: {spy.calls}"

    def test_a_launched_run_that_ends_normally_finalizes_with_success(self, logger: Logger, rank_zero: None) -> None:
        fabric, spy = self._fabric_with_spy(logger, "finalize")
        fabric.launch(lambda fabric: fabric.log("loss", 0.5, step=0))
        fabric.teardown()
        assert [call[:1] for call in spy.calls] == [["success"]], f"finalize calls: {spy.calls}"

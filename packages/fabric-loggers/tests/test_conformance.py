"""Both loggers pass the logger conformance kit that third-party loggers are held to."""

from __future__ import annotations

from importlib.util import find_spec

import pytest

from fabric_core.testing import LoggerConformance
from fabric_loggers import CSVLogger, TensorBoardLogger


class TestCSVLogger(LoggerConformance):
    logger_factory = CSVLogger  # CSVLogger(tmp_path)


@pytest.mark.skipif(find_spec("tensorboard") is None, reason="tensorboard is not installed")
class TestTensorBoardLogger(LoggerConformance):
    logger_factory = TensorBoardLogger  # TensorBoardLogger(tmp_path)

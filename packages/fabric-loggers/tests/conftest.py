"""Helpers for the logger tests: reading metrics.csv back and running scripts in fresh processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"


def _read_csv(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def _run_script(name: str, *args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    env["FABRIC_STRICT_PLUGINS"] = "1"
    command = [sys.executable, str(SCRIPTS / name), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture
def read_csv():
    """``read_csv(path)``: the header and the rows of a CSV file, as strings."""
    return _read_csv


@pytest.fixture
def run_script():
    """``run_script(name, *args, cwd=...)``: run ``tests/scripts/<name>`` in a fresh process, bounded in time.

    The launcher's environment variables are left out and plugins are strict.
    """
    return _run_script


@pytest.fixture
def rank_one():
    """Make this process global rank 1 (the root conftest restores the rank afterwards)."""
    from fabric_core.utilities.rank_zero import rank_zero_state

    rank_zero_state.rank = 1

"""Helpers for fabric-deepspeed's tests: the scripts under tests/scripts, run in fresh processes and bounded in time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
#: Every script run is bounded, so that a hang fails its test instead of the suite.
TIMEOUT = 240


def _run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``tests/scripts/<name>`` with this interpreter, without launcher variables, plugins strict."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    clean.update(FABRIC_STRICT_PLUGINS="1", **(env or {}))
    command = [sys.executable, str(SCRIPTS / name), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=clean, cwd=SCRIPTS)


def _passed(result: subprocess.CompletedProcess, check: str) -> None:
    """Fail unless both ranks printed ``rank N CHECK ok``."""
    for rank in (0, 1):
        if f"rank {rank} {check} ok" not in result.stdout:
            output = f"{result.stdout}\n{result.stderr[-6000:]}"
            pytest.fail(f"rank {rank} did not pass {check!r} (exit {result.returncode}):\n{output}")


@pytest.fixture(scope="session")
def run_script():
    """``run_script(name, *args, env=None)``: run ``tests/scripts/<name>`` in fresh processes, bounded in time."""
    return _run_script


@pytest.fixture(scope="session")
def passed():
    """``passed(result, check)``: fail unless both ranks printed ``rank N CHECK ok``."""
    return _passed

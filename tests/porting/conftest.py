"""Shared by the porting tests: the import mapping (port.py) and running a script on two processes.

The tests that compare with Lightning skip when it is not installed (the normal test environment);
``hatch run parity:all`` runs them against the pinned Lightning release.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).parent

# Variables a launcher, a scheduler or an earlier run may have left, which would change how a
# script started by a test finds its processes or seeds itself.
_INHERITED = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
_INHERITED_PREFIXES = ("SLURM_", "LSB_", "JSM_", "OMPI_", "PMI_", "PMIX_", "TORCHELASTIC_", "LT_", "PL_", "FABRIC_")


def load_port_module() -> ModuleType:
    """tests/porting/port.py as a module (this folder is not a package, and not on ``sys.path``)."""
    name = "fabric_porting_port"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "port.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def port() -> ModuleType:
    """The import mapping of docs/porting.md: ``port.port_source(text)``, ``port.target_module(...)``."""
    return load_port_module()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script_environment() -> dict[str, str]:
    """This process's environment without run or scheduler variables, plus a free ``MASTER_PORT``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _INHERITED and not key.startswith(_INHERITED_PREFIXES)
    }
    env["FABRIC_STRICT_PLUGINS"] = "1"  # as in the repository's own tests: a broken plugin is an error
    env["MASTER_PORT"] = str(free_port())
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Run:
    returncode: int
    output: str

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run_script(script: Path, *args: str, cwd: Path, timeout: float = 180) -> Run:
    """``python script args`` in its own session, as a user starts it; the whole group is killed on timeout.

    The script's own ``fabric.launch()`` starts its second process; killing the session on a timeout
    ends that one too, so a hung collective cannot outlive the test.
    """
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=script_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_session(process.pid)
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"{script.name} did not finish within {timeout:.0f}s; its output:\n{output[-4000:]}")
    finally:
        _kill_session(process.pid)  # a rank the script started and left behind
    return Run(process.returncode, output)


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(name="run_script", scope="session")
def run_script_fixture():
    """``run_script(path, *args, cwd=..., timeout=...) -> Run(returncode, output)``: see :func:`run_script`."""
    return run_script

"""Helpers for fabric-fsdp's tests: scripts in fresh processes, a process group of one, a one-process Fabric."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fabric_core import Fabric

SCRIPTS = Path(__file__).parent / "scripts"
#: Every script run is bounded, so that a hang fails its test instead of the suite.
TIMEOUT = 180


def _run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``tests/scripts/<name>`` with python, without the launcher's variables, plugins strict."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    clean.update(FABRIC_STRICT_PLUGINS="1", **(env or {}))
    command = [sys.executable, str(SCRIPTS / name), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=clean, cwd=SCRIPTS)


@pytest.fixture(scope="session")
def run_script():
    """``run_script(name, *args, env=None)``: run ``tests/scripts/<name>`` in fresh processes, bounded in time."""
    return _run_script


@pytest.fixture
def process_group_of_one(free_port: int) -> Iterator[None]:
    """A gloo process group of world size 1 in this process (the root conftest destroys it afterwards)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port}", rank=0, world_size=1)
    yield


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    """A launched ``Fabric`` with ``FSDPStrategy`` on one CPU process, torn down afterwards."""
    from fabric_core import Fabric
    from fabric_fsdp import FSDPStrategy

    fabric = Fabric(accelerator="cpu", devices=1, strategy=FSDPStrategy())
    fabric.launch()
    yield fabric
    fabric.teardown()

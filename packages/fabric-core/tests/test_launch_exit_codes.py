"""How a script run as ``python script.py`` with ``strategy="ddp"`` ends: the exit code and how fast.

Rank 0 is the process the test starts; the launcher starts rank 1 as a copy of it. When rank 0 fails,
the run must end at once with rank 0's own code (not the code of the copy that fails because rank 0
left, nor after the launcher's 120 s wait for the copies); when a copy fails, with the copy's code.
Each test runs tests/scripts/exit_codes.py in fresh processes with a bounded timeout, and checks that
no process outlives the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabric_core.io.leftovers import pid_is_alive

SCRIPT = Path(__file__).parent / "scripts" / "exit_codes.py"
# Starting two processes that import torch takes a while on a loaded machine; the bound that matters
# is END_BOUND, from the failing rank's exit to the end of the run.
PROCESS_TIMEOUT = 90
# Ending the other rank takes about a second (SIGTERM, or SIGKILL after 3 s); the defect took 120 s.
END_BOUND = 30.0


def _wait_until_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_is_alive(pid):
            return True
        time.sleep(0.05)
    return False


def run_script(mode: str) -> tuple[subprocess.CompletedProcess, float | None]:
    """Run exit_codes.py MODE; return the finished process and the seconds from the failing rank's exit
    to the end of the run (None when no rank failed on purpose). Checks that both ranks are gone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "MASTER_", "LOCAL_RANK", "RANK"))}
    env["FABRIC_STRICT_PLUGINS"] = "1"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), mode], capture_output=True, text=True, timeout=PROCESS_TIMEOUT, env=env
    )
    ended = time.time()
    pids = {int(rank): int(pid) for rank, pid in re.findall(r"rank (\d) pid (\d+)", result.stdout)}
    assert sorted(pids) == [0, 1], result.stdout + result.stderr
    leftovers = [pid for pid in pids.values() if not _wait_until_dead(pid)]
    assert leftovers == [], f"processes {leftovers} outlived the run ({mode})"
    failing = re.search(r"ending at ([\d.]+)", result.stdout)
    return result, (ended - float(failing.group(1)) if failing else None)


def test_rank_zero_sys_exit_ends_the_run_with_its_code_at_once():
    result, took = run_script("rank0_exit")

    assert result.returncode == 3, result.stderr
    assert took < END_BOUND, f"the run took {took:.1f} s to end after rank 0 exited"
    assert "should never get here" not in result.stdout


def test_rank_zero_sys_exit_with_a_ddp_model_alive_ends_the_run_at_once():
    # The DDP wrapper keeps the gloo connections open, so rank 1 never notices that rank 0 left: it
    # must be ended, not waited for.
    result, took = run_script("rank0_exit_model")

    assert result.returncode == 3, result.stderr
    assert took < END_BOUND, f"the run took {took:.1f} s to end after rank 0 exited"
    assert "Local rank 0 exited with code 3; ending local ranks 1." in result.stderr


def test_an_exception_in_rank_zero_ends_the_run_with_code_one_and_its_traceback():
    result, took = run_script("rank0_raises")

    assert result.returncode == 1
    assert took < END_BOUND, f"the run took {took:.1f} s to end after rank 0 raised"
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: rank 0 failed on purpose" in result.stderr


def test_a_copy_that_exits_non_zero_ends_the_run_with_its_code():
    result, took = run_script("rank1_exit")

    assert result.returncode == 4, result.stderr
    assert took < END_BOUND, f"the run took {took:.1f} s to end after rank 1 exited"
    assert "local rank 1 (global rank 1" in result.stderr
    assert "exited with code 4" in result.stderr


def test_a_clean_run_exits_zero():
    result, took = run_script("clean")

    assert result.returncode == 0, result.stdout + result.stderr
    assert took is None
    assert "[fabric]" not in result.stderr  # nothing was ended or waited for too long


@pytest.mark.parametrize(
    "error",
    [
        SystemExit(),
        SystemExit(None),
        SystemExit(0),
        SystemExit(3),
        SystemExit(True),
        SystemExit("a message"),
        KeyboardInterrupt(),
        RuntimeError("boom"),
    ],
    ids=repr,
)
def test_exit_status_is_the_one_the_interpreter_gives(error):
    from fabric_core.launchers.subprocess_script import _exit_status

    interpreter = subprocess.run([sys.executable, "-c", f"raise {error!r}"], capture_output=True, timeout=30)
    # A process ended by signal N reports -N; shells (and the launcher's messages) say 128 + N.
    expected = 128 - interpreter.returncode if interpreter.returncode < 0 else interpreter.returncode
    assert _exit_status(error) == expected

"""Running the measured scripts: every run bounded in time, every process it started found and ended.

A :class:`Run` starts one command (``python script.py`` or ``fabric run ... script.py``) in a new session,
collects its stdout line by line (so a measurement can wait for a line and kill at a chosen moment) and
its stderr, and records the moment its top process ended. While it runs, a thread notes every process
below it (``fabric run``'s workers live in sessions of their own, so a process group is not enough).
:meth:`Run.finish` waits for the top process with a bound, then counts the noted processes still alive
(an orphaned rank) and kills them all either way. Linux only: the process tree is read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tools.bench.common import ROOT, clean_env

SCRIPTS = Path(__file__).with_name("scripts")
#: How long the processes of a run get, once its top process ended, before the survivors count as stragglers.
STRAGGLER_GRACE_S = 2.0
#: How often a run's process tree is read while it runs.
WATCH_INTERVAL_S = 0.3
#: What an unclean end leaves in stderr, even when the exit status is 0.
CRASH_SIGNATURES = (
    "terminate called",
    "Aborted",
    "Segmentation fault",
    "core dumped",
    "Fatal Python error",
    "Traceback",
    "Exception ignored",
)


def fabric_command() -> list[str]:
    """The ``fabric`` console script beside this interpreter (``python -m fabric_core`` where there is none)."""
    script = Path(sys.executable).with_name("fabric")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fabric_core"]


def script_command(launcher: str, script: str, *args: str) -> list[str]:
    """``python SCRIPT launch ARGS`` or ``fabric run --accelerator cpu --devices 2 SCRIPT cli ARGS``."""
    if launcher == "python":
        return [sys.executable, str(SCRIPTS / script), "launch", *args]
    return [*fabric_command(), "run", "--accelerator", "cpu", "--devices", "2", str(SCRIPTS / script), "cli", *args]


def environment() -> dict[str, str]:
    """No launcher variables, one thread per process (two ranks on the CPU), plugins strict."""
    return clean_env(threads=1, FABRIC_STRICT_PLUGINS="1")


def process_table() -> dict[int, tuple[int, int, str, str]]:
    """Every process: pid -> (parent pid, process group, state letter, start time in clock ticks)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0], fields[19])
    return table


@dataclass
class Ended:
    """How a run ended: ``returncode`` None when it was killed at its time limit."""

    returncode: int | None
    ended: float  # time.time() when the top process ended (or was killed at the limit)
    seconds: float  # from start to that moment
    stdout: list[str]
    stderr: str
    stragglers: int = 0  # processes of its group alive STRAGGLER_GRACE_S after the top process ended
    timed_out: bool = False

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for line in self.stdout if line.startswith(prefix)]


class Run:
    """One command in a session of its own: ``Run(command).finish(timeout)``, or wait for lines first."""

    def __init__(self, command: list[str], cwd: Path = ROOT) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by finish())
        self.started = time.time()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ended_at: float | None = None
        self._done = threading.Event()
        self._seen: dict[int, str] = {}  # every process noted below the top one: pid -> start time
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._wait, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _wait(self) -> None:
        self.process.wait()
        self._ended_at = time.time()
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(WATCH_INTERVAL_S):
            self._note()

    def _note(self) -> dict[int, tuple[int, int, str, str]]:
        """Note the processes below the top one and those in its group; return the table read."""
        table = process_table()
        top = self.process.pid
        children: dict[int, list[int]] = {}
        for pid, (parent, group, _, start) in table.items():
            children.setdefault(parent, []).append(pid)
            if group == top and pid != top:
                self._seen.setdefault(pid, start)
        below = list(children.get(top, []))
        while below:
            pid = below.pop()
            self._seen.setdefault(pid, table[pid][3])
            below += children.get(pid, [])
        return table

    def alive(self) -> list[int]:
        """The noted processes that still run (the same process: its start time unchanged; zombies left out)."""
        table = self._note()
        live = []
        for pid, start in self._seen.items():
            entry = table.get(pid)
            if entry is not None and entry[3] == start and entry[2] != "Z":
                live.append(pid)
        return live

    def wait_for(self, prefix: str, deadline: float) -> str | None:
        """The next stdout line that starts with ``prefix`` (earlier lines are kept); None at the end or deadline."""
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                return None
            if line is None:
                self._lines.put(None)  # later calls see the end too
                return None
            self.stdout.append(line)
            if line.startswith(prefix):
                return line

    def kill(self, pid: int | None = None) -> None:
        """SIGKILL one process of the run, or (``pid`` None) all of them: its process group and every one noted."""
        targets = [pid] if pid is not None else self.alive()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pid is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        for target in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGKILL)

    def finish(self, timeout: float) -> Ended:
        """Wait up to ``timeout`` s from the start for the top process; then end every process of the run."""
        timed_out = not self._done.wait(max(0.0, self.started + timeout - time.time()))
        if timed_out:
            self.kill()
            self._done.wait(30)
        ended = self._ended_at or time.time()
        stragglers = []
        while not timed_out and time.time() < ended + STRAGGLER_GRACE_S:
            stragglers = self.alive()
            if not stragglers:
                break
            time.sleep(0.1)
        self.kill()
        while self.wait_for("\0", time.time() + 5) is not None:  # the rest of stdout, up to its end
            pass
        self._stderr.seek(0)
        stderr = self._stderr.read()
        self._stderr.close()
        return Ended(
            returncode=None if timed_out else self.process.returncode,
            ended=ended,
            seconds=ended - self.started,
            stdout=self.stdout,
            stderr=stderr,
            stragglers=len(stragglers),
            timed_out=timed_out,
        )


def crash_problems(ended: Ended) -> list[str]:
    """What says that a run did not end cleanly: time limit, signal, exit status, crash text, stragglers."""
    problems = []
    if ended.timed_out:
        problems.append("time limit")
    elif ended.returncode and ended.returncode < 0:
        problems.append(f"killed by {signal.Signals(-ended.returncode).name}")
    elif ended.returncode:
        problems.append(f"exit code {ended.returncode}")
    problems += [f"stderr: {text!r}" for text in CRASH_SIGNATURES if text in ended.stderr]
    if ended.stragglers:
        problems.append(f"{ended.stragglers} process(es) left running")
    return problems


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])

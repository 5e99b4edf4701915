"""What every workload shares: the candidates, clean subprocesses, persistent workers, alternation, statistics.

Method (docs/benchmarks-howto.md): every candidate runs in processes of its own, never two frameworks in
one interpreter. The driver asks one candidate at a time, round-robin, rotating the order every round,
after warm-up rounds it discards. A round's ratio compares a candidate with raw PyTorch *of the same
round*; a table shows the median of the per-round values and of the per-round ratios, with min and max.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: The candidates in table order: name -> (import package that must be installed, distribution for the version).
CANDIDATES: dict[str, tuple[str, str]] = {
    "raw": ("torch", "torch"),
    "fabric_core": ("fabric_core", "fabric-core"),
    "lightning": ("lightning", "lightning"),
    "accelerate": ("accelerate", "accelerate"),
}

NOT_INSTALLED = "not installed"
RESULT_PREFIX = "BENCH_RESULT "

# Launcher, scheduler and framework variables that would change what a candidate resolves to.
_STRIP_PREFIXES = ("FABRIC_", "LT_", "SLURM_", "LSB_", "OMPI_", "PMI_", "PMIX_", "ACCELERATE_", "TORCHELASTIC_")
_STRIP_NAMES = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "PYTHONDONTWRITEBYTECODE",
    "CUDA_LAUNCH_BLOCKING",
)


class BenchError(RuntimeError):
    """A candidate failed or did not answer in time; the benchmark reports it and goes on."""


def installed(candidate: str) -> bool:
    """Whether the candidate's package is importable, found without importing it (top-level lookup only)."""
    return importlib.util.find_spec(CANDIDATES[candidate][0]) is not None


@dataclass
class Context:
    """What the command line decided, handed to every workload."""

    quick: bool = False
    rounds: int | None = None  # None: each workload's own default
    candidates: list[str] = field(default_factory=lambda: list(CANDIDATES))  # installed and selected, in order
    missing: dict[str, str] = field(default_factory=dict)  # candidate -> why it does not run
    threads: int = 1
    tmp_dir: str | None = None
    verbose: bool = True
    cache: dict[str, Any] = field(default_factory=dict)  # measurements that two workloads share

    def rounds_for(self, full: int, quick: int) -> int:
        return self.rounds if self.rounds is not None else (quick if self.quick else full)

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def clean_env(threads: int | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without launcher variables and PYTHONDONTWRITEBYTECODE (so .pyc files
    are used as users have them), with the repository root importable and the thread count fixed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES) and k not in _STRIP_NAMES}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.update(extra)
    return env


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_snippet(code: str, args: Iterable[str] = (), timeout: float = 180, env: dict[str, str] | None = None) -> dict:
    """Run ``python -c code args`` in a fresh process; return the dict it printed after ``BENCH_RESULT``."""
    command = [sys.executable, "-c", code, *args]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env or clean_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"no result within {timeout:.0f} s") from err
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise BenchError(f"exit code {done.returncode}, no result:\n{tail(done.stdout + done.stderr)}")


class Worker:
    """A persistent process speaking JSON lines: by default ``python -m tools.bench.worker`` (see worker.py).

    ``command`` replaces that command line (ddp.py runs its own script). The process gets a session of
    its own, so that closing a worker also ends whatever it started (e.g. the second rank of a run).
    """

    def __init__(
        self,
        module: str,
        candidate: str,
        config: dict,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.candidate = candidate
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            command or [sys.executable, "-m", "tools.bench.worker", module, candidate, json.dumps(config)],
            cwd=ROOT,
            env=env or clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.companions: list[subprocess.Popen] = []  # processes that belong with this one (ended with it)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)  # end of output: the process exited

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return tail(self._stderr.read())

    def receive(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise BenchError(f"{self.candidate} worker did not answer within {timeout:.0f} s") from None
        if line is None:
            code = self._process.wait(timeout=10)
            raise BenchError(f"{self.candidate} worker exited with {code}:\n{self._stderr_tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.candidate}: {reply['error']}")
        return reply

    def ask(self, message: dict, timeout: float) -> dict:
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise BenchError(f"{self.candidate} worker is gone:\n{self._stderr_tail()}") from err
        return self.receive(timeout)

    def request_exit(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(OSError):
                self._process.stdin.write('{"cmd": "exit"}\n')
                self._process.stdin.flush()

    def close(self) -> None:
        self.request_exit()
        for process in [self._process, *self.companions]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever is left of its session (a launched rank)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        self._stderr.close()


def start_workers(
    module: str, candidates: list[str], config: dict, env: dict[str, str], timeout: float, errors: dict[str, str]
) -> dict[str, Worker]:
    """Start one worker per candidate (their start-up overlaps), wait until each is set up."""
    started = {name: Worker(module, name, config, env) for name in candidates if name not in errors}
    ready = {}
    for name, worker in started.items():
        try:
            worker.receive(timeout)
            ready[name] = worker
        except BenchError as err:
            errors[name] = str(err)
            worker.close()
    return ready


def close_all(workers: Iterable[Worker]) -> None:
    """Ask every worker to exit, then wait for each (their exits overlap)."""
    workers = list(workers)
    for worker in workers:
        worker.request_exit()
    for worker in workers:
        worker.close()


def rotated(names: list[str], round_index: int) -> list[str]:
    """The order of round ``round_index``: the list rotated by one place per round."""
    if not names:
        return []
    k = round_index % len(names)
    return names[k:] + names[:k]


def alternate(
    names: list[str],
    rounds: int,
    warmup: int,
    once: Callable[..., Any],
    errors: dict[str, str],
    pass_index: bool = False,
) -> dict[str, list[Any]]:
    """Call ``once(name)`` for every name, one at a time, ``warmup + rounds`` rounds in rotated order.

    With ``pass_index`` the call is ``once(name, index)``, ``index`` counting the rounds from 0 (warm-up
    included). Returns the values of the measured rounds by name. A name whose call raises BenchError is
    recorded in ``errors`` and left out of later rounds.
    """
    samples: dict[str, list[Any]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        for name in rotated(names, index):
            if name in errors:
                continue
            try:
                value = once(name, index) if pass_index else once(name)
            except BenchError as err:
                errors[name] = str(err)
                continue
            if index >= warmup:
                samples[name].append(value)
    return samples


def best_of_groups(values: list[float], size: int) -> list[float]:
    """The smallest value of each run of ``size`` consecutive values (a last, shorter run included)."""
    return [min(values[start : start + size]) for start in range(0, len(values), size)]


# -- statistics and tables -------------------------------------------------------------------------


@dataclass
class Target:
    """fabric_core's target: ``on`` the median of "value" or of "ratio", ``op`` "<=" or ">=" ``limit``."""

    on: str
    op: str
    limit: float
    text: str

    def met(self, summary: dict) -> bool:
        value = summary["median"]
        return value <= self.limit if self.op == "<=" else value >= self.limit


def summarize(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def table(
    ctx: Context,
    *,
    id: str,
    title: str,
    unit: str,
    samples: dict[str, list[float]],
    errors: dict[str, str],
    ratio: str | None = None,
    target: Target | None = None,
    about: str = "",
    params: dict | None = None,
    notes: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict:
    """One table of results: a row per candidate (measured, not installed, failed or not applicable).

    ``ratio``: "cand/raw" (a time ratio: lower is better, or a throughput ratio) or "raw/cand" (how fast
    compared with raw when the values are times), taken round by round against raw's value of that round.
    ``labels`` renames candidates in this table's Markdown (e.g. what "raw" is when it is not plain PyTorch).
    """
    notes = notes or {}
    raw = samples.get("raw") or []
    rows = []
    for name in CANDIDATES:
        row: dict[str, Any] = {"candidate": name, "note": notes.get(name, "")}
        values = samples.get(name) or []
        if name in ctx.missing:
            row["status"] = ctx.missing[name]
        elif name in errors:
            row.update(status="error", note=errors[name])
        elif name in notes and not values:
            row["status"] = "not applicable"
        elif not values:
            row["status"] = "not run"
        else:
            row.update(status="ok", samples=values, **summarize(values))
            if ratio and raw and len(raw) == len(values):
                per_round = [c / r if ratio == "cand/raw" else r / c for c, r in zip(values, raw)]
                row["ratio"] = {"samples": per_round, **summarize(per_round)}
            if target is not None and name == "fabric_core":
                measured = row.get("ratio") if target.on == "ratio" else row
                row["target"] = target.text
                row["met"] = target.met(measured) if measured else None
        rows.append(row)
    found = {
        "id": id,
        "title": title,
        "unit": unit,
        "about": about,
        "ratio": ratio,
        "params": params or {},
        "target": target.text if target else None,
        "rows": rows,
    }
    if labels:
        found["labels"] = labels
    return found

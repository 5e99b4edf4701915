"""The two-process part of the strategy kit: one run of every check on ranks 0 and 1, reported per check.

The test process starts two processes (forked from a fork server where the platform has one, else
spawned) and waits for them with a bound. Each is set up the way ``fabric run`` sets up the ranks it
starts: the rank variables (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``NODE_RANK``,
``LOCAL_RANK``, ``RANK``) are in its environment and ``Fabric(...)`` joins the process group itself, so
no launcher runs. Each rank runs every check in turn and rewrites its report file after each one; the
test process reads the reports, and a check that never finished is reported with what each rank was
doing."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import pickle
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORLD_SIZE = 2
#: The checks, in the order every rank runs them.
CHECKS = (
    "setup",
    "all_reduce",
    "all_gather",
    "broadcast",
    "barrier",
    "training",
    "checkpoint",
    "teardown",
)
#: Strategy methods whose calls are recorded, with the ranks the strategy reports at entry and exit.
RECORDED_HOOKS = (
    "configure_launcher",
    "setup_environment",
    "setup_module_and_optimizers",
    "setup_module",
    "setup_optimizer",
    "module_to_device",
    "backward",
    "optimizer_step",
    "all_reduce",
    "all_gather",
    "broadcast",
    "barrier",
    "save_checkpoint",
    "load_checkpoint",
    "teardown",
)
# Seconds the remaining rank gets after the other one ended; a rank that waits longer is stuck in a
# collective its partner never joins.
_PARTNER_GRACE = 15.0
_BARRIER_DELAY = 0.5
_RUN_VARIABLES = ("FABRIC_ACCELERATOR", "FABRIC_STRATEGY", "FABRIC_DEVICES", "FABRIC_NUM_NODES", "FABRIC_PRECISION")


# -- the test process ---------------------------------------------------------------------------------


@dataclass
class TwoProcessRun:
    """What the two ranks reported: per check and rank, an error or a value."""

    reports: dict[int, dict[str, Any]]
    exit_codes: dict[int, int | None]
    problem: str = ""  # why the run ended early (a timeout, a crashed rank), if it did
    hooks: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def values(self, check: str) -> dict[int, Any]:
        """Each rank's value for ``check``; an ``AssertionError`` saying why when a rank did not finish it."""
        problems = []
        for rank in range(WORLD_SIZE):
            report = self.reports.get(rank, {})
            result = report.get("checks", {}).get(check)
            if result is None:
                where = report.get("current") or "starting"
                problems.append(
                    f"rank {rank} never finished the {check!r} check (it was in {where!r}, exit code "
                    f"{self.exit_codes.get(rank)})"
                )
            elif result["error"] is not None:
                problems.append(f"rank {rank} failed the {check!r} check:\n{result['error']}")
        if problems:
            ended = f"\nThe run ended early: {self.problem}" if self.problem else ""
            raise AssertionError("\n".join(problems) + ended)
        return {rank: self.reports[rank]["checks"][check]["value"] for rank in range(WORLD_SIZE)}


@dataclass
class _Job:
    """What a rank process needs, sent to it by pickling."""

    factory: bytes  # the pickled strategy factory
    modules: list[tuple[str, str]]  # (name, file) of modules the factory may live in
    sys_path: list[str]
    environ: dict[str, str]
    port: int
    accelerator: str
    training_steps: int
    directory: str


def run_two_processes(
    factory: Callable[[], Any],
    accelerator: str,
    training_steps: int,
    directory: Path,
    timeout: float,
    modules: Sequence[str] = (),
) -> TwoProcessRun:
    """Run every check on two ranks built from ``factory``; wait at most ``timeout`` seconds for them.

    The ranks are forked from a fork server (a fresh interpreter that imported torch; spawned where the
    platform has no fork), never from the test process, whose ``torch.distributed`` state would leak into
    them. ``modules`` (test modules that pytest imported under names other processes cannot import) are
    loaded from their files in each rank before the factory is unpickled there.
    """
    import sys

    from fabric_core.environments.local import find_free_port

    job = _Job(
        factory=_pickled_factory(factory),
        modules=[(name, getattr(sys.modules.get(name), "__file__", None) or "") for name in modules],
        sys_path=list(sys.path),
        environ=dict(os.environ),
        port=find_free_port(),
        accelerator=accelerator,
        training_steps=training_steps,
        directory=str(directory),
    )
    context = _context()
    processes = [
        context.Process(target=_run_rank, args=(rank, job), name=f"strategy-conformance-rank-{rank}", daemon=True)
        for rank in range(WORLD_SIZE)
    ]
    for process in processes:
        process.start()
    problem = _wait(processes, timeout)
    reports = {}
    for rank in range(WORLD_SIZE):
        path = _report_path(directory, rank)
        reports[rank] = json.loads(path.read_text()) if path.exists() else {}
    return TwoProcessRun(
        reports=reports,
        exit_codes={rank: process.exitcode for rank, process in enumerate(processes)},
        problem=problem,
        hooks={rank: reports[rank].get("hooks", []) for rank in range(WORLD_SIZE)},
    )


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Imported once in the server, so each rank forked from it starts in milliseconds.
    context.set_forkserver_preload(["torch", "fabric_core.testing._two_processes"])
    return context


def _pickled_factory(factory: Callable[[], Any]) -> bytes:
    try:
        return pickle.dumps(factory)
    except Exception as err:
        raise TypeError(
            f"strategy_factory={factory!r} cannot be sent to the two processes, which receive it pickled: {err}. "
            "Use the strategy class itself or functools.partial of it (with picklable arguments), defined at the "
            "top level of a module, not a lambda or a function defined inside another."
        ) from err


def _load_modules(modules: list[tuple[str, str]]) -> None:
    """Make ``modules`` importable by name in this process, from their files where the name does not import."""
    import importlib
    import importlib.util
    import sys
    import types

    for name, file in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            if not file:
                raise
        # Pickle imports the parent packages of a name too: give it empty ones, as pytest does.
        parts = name.split(".")
        for depth in range(1, len(parts)):
            sys.modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def _wait(processes: list[Any], timeout: float) -> str:
    """Wait for both processes; end them when the run takes too long. Returns what went wrong, if anything."""
    deadline = time.monotonic() + timeout
    problem = ""
    while any(process.is_alive() for process in processes):
        now = time.monotonic()
        ended = [rank for rank, process in enumerate(processes) if not process.is_alive()]
        if now >= deadline:
            problem = f"the ranks did not finish within {timeout:g} s (the test class's process_timeout) and were ended"
            break
        if ended:
            deadline = min(deadline, now + _PARTNER_GRACE)
            if processes[ended[0]].exitcode != 0:
                problem = f"rank {ended[0]} exited with code {processes[ended[0]].exitcode}"
        time.sleep(0.05)
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join(5)
    if not problem:
        failed = [f"rank {rank} exited with code {p.exitcode}" for rank, p in enumerate(processes) if p.exitcode]
        problem = "; ".join(failed)
    return problem


def _report_path(directory: Path | str, rank: int) -> Path:
    return Path(directory) / f"rank{rank}.json"


# -- each rank ----------------------------------------------------------------------------------------


class _Report:
    """A rank's results, rewritten to its file after every check so that a stuck rank still reports."""

    def __init__(self, directory: str, rank: int) -> None:
        self.path = _report_path(directory, rank)
        self.data: dict[str, Any] = {"checks": {}, "current": None, "hooks": []}

    @contextmanager
    def check(self, name: str) -> Iterator[dict[str, Any]]:
        self.data["current"] = name
        self.write()
        result: dict[str, Any] = {"error": None, "value": None}
        try:
            yield result
        except Exception:
            result["error"] = traceback.format_exc()
        self.data["checks"][name] = result
        self.data["current"] = None
        self.write()

    def skip(self, name: str, reason: str) -> None:
        self.data["checks"][name] = {"error": f"not run: {reason}", "value": None}

    def write(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, default=repr))
        os.replace(temporary, self.path)


def _record_hooks(strategy: Any, hooks: list[dict[str, Any]]) -> None:
    """Record the ranks ``strategy`` reports when each of its hooks starts and returns (on this instance only)."""

    def ranks(hook: str, when: str) -> dict[str, Any]:
        record: dict[str, Any] = {"hook": hook, "when": when}
        for name in ("global_rank", "local_rank", "node_rank", "world_size", "is_global_zero"):
            try:
                record[name] = getattr(strategy, name)
            except Exception as err:  # a rank that cannot be read yet is a finding, not a crash
                record[name] = f"raised {type(err).__name__}: {err}"
        return record

    def wrap(hook: str, method: Callable) -> Callable:
        @functools.wraps(method)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            hooks.append(ranks(hook, "start"))
            result = method(*args, **kwargs)
            hooks.append(ranks(hook, "end"))
            return result

        return recorded

    for hook in RECORDED_HOOKS:
        method = getattr(strategy, hook, None)
        if callable(method):
            setattr(strategy, hook, wrap(hook, method))


def _run_rank(rank: int, job: _Job) -> None:
    import sys

    sys.path[:] = job.sys_path
    os.environ.clear()
    os.environ.update(job.environ)
    for name in _RUN_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(job.port),
        WORLD_SIZE=str(WORLD_SIZE),
        NODE_RANK="0",
        LOCAL_RANK=str(rank),
        RANK=str(rank),
        FABRIC_CLI_USED="1",  # as under `fabric run`: Fabric(...) joins the process group, no launcher runs
    )
    import torch

    torch.set_num_threads(1)  # two ranks share the machine
    report = _Report(job.directory, rank)
    checks = _RankChecks(rank, job, report.data["hooks"])
    for name in CHECKS:
        if name != "setup" and checks.fabric is None:
            report.skip(name, "Fabric(...) could not be built (see the setup check)")
            continue
        with report.check(name) as result:
            result["value"] = getattr(checks, name)()
    report.write()


class _RankChecks:
    """The checks one rank runs; each returns what the test process compares across ranks."""

    def __init__(self, rank: int, job: _Job, hooks: list[dict[str, Any]]) -> None:
        self.rank = rank
        self.job = job
        self.accelerator = job.accelerator
        self.training_steps = job.training_steps
        self.directory = Path(job.directory)
        self.hooks = hooks
        self.fabric: Any = None

    def setup(self) -> dict[str, Any]:
        from fabric_core import Fabric
        from fabric_core.environments.local import LocalEnvironment

        _load_modules(self.job.modules)
        strategy = pickle.loads(self.job.factory)()
        _record_hooks(strategy, self.hooks)
        self.fabric = Fabric(
            accelerator=self.accelerator, strategy=strategy, devices=WORLD_SIZE, plugins=[LocalEnvironment()]
        )
        fabric = self.fabric
        return {"global_rank": fabric.global_rank, "world_size": fabric.world_size, "repr": repr(strategy)}

    def all_reduce(self) -> dict[str, list[float]]:
        import torch

        fabric = self.fabric
        tensor = torch.tensor([1.0, 2.0]) * (self.rank + 1)
        summed = fabric.all_reduce(fabric.to_device(tensor.clone()), reduce_op="sum")
        averaged = fabric.all_reduce(fabric.to_device(tensor.clone()), reduce_op="mean")
        return {"sum": summed.cpu().tolist(), "mean": averaged.cpu().tolist()}

    def all_gather(self) -> list:
        import torch

        tensor = self.fabric.to_device(torch.tensor([float(self.rank), 10.0 + self.rank]))
        return self.fabric.all_gather(tensor).cpu().tolist()

    def broadcast(self) -> dict[str, Any]:
        fabric = self.fabric
        return {
            "from_0": fabric.broadcast({"sent by": self.rank}, src=0),
            "from_1": fabric.broadcast({"sent by": self.rank}, src=1),
        }

    def barrier(self) -> dict[str, float]:
        if self.rank == 1:
            time.sleep(_BARRIER_DELAY)  # rank 0 must wait here for rank 1 to arrive
        called = time.time()
        self.fabric.barrier()
        return {"called": called, "returned": time.time()}

    def _model_and_optimizer(self, seed: int) -> tuple[Any, Any]:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return self.fabric.setup(model, optimizer)

    def _outputs(self, model: Any) -> list:
        import torch

        probe = torch.randn(8, 4, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            return model(self.fabric.to_device(probe)).float().cpu().flatten().tolist()

    def training(self) -> dict[str, Any]:
        import torch

        fabric = self.fabric
        model, optimizer = self._model_and_optimizer(seed=0)
        self.model, self.optimizer = model, optimizer
        before = self._outputs(model)
        # Different data on each rank: the models stay identical only if the gradients are synchronised.
        generator = torch.Generator().manual_seed(100 + self.rank)
        losses = []
        for _ in range(self.training_steps):
            inputs = torch.randn(16, 4, generator=generator)
            inputs, target = fabric.to_device((inputs, inputs.sum(dim=1, keepdim=True) * (self.rank + 1)))
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inputs), target)
            fabric.backward(loss)
            optimizer.step()
            losses.append(loss.item())
        return {"before": before, "after": self._outputs(model), "losses": losses}

    def checkpoint(self) -> dict[str, Any]:
        fabric = self.fabric
        path = self.directory / "checkpoint"
        saved = self._outputs(self.model)
        fabric.save(path, {"model": self.model, "optimizer": self.optimizer, "step": 7})
        restored, restored_optimizer = self._model_and_optimizer(seed=1)
        other = self._outputs(restored)
        state = {"model": restored, "optimizer": restored_optimizer, "step": 0}
        fabric.load(path, state)
        return {"saved": saved, "before_load": other, "loaded": self._outputs(restored), "step": state["step"]}

    def teardown(self) -> dict[str, bool]:
        import torch.distributed as dist

        self.model = self.optimizer = None
        self.fabric.teardown()
        return {"process_group_left": dist.is_available() and dist.is_initialized()}

"""Launchers: re-running the script for each local rank, and torch.multiprocessing workers.

Every test that starts processes bounds its waits and kills what it started, so a bug fails the test
instead of hanging the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from fabric_core.environments.local import LocalEnvironment
from fabric_core.launchers import (
    Launcher,
    MultiProcessingLauncher,
    SubprocessScriptLauncher,
    subprocess_script,
)

# A generous bound: a run that should end "within seconds" and takes longer than this hangs.
HANG_BOUND = 30.0
PROCESS_TIMEOUT = 60.0

# Run as ``python launch_script.py OUT_DIR MODE [extra args]``: rank 0 is the process the test starts,
# local rank 1 is the copy the launcher starts. Each rank records its pid, arguments and environment.
LAUNCH_SCRIPT = """
import json, os, signal, sys, time

from fabric_core.environments.local import LocalEnvironment
from fabric_core.launchers import SubprocessScriptLauncher

out, mode = sys.argv[1], sys.argv[2]
KEYS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "FABRIC_PARENT_PID")


def wait_for(path):
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.05)


def work(tag):
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    record = {"pid": os.getpid(), "argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in KEYS}}
    with open(os.path.join(out, f"rank{rank}.tmp"), "w") as f:
        json.dump(record, f)
    os.replace(os.path.join(out, f"rank{rank}.tmp"), os.path.join(out, f"rank{rank}.json"))
    if mode == "child_fails":
        if rank == 1:
            sys.exit(3)
        time.sleep(120)  # rank 0 stands for a process stuck in a collective
    if mode in ("parent_killed", "parent_raises"):
        if rank == 1:
            time.sleep(120)
        wait_for(os.path.join(out, "rank1.json"))
        if mode == "parent_killed":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("rank 0 failed on purpose")
    if mode == "straggler" and rank == 1:
        time.sleep(120)
    return f"{tag} from rank {rank}"


launcher = SubprocessScriptLauncher(LocalEnvironment(), num_processes=2, num_nodes=1)
print("RESULT", launcher.launch(work, "hello"), flush=True)
"""


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_until_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def _kill_recorded(out: Path) -> None:
    for record in out.glob("*.json"):
        try:
            pid = json.loads(record.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, ValueError, KeyError, OSError):
            pass


def _run_launch_script(tmp_path: Path, mode: str, *extra: str, env: dict[str, str] | None = None):
    """Run LAUNCH_SCRIPT in MODE; return (completed process, seconds taken, the ranks' records)."""
    script = tmp_path / "launch_script.py"
    script.write_text(LAUNCH_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(out), mode, *extra],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            env={**os.environ, **(env or {})},
        )
        elapsed = time.monotonic() - start
        records = {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}
        # Whatever happened, the started copy must be gone once rank 0 is.
        for record in records.values():
            assert _wait_until_dead(record["pid"]), f"process {record['pid']} outlived rank 0 ({mode})"
        return proc, elapsed, records
    finally:
        _kill_recorded(out)


def test_subprocess_script_launcher_runs_the_script_again_for_each_local_rank(tmp_path):
    proc, _, records = _run_launch_script(tmp_path, "ok", "--lr", "0.1")

    assert proc.returncode == 0, proc.stderr
    assert "RESULT hello from rank 0" in proc.stdout
    assert sorted(records) == [0, 1]
    parent, child = records[0], records[1]
    assert child["argv"] == parent["argv"] == [str(tmp_path / "out"), "ok", "--lr", "0.1"]
    assert child["env"] == {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": parent["env"]["MASTER_PORT"],
        "NODE_RANK": "0",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        "FABRIC_PARENT_PID": str(parent["pid"]),
    }
    assert parent["env"]["MASTER_PORT"].isdigit()
    assert parent["env"]["LOCAL_RANK"] is None


def test_a_failing_child_ends_the_run_with_its_exit_code(tmp_path):
    proc, elapsed, _ = _run_launch_script(tmp_path, "child_fails")

    assert proc.returncode == 3
    assert elapsed < HANG_BOUND
    assert "local rank 1" in proc.stderr
    assert "exited with code 3" in proc.stderr


def test_a_killed_parent_takes_its_children_down(tmp_path):
    proc, _, records = _run_launch_script(tmp_path, "parent_killed")

    assert proc.returncode == -signal.SIGKILL
    assert 1 in records  # and _run_launch_script checked that it died with rank 0


def test_an_exception_in_rank_zero_ends_the_children_at_once(tmp_path):
    proc, elapsed, records = _run_launch_script(tmp_path, "parent_raises")

    assert proc.returncode == 1
    assert elapsed < HANG_BOUND
    assert "rank 0 failed on purpose" in proc.stderr
    assert 1 in records


def test_children_still_running_after_the_exit_timeout_are_ended(tmp_path):
    proc, elapsed, _ = _run_launch_script(tmp_path, "straggler", env={"FABRIC_CHILD_EXIT_TIMEOUT": "1"})

    assert proc.returncode == 1
    assert elapsed < HANG_BOUND
    assert "RESULT hello from rank 0" in proc.stdout
    assert "FABRIC_CHILD_EXIT_TIMEOUT" in proc.stderr


ORPHAN_SCRIPT = """
import os, subprocess, sys, time

out = sys.argv[1]
if len(sys.argv) > 2:  # the grandchild: no PDEATHSIG here, only watch_parent()
    from fabric_core.launchers.subprocess_script import watch_parent

    watch_parent(poll_interval=0.1)
    with open(os.path.join(out, "child.tmp"), "w") as f:
        f.write('{"pid": %d}' % os.getpid())
    os.replace(os.path.join(out, "child.tmp"), os.path.join(out, "child.json"))
    time.sleep(120)
else:
    env = {**os.environ, "FABRIC_PARENT_PID": str(os.getpid())}
    subprocess.Popen([sys.executable, __file__, out, "child"], env=env)
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(out, "child.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(0)
"""


def test_watch_parent_ends_a_process_whose_parent_died(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    try:
        subprocess.run([sys.executable, str(script), str(out)], timeout=PROCESS_TIMEOUT, check=True)
        pid = json.loads((out / "child.json").read_text())["pid"]
        assert _wait_until_dead(pid)
    finally:
        _kill_recorded(out)


def test_watch_parent_does_nothing_outside_a_started_process(monkeypatch):
    monkeypatch.delenv(subprocess_script.PARENT_PID_ENV, raising=False)
    monkeypatch.setattr(subprocess_script, "_parent_watch_started", False)

    subprocess_script.watch_parent()

    assert subprocess_script._parent_watch_started is False


def test_processes_created_externally_only_run_the_function(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(subprocess_script, "_children", None)
    launcher = SubprocessScriptLauncher(LocalEnvironment(), num_processes=2, num_nodes=1)

    assert launcher.launch(lambda x: x + 1, 41) == 42
    assert subprocess_script._children is None
    assert launcher.is_interactive_compatible is False
    assert isinstance(launcher, Launcher)


def test_launching_twice_in_one_process_is_an_error(monkeypatch):
    started = types.SimpleNamespace(children=[types.SimpleNamespace(process=types.SimpleNamespace(pid=123))])
    monkeypatch.setattr(subprocess_script, "_children", started)
    launcher = SubprocessScriptLauncher(LocalEnvironment(), num_processes=2, num_nodes=1)

    with pytest.raises(RuntimeError, match=r"second time.*pids 123"):
        launcher.launch(lambda: None)


@pytest.mark.parametrize("name, value", [("num_processes", 0), ("num_nodes", "2"), ("num_processes", True)])
def test_subprocess_script_launcher_rejects_bad_counts(name, value):
    kwargs = {"num_processes": 2, "num_nodes": 1, name: value}
    with pytest.raises(ValueError, match=rf"{name}={value!r}.*int >= 1"):
        SubprocessScriptLauncher(LocalEnvironment(), **kwargs)


@pytest.fixture
def plain_interpreter(monkeypatch):
    """The interpreter as if started with no options at all."""
    monkeypatch.setattr(subprocess_script, "interpreter_options", lambda: [])


def _flags(**changes):
    names = ["isolated", "ignore_environment", "no_user_site", "safe_path", "optimize", "bytes_warning"]
    return types.SimpleNamespace(**{name: 0 for name in names} | changes)


def test_interpreter_options_pass_on_warnings_x_options_and_flags(monkeypatch):
    monkeypatch.setattr(sys, "flags", _flags(optimize=2, bytes_warning=1, no_user_site=1))
    monkeypatch.setattr(sys, "warnoptions", ["error::DeprecationWarning"])
    monkeypatch.setattr(sys, "_xoptions", {"faulthandler": True, "utf8": "1"})
    assert subprocess_script.interpreter_options() == [
        "-s",
        "-OO",
        "-b",
        "-W",
        "error::DeprecationWarning",
        "-X",
        "faulthandler",
        "-X",
        "utf8=1",
    ]


def test_interpreter_options_in_isolated_mode_say_only_dash_i(monkeypatch):
    monkeypatch.setattr(sys, "flags", _flags(isolated=1, ignore_environment=1, no_user_site=1, safe_path=True))
    monkeypatch.setattr(sys, "warnoptions", [])
    monkeypatch.setattr(sys, "_xoptions", {})
    assert subprocess_script.interpreter_options() == ["-I"]


def test_rerun_ranks_run_under_the_same_interpreter_options(tmp_path, free_port):
    script = tmp_path / "show_options.py"
    script.write_text(
        "import sys\n"
        "from fabric_core import Fabric\n"
        "fabric = Fabric(accelerator='cpu', devices=2, strategy='ddp')\n"
        "fabric.launch()\n"
        "print(f'rank {fabric.global_rank}', sorted(sys._xoptions), sys.warnoptions, sys.flags.optimize, flush=True)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env["MASTER_PORT"] = str(free_port)
    command = [sys.executable, "-X", "faulthandler", "-W", "ignore::ResourceWarning", "-O", str(script)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    for rank in (0, 1):
        assert f"rank {rank} ['faulthandler'] ['ignore::ResourceWarning'] 1" in result.stdout, result.stdout


def test_script_command_reruns_a_script_by_absolute_path(monkeypatch, tmp_path, plain_interpreter):
    script = tmp_path / "train.py"
    script.write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py", "--epochs", "3"])
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))

    assert subprocess_script.script_command() == [sys.executable, str(script), "--epochs", "3"]


def test_script_command_reruns_a_module_with_dash_m(monkeypatch, plain_interpreter):
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="mypackage.__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["/somewhere/mypackage/__main__.py", "--fast"])

    assert subprocess_script.script_command() == [sys.executable, "-m", "mypackage", "--fast"]


def test_script_command_without_a_script_says_what_to_use(monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.setattr(sys, "argv", ["-c"])

    with pytest.raises(RuntimeError, match=r"sys.argv\[0\]='-c'.*ddp_spawn"):
        subprocess_script.script_command()


# Worker code for MultiProcessingLauncher, written to an importable module: spawned workers import
# functions by module name, which pytest's test modules do not offer.
MP_HELPERS = """
import os
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from fabric_core.environments.local import LocalEnvironment

LOCAL_RANK = None


class Strategy:
    def __init__(self, num_processes=2):
        self.cluster_environment = LocalEnvironment()
        self.num_processes = num_processes
        self.num_nodes = 1

    def set_local_rank(self, rank):
        global LOCAL_RANK
        LOCAL_RANK = rank


def join_group():
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}",
        rank=LOCAL_RANK,
        world_size=2,
        timeout=timedelta(seconds=30),
    )


def all_reduce(value):
    port = os.environ["MASTER_PORT"]
    join_group()
    tensor = torch.tensor([value + LOCAL_RANK])
    dist.all_reduce(tensor)
    dist.destroy_process_group()
    # The large tensor is more than a pipe holds: the result must not get stuck on its way back.
    return {"rank": LOCAL_RANK, "port": port, "sum": tensor, "large": torch.arange(100_000)}


# Each rank adds 1.0 to every parameter and buffer, then all ranks report what they read.
def add_one_in_place(modules):
    join_group()
    try:
        tensors = [*modules["model"].parameters(), *modules["model"].buffers()]
        for turn in range(2):  # one rank after the other: shared memory then reads 2.0, never a lost update
            if turn == LOCAL_RANK:
                with torch.no_grad():
                    for tensor in tensors:
                        tensor.add_(1.0)
            dist.barrier()
        seen = [tensor.flatten()[0].item() for tensor in tensors]
        everyone = [None, None]
        dist.all_gather_object(everyone, seen)
        return everyone
    finally:
        dist.destroy_process_group()


# Each rank steps its model by +1.0 through the optimizer passed in; returns what every rank read.
def step_set_up_model(fabric, model, optimizer):
    model, optimizer = fabric.setup(model, optimizer)
    for turn in range(2):  # one rank after the other: shared memory then reads 2.0, never a lost update
        if turn == fabric.global_rank:
            model.weight.grad = torch.full_like(model.weight, -1.0)
            optimizer.step()
        fabric.barrier()
    return fabric.all_gather(model.weight.detach().flatten()[0])


def raise_on_rank_1():
    if LOCAL_RANK == 1:
        raise ValueError("boom on rank 1")
    time.sleep(120)  # stands for a rank stuck in a collective


def exit_on_rank_1():
    if LOCAL_RANK == 1:
        os._exit(7)
    time.sleep(120)
"""


@pytest.fixture
def mp_helpers(tmp_path, monkeypatch):
    (tmp_path / "fabric_mp_helpers.py").write_text(textwrap.dedent(MP_HELPERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    import fabric_mp_helpers

    yield fabric_mp_helpers
    sys.modules.pop("fabric_mp_helpers", None)


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_multiprocessing_launcher_returns_rank_zero_result(mp_helpers, start_method):
    strategy = mp_helpers.Strategy()
    launcher = MultiProcessingLauncher(strategy, start_method=start_method)

    result = launcher.launch(mp_helpers.all_reduce, 10)

    assert result["rank"] == 0
    assert result["port"] == os.environ["MASTER_PORT"] == str(strategy.cluster_environment.main_port)
    assert torch.equal(result["sum"], torch.tensor([21]))
    assert torch.equal(result["large"], torch.arange(100_000))


def _zero_model() -> torch.nn.Module:
    model = torch.nn.Linear(1, 1, bias=False)
    model.register_buffer("count", torch.zeros(1))
    torch.nn.init.zeros_(model.weight)
    return model


@pytest.mark.parametrize("start_method", ["spawn", "forkserver", "fork"])
def test_each_worker_updates_its_own_copy_of_a_module_passed_in(mp_helpers, start_method):
    model = _zero_model()
    launcher = MultiProcessingLauncher(mp_helpers.Strategy(), start_method=start_method)

    seen = launcher.launch(mp_helpers.add_one_in_place, modules={"model": model})

    # Parameter and buffer, on both ranks: 1.0. Memory shared between the ranks would read 2.0.
    assert seen == [[1.0, 1.0], [1.0, 1.0]]
    assert model.weight.item() == model.count.item() == 0.0  # nor did the workers write to the caller's


def test_ddp_spawn_ranks_step_their_own_model_and_optimizer(mp_helpers):
    from fabric_core import Fabric

    model = _zero_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")

    seen = fabric.launch(mp_helpers.step_set_up_model, model, optimizer)

    assert seen.tolist() == [1.0, 1.0]


def test_only_a_run_on_the_cpu_unshares_modules():
    # On an accelerator, setting the module up copies it to each rank's device anyway.
    from fabric_core.launchers.multiprocessing import _runs_on_cpu

    assert not _runs_on_cpu(types.SimpleNamespace(root_device=torch.device("cuda", 0)))
    assert _runs_on_cpu(types.SimpleNamespace(root_device=torch.device("cpu")))
    assert _runs_on_cpu(object())  # a strategy that does not say


def test_unsharing_copies_a_modules_tensors_in_place():
    from fabric_core.launchers.multiprocessing import _unshare_modules

    model = _zero_model().share_memory()
    weight, shared = model.weight, model.weight.data

    (unshared,), _ = _unshare_modules(([model], {}))

    assert unshared is model and model.weight is weight  # same objects: optimizers still point at them
    assert model.weight.data_ptr() != shared.data_ptr()
    assert not model.weight.is_shared() and not model.count.is_shared()


def test_a_raising_worker_fails_the_launch_naming_its_rank(mp_helpers):
    launcher = MultiProcessingLauncher(mp_helpers.Strategy(), start_method="fork")

    start = time.monotonic()
    with pytest.raises(
        RuntimeError, match=r"(?s)Worker rank 1 \(local rank 1, pid \d+\) raised.*ValueError: boom on rank 1"
    ):
        launcher.launch(mp_helpers.raise_on_rank_1)
    assert time.monotonic() - start < HANG_BOUND


def test_a_worker_that_exits_non_zero_fails_the_launch(mp_helpers):
    launcher = MultiProcessingLauncher(mp_helpers.Strategy(), start_method="fork")

    with pytest.raises(RuntimeError, match=r"Worker rank 1 \(local rank 1, pid \d+\) terminated with exit code 7"):
        launcher.launch(mp_helpers.exit_on_rank_1)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_an_unpicklable_function_is_refused_before_starting(mp_helpers, start_method, monkeypatch):
    import torch.multiprocessing

    def must_not_start(*args, **kwargs):
        raise AssertionError("processes were started")

    monkeypatch.setattr(torch.multiprocessing, "start_processes", must_not_start)
    launcher = MultiProcessingLauncher(mp_helpers.Strategy(), start_method=start_method)

    with pytest.raises(TypeError, match=r"cannot be sent.*top level of a module.*ddp_fork"):
        launcher.launch(lambda: 1)


class _DataMustNotBePickled(torch.Tensor):
    def __reduce_ex__(self, protocol):
        raise AssertionError("the picklability check pickled tensor data")


class _Holder:
    def __init__(self, tensor):
        self.tensor = tensor

    def method(self):
        return self.tensor.sum()


def test_the_picklability_check_does_not_copy_tensor_data():
    # A function holding a large model must not have the model copied just to check it.
    from fabric_core.launchers.multiprocessing import _check_picklable

    tensor = torch.zeros(3).as_subclass(_DataMustNotBePickled)

    _check_picklable(_Holder(tensor).method, "spawn")


def test_an_unknown_start_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"start_method='thread'.*'spawn', 'fork', 'forkserver'"):
        MultiProcessingLauncher(object(), start_method="thread")


@pytest.mark.parametrize("start_method, interactive", [("spawn", False), ("fork", True), ("forkserver", False)])
def test_only_fork_works_interactively(start_method, interactive):
    assert MultiProcessingLauncher(object(), start_method=start_method).is_interactive_compatible is interactive

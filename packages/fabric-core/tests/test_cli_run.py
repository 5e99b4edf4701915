"""``fabric run``: argument checks, the environment it hands to Fabric, and real runs through torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabric_core.cli import run as cli_run
from fabric_core.environments.local import find_free_port
from fabric_core.io.leftovers import pid_is_alive

# A generous bound: a run that should end "within seconds" and takes longer than this hangs.
HANG_BOUND = 30.0
PROCESS_TIMEOUT = 120.0
RUN_VARIABLES = ("FABRIC_CLI_USED", *cli_run._FLAG_ENV.values())

# A plain torch.distributed script, as torchrun runs it: ``script.py OUT_DIR MODE [args...]``.
DIST_SCRIPT = """
import json, os, sys, time
from datetime import timedelta

out, mode = sys.argv[1], sys.argv[2]
RUN_VARIABLES = ("FABRIC_CLI_USED", "FABRIC_ACCELERATOR", "FABRIC_STRATEGY", "FABRIC_DEVICES")
RUN_VARIABLES += ("FABRIC_NUM_NODES", "FABRIC_PRECISION")
rank = int(os.environ["RANK"])
with open(os.path.join(out, f"pid{rank}"), "w") as f:
    f.write(str(os.getpid()))
if mode == "rank1_fails":
    if rank == 1:
        sys.exit(1)
    time.sleep(120)  # stands for a rank waiting in a collective for the one that died

import torch
import torch.distributed as dist

dist.init_process_group("gloo", timeout=timedelta(seconds=30))
total = torch.tensor([rank + 1.0])
dist.all_reduce(total)
record = {
    "rank": rank,
    "world_size": int(os.environ["WORLD_SIZE"]),
    "local_rank": int(os.environ["LOCAL_RANK"]),
    "sum": total.item(),
    "argv": sys.argv[3:],
    "env": {k: v for k, v in os.environ.items() if k in RUN_VARIABLES},
}
with open(os.path.join(out, f"rank{rank}.tmp"), "w") as f:
    json.dump(record, f)
os.replace(os.path.join(out, f"rank{rank}.tmp"), os.path.join(out, f"rank{rank}.json"))
dist.destroy_process_group()
print(f"rank {rank} done", flush=True)
"""


@pytest.fixture
def dist_script(tmp_path) -> tuple[Path, Path]:
    script = tmp_path / "dist_script.py"
    script.write_text(DIST_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    return script, out


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fabric_core", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        stdout, stderr = proc.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"fabric run did not end within {PROCESS_TIMEOUT} s:\n{stdout}\n{stderr}")
    return proc.returncode, stdout, stderr


def _kill_leftovers(procs: list[subprocess.Popen], out: Path) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    for pid_file in out.glob("pid*"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _records(out: Path) -> dict[int, dict]:
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}


# --- real runs --------------------------------------------------------------------------------


def test_runs_one_process_per_device_with_script_args_and_fabric_env(dist_script):
    script, out = dist_script
    proc = _start("--devices", "2", "--precision", "bf16-mixed", str(script), str(out), "ok", "--devices", "5", "-h")
    try:
        code, _, stderr = _finish(proc)
    finally:
        _kill_leftovers([proc], out)

    assert code == 0, stderr
    records = _records(out)
    assert sorted(records) == [0, 1]
    for rank, record in records.items():
        assert record["world_size"] == 2
        assert record["local_rank"] == rank
        assert record["sum"] == 3.0
        assert record["argv"] == ["--devices", "5", "-h"]
        assert record["env"] == {
            "FABRIC_CLI_USED": "1",
            "FABRIC_DEVICES": "2",
            "FABRIC_PRECISION": "bf16-mixed",
        }


def test_a_failing_rank_makes_fabric_run_exit_non_zero_quickly(dist_script):
    script, out = dist_script
    start = time.monotonic()
    proc = _start("--devices", "2", str(script), str(out), "rank1_fails")
    try:
        code, _, stderr = _finish(proc)
    finally:
        _kill_leftovers([proc], out)

    assert code != 0
    assert time.monotonic() - start < HANG_BOUND
    assert "rank 1 failed first (local rank 1 on node 0" in stderr


@pytest.mark.slow
def test_two_nodes_on_one_machine_form_one_world(dist_script):
    script, out = dist_script
    port = str(find_free_port())
    common = ["--num-nodes", "2", "--devices", "1", "--main-address", "127.0.0.1", "--main-port", port]
    procs = [_start(*common, "--node-rank", str(node), str(script), str(out), "ok") for node in (0, 1)]
    try:
        results = [_finish(proc) for proc in procs]
    finally:
        _kill_leftovers(procs, out)

    assert [code for code, _, _ in results] == [0, 0], [stderr for _, _, stderr in results]
    records = _records(out)
    assert sorted(records) == [0, 1]
    assert {record["world_size"] for record in records.values()} == {2}
    assert {record["local_rank"] for record in records.values()} == {0}
    assert records[0]["env"]["FABRIC_NUM_NODES"] == "2"


# --- arguments and environment, without starting processes -------------------------------------


@pytest.fixture
def fake_torchrun(monkeypatch):
    """Replace the torchrun call; record its arguments and the environment it would have run in."""
    calls = []

    def run(torchrun_args, node_rank):
        calls.append({"args": torchrun_args, "env": dict(os.environ), "node_rank": node_rank})
        return 0

    monkeypatch.setattr(cli_run, "_run_torchrun", run)
    return calls


def test_sets_fabric_variables_only_for_the_flags_given(fake_torchrun, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("")

    assert cli_run.main(["--accelerator", "cpu", "--devices", "3", str(script), "--lr", "1"]) == 0

    (call,) = fake_torchrun
    fabric_env = {k: v for k, v in call["env"].items() if k in RUN_VARIABLES}
    assert fabric_env == {"FABRIC_CLI_USED": "1", "FABRIC_ACCELERATOR": "cpu", "FABRIC_DEVICES": "3"}
    assert "FABRIC_CLI_USED" not in os.environ  # restored after the run
    assert call["args"][:4] == [
        "--nproc-per-node=3",
        "--nnodes=1",
        "--node-rank=0",
        "--master-addr=127.0.0.1",
    ]
    assert call["args"][-3:] == [str(script), "--lr", "1"]


def test_underscore_spellings_are_accepted(fake_torchrun, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("")
    argv = ["--num_nodes", "2", "--node_rank", "1", "--main_address", "10.0.0.1", "--main_port", "1234"]

    assert cli_run.main([*argv, str(script)]) == 0

    args = fake_torchrun[0]["args"]
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1", "--master-port=1234"} <= set(args)


def test_several_nodes_default_to_the_well_known_port(fake_torchrun, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("")

    assert cli_run.main(["--num-nodes", "2", str(script)]) == 0

    assert f"--master-port={cli_run.DEFAULT_MAIN_PORT}" in fake_torchrun[0]["args"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-nodes", "0"], "--num-nodes=0 must be >= 1"),
        (["--num-nodes", "2", "--node-rank", "2"], "--node-rank=2 must be between 0 and 1"),
        (["--node-rank", "-1"], "--node-rank=-1 must be between 0 and 0"),
        (["--main-port", "0"], "--main-port=0 must be a port number between 1 and 65535"),
        (["--main-port", "65536"], "--main-port=65536 must be a port number"),
        (["--accelerator", "tpuu"], "Unknown accelerator 'tpuu'"),
        (["--devices", "0"], "--devices=0: devices=0 is not valid for the CPU accelerator"),
        (["--num-nodes", "two"], "invalid int value: 'two'"),
        (["--strategy", " "], "--strategy is empty"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(fake_torchrun, tmp_path, capsys, argv, message):
    script = tmp_path / "train.py"
    script.write_text("")

    assert cli_run.main([*argv, str(script)]) == 2

    assert message in capsys.readouterr().err
    assert fake_torchrun == []


def test_a_missing_script_exits_2_naming_the_path(fake_torchrun, tmp_path, capsys):
    missing = tmp_path / "nope.py"

    assert cli_run.main(["--devices", "2", str(missing)]) == 2

    assert f"SCRIPT {str(missing)!r} is not a file" in capsys.readouterr().err
    assert fake_torchrun == []


def test_help_lists_every_option_with_its_default(capsys):
    assert cli_run.main(["--help"]) == 0

    text = " ".join(capsys.readouterr().out.split())
    for option in (
        "--accelerator",
        "--strategy",
        "--devices",
        "--num-nodes",
        "--node-rank",
        "--main-address",
        "--main-port",
        "--precision",
    ):
        assert option in text
    assert text.count("(default:") == 8


@pytest.mark.parametrize("devices, expected", [(None, 1), ("auto", 1), ("3", 3)])
def test_processes_per_node_come_from_the_accelerator(devices, expected):
    assert cli_run._processes_per_node("cpu", devices) == expected


# A Fabric script that never ends by itself: each rank records its pid, then waits in barriers.
FOREVER_SCRIPT = """
import os, sys, time
from fabric_core import Fabric

out = sys.argv[1]
fabric = Fabric(accelerator="cpu", strategy="ddp")
with open(os.path.join(out, f"pid{fabric.global_rank}"), "w") as f:
    f.write(str(os.getpid()))
while True:
    fabric.barrier()
    time.sleep(0.2)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_end_when_fabric_run_itself_is_killed(tmp_path):
    # torch's elastic agent runs inside `fabric run`: killed with SIGKILL (the OOM killer), it cannot end its
    # workers, which used to run on forever, re-parented to init. Each worker's Fabric watches its parent.
    script = tmp_path / "forever.py"
    script.write_text(FOREVER_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    proc = _start("--accelerator", "cpu", "--devices", "2", str(script), str(out))
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while len(list(out.glob("pid*"))) < 2:
            assert proc.poll() is None, proc.communicate(timeout=10)
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
        time.sleep(0.5)  # both pid files are complete
        pids = [int(p.read_text()) for p in out.glob("pid*")]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        while any(pid_is_alive(pid) for pid in pids) and time.monotonic() - killed < HANG_BOUND:
            time.sleep(0.2)
        survivors = [pid for pid in pids if pid_is_alive(pid)]
        assert not survivors, f"workers {survivors} outlived `fabric run` by {HANG_BOUND} s"
        assert time.monotonic() - killed < 10, "the workers took more than 10 s to notice"
    finally:
        _kill_leftovers([proc], out)

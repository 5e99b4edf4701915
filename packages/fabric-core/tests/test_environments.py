"""Specifications of the built-in cluster environments, driven by the variables each launcher exports."""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import types
import warnings

import pytest

from fabric_core import Fabric
from fabric_core.environments import (
    ClusterEnvironment,
    KubeflowEnvironment,
    LightningEnvironment,
    LocalEnvironment,
    LSFEnvironment,
    MPIEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
    find_free_port,
)
from fabric_core.utilities.rank_zero import rank_zero_only
from fabric_core.utilities.warnings import PossibleUserWarning

_which = shutil.which


@pytest.fixture(autouse=True)
def _clean_launcher_variables(monkeypatch):
    """Clear what the root conftest leaves (Kubernetes, MPICH, MVAPICH2) and hide any real mpi4py."""
    for name in list(os.environ):
        if name.startswith(("KUBERNETES_", "MV2_", "MPI_LOCAL")):
            monkeypatch.delenv(name)
    # Setting before deleting makes monkeypatch restore "unset" when the code under test exports it.
    monkeypatch.setenv("MASTER_PORT", "0")
    monkeypatch.delenv("MASTER_PORT")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    # As on a machine without Slurm, wherever the tests run; tests that need it put srun back.
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None if name == "srun" else _which(name))


def _set_env(monkeypatch, **variables):
    for name, value in variables.items():
        monkeypatch.setenv(name, str(value))


# --------------------------------------------------------------------------------------------------
# Package
# --------------------------------------------------------------------------------------------------


def test_package_exports_every_environment():
    import fabric_core.environments as environments

    assert set(environments.__all__) == {
        "ClusterEnvironment",
        "LocalEnvironment",
        "LightningEnvironment",
        "TorchElasticEnvironment",
        "SLURMEnvironment",
        "LSFEnvironment",
        "MPIEnvironment",
        "KubeflowEnvironment",
        "find_free_port",
    }


@pytest.mark.parametrize(
    "target",
    [
        "fabric_core.environments.slurm:SLURMEnvironment",
        "fabric_core.environments.torchelastic:TorchElasticEnvironment",
        "fabric_core.environments.kubeflow:KubeflowEnvironment",
        "fabric_core.environments.lsf:LSFEnvironment",
        "fabric_core.environments.mpi:MPIEnvironment",
        "fabric_core.environments.local:LocalEnvironment",
    ],
)
def test_builtin_registry_targets_name_cluster_environments(target):
    module_name, attr = target.split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    assert issubclass(cls, ClusterEnvironment)


def test_importing_environments_imports_neither_torch_nor_mpi4py():
    code = "import sys, fabric_core.environments; print('torch' in sys.modules, 'mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --------------------------------------------------------------------------------------------------
# LocalEnvironment
# --------------------------------------------------------------------------------------------------


def test_local_is_always_detected():
    assert LocalEnvironment.detect()


def test_lightning_environment_is_the_local_environment():
    assert LightningEnvironment is LocalEnvironment


def test_local_picks_and_exports_a_main_port_when_master_port_is_unset():
    port = LocalEnvironment().main_port
    assert 0 < port < 65536
    assert os.environ["MASTER_PORT"] == str(port)


def test_local_main_port_is_stable_across_accesses():
    env = LocalEnvironment()
    assert env.main_port == env.main_port


def test_local_reads_master_port(monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert LocalEnvironment().main_port == 29500


def test_local_main_address_defaults_to_loopback():
    assert LocalEnvironment().main_address == "127.0.0.1"


def test_local_reads_master_addr(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    assert LocalEnvironment().main_address == "10.0.0.1"


def test_local_creates_processes_itself_without_local_rank():
    assert not LocalEnvironment().creates_processes_externally


def test_local_rank_variable_means_processes_were_created_externally(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = LocalEnvironment()
    assert env.creates_processes_externally
    assert env.local_rank() == 1


def test_local_reads_node_rank(monkeypatch):
    monkeypatch.setenv("NODE_RANK", "3")
    assert LocalEnvironment().node_rank() == 3


def test_local_node_rank_falls_back_to_group_rank_then_zero(monkeypatch):
    assert LocalEnvironment().node_rank() == 0
    monkeypatch.setenv("GROUP_RANK", "2")
    assert LocalEnvironment().node_rank() == 2


def test_local_main_port_takes_standalone_port_when_master_port_is_unset(monkeypatch):
    monkeypatch.setenv("STANDALONE_PORT", "29123")
    assert LocalEnvironment().main_port == 29123
    assert os.environ["MASTER_PORT"] == "29123"


def test_local_master_port_wins_over_standalone_port(monkeypatch):
    _set_env(monkeypatch, STANDALONE_PORT=29123, MASTER_PORT=29500)
    assert LocalEnvironment().main_port == 29500


def test_local_global_rank_is_the_rank_of_the_rank_zero_helpers():
    LocalEnvironment().set_global_rank(3)
    assert rank_zero_only.rank == 3


def test_local_keeps_the_world_size_and_rank_it_is_given():
    env = LocalEnvironment()
    env.set_world_size(8)
    env.set_global_rank(5)
    assert (env.world_size(), env.global_rank()) == (8, 5)


def test_find_free_port_returns_a_bindable_port():
    port = find_free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------------------------------
# TorchElasticEnvironment
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def torchrun(monkeypatch):
    """Worker 5 of torchrun --nnodes=2 --nproc-per-node=4: node 1, local rank 1."""
    _set_env(
        monkeypatch,
        RANK=5,
        LOCAL_RANK=1,
        GROUP_RANK=1,
        LOCAL_WORLD_SIZE=4,
        WORLD_SIZE=8,
        MASTER_ADDR="node0",
        MASTER_PORT=29400,
        TORCHELASTIC_RUN_ID="run-1",
    )


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_is_detected_under_torchrun():
    assert TorchElasticEnvironment.detect()


def test_torchelastic_is_detected_by_torchrun_run_id_alone(monkeypatch):
    # As torch.distributed.is_torchelastic_launched(): TORCHELASTIC_RUN_ID names every torchrun run.
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run-1")
    assert TorchElasticEnvironment.detect()


def test_torchelastic_is_not_detected_from_rank_variables_without_a_run_id(monkeypatch):
    # A hand-made launcher exporting torchrun's rank variables is left to the local environment.
    _set_env(monkeypatch, RANK=0, GROUP_RANK=0, LOCAL_RANK=0, LOCAL_WORLD_SIZE=1, WORLD_SIZE=1)
    assert not TorchElasticEnvironment.detect()


def test_torchelastic_is_not_detected_without_variables():
    assert not TorchElasticEnvironment.detect()


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_reads_ranks_and_sizes():
    env = TorchElasticEnvironment()
    assert env.creates_processes_externally
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (8, 5, 1, 1)


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_reads_main_address_and_port():
    env = TorchElasticEnvironment()
    assert (env.main_address, env.main_port) == ("node0", 29400)


def test_torchelastic_main_address_defaults_to_loopback_with_a_warning():
    with pytest.warns(UserWarning, match=r"MASTER_ADDR is not set; TorchElasticEnvironment uses 127.0.0.1"):
        assert TorchElasticEnvironment().main_address == "127.0.0.1"


def test_torchelastic_main_port_defaults_to_12910_with_a_warning():
    with pytest.warns(UserWarning, match=r"MASTER_PORT is not set; TorchElasticEnvironment uses 12910"):
        assert TorchElasticEnvironment().main_port == 12910


@pytest.mark.parametrize(
    ("method", "variable"), [("world_size", "WORLD_SIZE"), ("global_rank", "RANK"), ("local_rank", "LOCAL_RANK")]
)
def test_torchelastic_missing_rank_variable_is_a_key_error_naming_it_and_torchrun(method, variable):
    with pytest.raises(KeyError, match=rf"^Environment variable {variable} is not set.*torchrun"):
        getattr(TorchElasticEnvironment(), method)()


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_node_rank_is_zero_without_group_rank(monkeypatch):
    monkeypatch.delenv("GROUP_RANK")
    assert TorchElasticEnvironment().node_rank() == 0


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_malformed_rank_names_the_variable(monkeypatch):
    monkeypatch.setenv("RANK", "five")
    with pytest.raises(ValueError, match=r"RANK='five' must be an integer"):
        TorchElasticEnvironment().global_rank()


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_ignores_a_different_world_size_and_rank_with_a_debug_message(caplog):
    env = TorchElasticEnvironment()
    with caplog.at_level(logging.DEBUG, logger="fabric_core"):
        env.set_world_size(2)
        env.set_global_rank(0)
    assert (env.world_size(), env.global_rank()) == (8, 5)
    assert "set_world_size(2) ignored" in caplog.text
    assert "set_global_rank(0) ignored" in caplog.text


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_is_silent_when_the_world_size_and_rank_agree(caplog):
    env = TorchElasticEnvironment()
    with caplog.at_level(logging.DEBUG, logger="fabric_core"):
        env.set_world_size(8)
        env.set_global_rank(5)
    assert caplog.text == ""


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_accepts_matching_settings():
    TorchElasticEnvironment().validate_settings(num_devices=4, num_nodes=2)


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_accepts_any_split_of_the_world_size():
    # Only the total must match, as in Lightning: the ranks come from torchrun either way.
    TorchElasticEnvironment().validate_settings(num_devices=8, num_nodes=1)


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_rejects_devices_times_nodes_that_differ_from_the_world_size():
    message = (
        r"torchrun started 8 processes \(WORLD_SIZE=8\) but Fabric\(devices=2, num_nodes=2\) expects 4: "
        r"set devices=4, num_nodes=2 .* --nproc-per-node=2 --nnodes=2"
    )
    with pytest.raises(ValueError, match=message):
        TorchElasticEnvironment().validate_settings(num_devices=2, num_nodes=2)


@pytest.mark.usefixtures("torchrun")
def test_torchelastic_mismatch_without_local_world_size_asks_for_a_matching_product(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    with pytest.raises(ValueError, match=r"expects 12: set devices and num_nodes so that devices \* num_nodes == 8"):
        TorchElasticEnvironment().validate_settings(num_devices=4, num_nodes=3)


# --------------------------------------------------------------------------------------------------
# SLURMEnvironment
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def slurm(monkeypatch):
    """Task 6 of an sbatch job with --nodes=2 --ntasks-per-node=4: node 1, local rank 2."""
    _set_env(
        monkeypatch,
        SLURM_NTASKS=8,
        SLURM_NTASKS_PER_NODE=4,
        SLURM_NNODES=2,
        SLURM_PROCID=6,
        SLURM_LOCALID=2,
        SLURM_NODEID=1,
        SLURM_JOB_ID=1234567,
        SLURM_JOB_NAME="train",
        SLURM_NODELIST="gpu[017-018]",
    )


@pytest.mark.usefixtures("slurm")
def test_slurm_is_detected_in_a_batch_job_step():
    assert SLURMEnvironment.detect()


def test_slurm_is_not_detected_without_slurm_ntasks():
    assert not SLURMEnvironment.detect()


@pytest.mark.usefixtures("slurm")
@pytest.mark.parametrize("job_name", ["bash", "interactive"])
def test_slurm_is_not_detected_in_an_interactive_job(monkeypatch, job_name):
    monkeypatch.setenv("SLURM_JOB_NAME", job_name)
    assert not SLURMEnvironment.detect()


@pytest.mark.usefixtures("slurm", "torchrun")
def test_slurm_defers_to_torchrun_started_by_srun():
    assert not SLURMEnvironment.detect()
    assert TorchElasticEnvironment.detect()


@pytest.mark.usefixtures("slurm")
def test_slurm_reads_ranks_and_sizes():
    env = SLURMEnvironment()
    assert env.creates_processes_externally
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (8, 6, 2, 1)


@pytest.mark.parametrize(
    ("method", "variable"),
    [
        ("world_size", "SLURM_NTASKS"),
        ("global_rank", "SLURM_PROCID"),
        ("local_rank", "SLURM_LOCALID"),
        ("node_rank", "SLURM_NODEID"),
    ],
)
def test_slurm_missing_rank_variable_is_a_key_error_naming_it_and_srun(method, variable):
    with pytest.raises(KeyError, match=rf"^Environment variable {variable} is not set.*srun"):
        getattr(SLURMEnvironment(), method)()


def test_slurm_job_started_with_ntasks_instead_of_ntasks_per_node_is_refused(monkeypatch):
    # Slurm may spread --ntasks unevenly over the nodes; Fabric needs the same count on each.
    _set_env(monkeypatch, SLURM_NTASKS=8, SLURM_NNODES=2)
    with pytest.raises(RuntimeError, match=r"--ntasks=8 but without --ntasks-per-node.*use --ntasks-per-node="):
        SLURMEnvironment()


@pytest.mark.parametrize("tasks", ["1", None])
def test_slurm_single_task_needs_no_ntasks_per_node(monkeypatch, tasks):
    if tasks is not None:
        monkeypatch.setenv("SLURM_NTASKS", tasks)
    SLURMEnvironment()


@pytest.mark.usefixtures("slurm")
def test_slurm_job_refused_for_its_ntasks_fails_fabric_resolution(monkeypatch):
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE")
    with pytest.raises(RuntimeError, match=r"--ntasks=8 but without --ntasks-per-node"):
        Fabric(accelerator="cpu", devices=4, num_nodes=2)


def test_slurm_warns_when_srun_is_available_but_did_not_start_the_process(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/srun")
    with pytest.warns(PossibleUserWarning, match=r"`srun` command is available .* `srun python"):
        assert not SLURMEnvironment.detect()


@pytest.mark.usefixtures("slurm")
def test_slurm_does_not_warn_about_srun_inside_a_job_step(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/usr/bin/srun")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SLURMEnvironment.detect()
        SLURMEnvironment()


def test_slurm_auto_requeue_can_be_changed_after_creation():
    env = SLURMEnvironment()
    env.auto_requeue = False
    assert not env.auto_requeue


@pytest.mark.usefixtures("slurm")
def test_slurm_ignores_a_different_world_size_and_rank():
    env = SLURMEnvironment()
    env.set_world_size(1)
    env.set_global_rank(0)
    assert (env.world_size(), env.global_rank()) == (8, 6)


def test_slurm_defaults_to_auto_requeue_on_sigusr1():
    env = SLURMEnvironment()
    assert env.auto_requeue
    assert env.requeue_signal is signal.SIGUSR1


def test_slurm_keeps_the_requeue_settings_it_is_given():
    env = SLURMEnvironment(auto_requeue=False, requeue_signal=signal.SIGTERM)
    assert not env.auto_requeue
    assert env.requeue_signal is signal.SIGTERM
    assert repr(env) == "SLURMEnvironment(auto_requeue=False, requeue_signal=SIGTERM)"


def test_slurm_rejects_a_non_bool_auto_requeue():
    with pytest.raises(TypeError, match=r"auto_requeue='yes'\) expects a bool"):
        SLURMEnvironment(auto_requeue="yes")


def test_slurm_rejects_a_requeue_signal_that_is_not_a_signal():
    with pytest.raises(TypeError, match=r"requeue_signal=10\) expects a signal.Signals member.*SIGUSR1"):
        SLURMEnvironment(requeue_signal=10)


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("node001", "node001"),
        ("node[001-003,7]", "node001"),
        ("a1,a2", "a1"),
        ("host[1-2]-ib", "host1-ib"),
        ("node[7]", "node7"),
        ("gpu[10,2-3]", "gpu10"),
        ("rack[2-3]-ib[08,12],gpu4", "rack2-ib08"),
        ("login.cluster.org,node[1-4]", "login.cluster.org"),
        ("node[1-4],login", "node1"),
        ("node-1 node-2", "node-1"),
        ("  node-1 node-2", "node-1"),
        ("node1\tnode2", "node1"),
        ("node[001-003, 005],gpu1", "node001"),
        ("node[1 - 3]", "node1"),
        ("node[1, 3] other", "node1"),
    ],
)
def test_slurm_resolves_the_first_host_of_a_nodelist(nodelist, first):
    assert SLURMEnvironment.resolve_root_node_address(nodelist) == first


@pytest.mark.parametrize("nodelist", ["node[1-3", "node1-3]", "node[]", "node[a-b]", "", ",node1", "n[1-[2]]"])
def test_slurm_rejects_a_malformed_nodelist_naming_it(nodelist):
    with pytest.raises(ValueError, match=re.escape(f"Slurm host list {nodelist!r} is malformed")):
        SLURMEnvironment.resolve_root_node_address(nodelist)


@pytest.mark.usefixtures("slurm")
def test_slurm_main_address_is_the_first_node_of_slurm_nodelist():
    assert SLURMEnvironment().main_address == "gpu017"


@pytest.mark.usefixtures("slurm")
def test_slurm_main_address_is_overridden_by_master_addr(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "10.1.2.3")
    assert SLURMEnvironment().main_address == "10.1.2.3"


@pytest.mark.usefixtures("slurm")
def test_slurm_main_address_falls_back_to_slurm_job_nodelist(monkeypatch):
    monkeypatch.delenv("SLURM_NODELIST")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "cn[5-6]")
    assert SLURMEnvironment().main_address == "cn5"


def test_slurm_main_address_without_a_nodelist_is_loopback():
    assert SLURMEnvironment().main_address == "127.0.0.1"


@pytest.mark.usefixtures("slurm")
def test_slurm_main_port_is_derived_from_the_last_four_digits_of_the_job_id():
    assert SLURMEnvironment().main_port == 4567 + 15000


@pytest.mark.usefixtures("slurm")
def test_slurm_main_port_of_a_short_job_id(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert SLURMEnvironment().main_port == 15042


@pytest.mark.usefixtures("slurm")
def test_slurm_main_port_is_overridden_by_master_port(monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29501")
    assert SLURMEnvironment().main_port == 29501


def test_slurm_main_port_without_a_job_id_is_a_fixed_default():
    assert SLURMEnvironment().main_port == 12910


@pytest.mark.usefixtures("slurm")
def test_slurm_main_address_and_port_are_not_exported():
    env = SLURMEnvironment()
    _ = env.main_address, env.main_port
    assert "MASTER_ADDR" not in os.environ
    assert "MASTER_PORT" not in os.environ


@pytest.mark.usefixtures("slurm")
def test_slurm_job_name_and_id():
    assert SLURMEnvironment.job_name() == "train"
    assert SLURMEnvironment.job_id() == 1234567


def test_slurm_job_name_and_id_outside_slurm_are_none():
    assert SLURMEnvironment.job_name() is None
    assert SLURMEnvironment.job_id() is None


@pytest.mark.usefixtures("slurm")
def test_slurm_job_id_of_an_interactive_job_is_none(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")
    assert SLURMEnvironment.job_id() is None


@pytest.mark.usefixtures("slurm")
def test_slurm_accepts_matching_settings():
    SLURMEnvironment().validate_settings(num_devices=4, num_nodes=2)


@pytest.mark.usefixtures("slurm")
def test_slurm_rejects_devices_that_differ_from_ntasks_per_node():
    message = r"You set devices=2 but Slurm --ntasks-per-node=4; set devices=4 or --ntasks-per-node=2"
    with pytest.raises(ValueError, match=message):
        SLURMEnvironment().validate_settings(num_devices=2, num_nodes=2)


@pytest.mark.usefixtures("slurm")
def test_slurm_rejects_num_nodes_that_differ_from_nnodes():
    message = r"You set num_nodes=1 but Slurm --nodes=2; set num_nodes=2 or --nodes=1"
    with pytest.raises(ValueError, match=message):
        SLURMEnvironment().validate_settings(num_devices=4, num_nodes=1)


@pytest.mark.usefixtures("slurm")
def test_slurm_rejects_a_task_count_that_differs_from_devices_times_nodes(monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "6")  # --ntasks=6 --ntasks-per-node=4 --nodes=2: 4 + 2 tasks
    message = r"Slurm started 6 tasks \(--ntasks=6\) but Fabric\(devices=4, num_nodes=2\) expects 8"
    with pytest.raises(ValueError, match=message):
        SLURMEnvironment().validate_settings(num_devices=4, num_nodes=2)


@pytest.mark.usefixtures("slurm")
def test_slurm_skips_task_count_checks_in_an_interactive_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")
    SLURMEnvironment().validate_settings(num_devices=1, num_nodes=1)


@pytest.mark.usefixtures("slurm")
def test_slurm_malformed_task_count_names_the_variable(monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4(x2)")
    with pytest.raises(ValueError, match=r"SLURM_NTASKS_PER_NODE='4\(x2\)' must be an integer"):
        SLURMEnvironment().validate_settings(num_devices=4, num_nodes=2)


@pytest.mark.usefixtures("slurm")
def test_slurm_non_numeric_job_id_asks_for_master_port(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "12_3")
    with pytest.raises(ValueError, match=r"SLURM_JOB_ID='12_3' must be a number.*set MASTER_PORT"):
        _ = SLURMEnvironment().main_port


# --------------------------------------------------------------------------------------------------
# LSFEnvironment
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def lsf(monkeypatch, tmp_path):
    """Rank 6 of a jsrun job on two compute nodes (three slots each) behind the launch node batch1."""
    rank_file = tmp_path / "rankfile"
    rank_file.write_text("batch1\nh41n01\nh41n01\nh41n01\nh41n02\nh41n02\nh41n02\n")
    _set_env(
        monkeypatch,
        LSB_JOBID=123456,
        LSB_DJOB_RANKFILE=rank_file,
        JSM_NAMESPACE_SIZE=6,
        JSM_NAMESPACE_RANK=4,
        JSM_NAMESPACE_LOCAL_RANK=1,
    )
    monkeypatch.setattr(socket, "gethostname", lambda: "h41n02")
    return rank_file


@pytest.mark.usefixtures("lsf")
def test_lsf_is_detected_under_jsrun():
    assert LSFEnvironment.detect()


def test_lsf_is_not_detected_without_variables():
    assert not LSFEnvironment.detect()


@pytest.mark.usefixtures("lsf")
@pytest.mark.parametrize(
    "missing", ["LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE"]
)
def test_lsf_is_not_detected_without_each_required_variable(monkeypatch, missing):
    monkeypatch.delenv(missing)
    assert not LSFEnvironment.detect()


@pytest.mark.usefixtures("lsf")
@pytest.mark.parametrize(("name", "value"), [("LSB_HOSTS", "batch1 h1 h1"), ("LSB_MCPU_HOSTS", "batch1 1 h1 2")])
def test_lsf_is_detected_with_a_host_variable_instead_of_a_rank_file(monkeypatch, name, value):
    monkeypatch.delenv("LSB_DJOB_RANKFILE")
    monkeypatch.setenv(name, value)
    assert LSFEnvironment.detect()


@pytest.mark.usefixtures("lsf")
def test_lsf_reads_ranks_and_sizes_from_jsm_variables():
    env = LSFEnvironment()
    assert env.creates_processes_externally
    assert (env.world_size(), env.global_rank(), env.local_rank()) == (6, 4, 1)


@pytest.mark.usefixtures("lsf")
def test_lsf_main_address_is_the_first_compute_host_after_the_launch_node():
    assert LSFEnvironment().main_address == "h41n01"


@pytest.mark.usefixtures("lsf")
def test_lsf_node_rank_is_the_index_of_this_host_among_distinct_compute_hosts():
    assert LSFEnvironment().node_rank() == 1


@pytest.mark.usefixtures("lsf")
def test_lsf_matches_a_fully_qualified_host_name_to_a_short_one(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "h41n02.summit.olcf.gov")
    assert LSFEnvironment().node_rank() == 1


@pytest.mark.usefixtures("lsf")
def test_lsf_rejects_a_host_that_is_not_in_the_job(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "login3")
    with pytest.raises(KeyError, match=r"^This machine's host name 'login3' is not among the job's compute hosts"):
        LSFEnvironment()


@pytest.mark.usefixtures("lsf")
def test_lsf_main_port_is_derived_from_the_job_id():
    assert LSFEnvironment().main_port == 456 + 10000


@pytest.mark.usefixtures("lsf")
def test_lsf_main_port_is_overridden_by_master_port(monkeypatch):
    monkeypatch.setenv("MASTER_PORT", "29502")
    assert LSFEnvironment().main_port == 29502


@pytest.mark.usefixtures("lsf")
def test_lsf_without_job_id_or_master_port_names_lsb_jobid(monkeypatch):
    monkeypatch.delenv("LSB_JOBID")
    with pytest.raises(ValueError, match=r"LSB_JOBID is not set.*jsrun"):
        LSFEnvironment()


@pytest.mark.usefixtures("lsf")
def test_lsf_reads_hosts_from_lsb_mcpu_hosts(monkeypatch):
    monkeypatch.delenv("LSB_DJOB_RANKFILE")
    monkeypatch.setenv("LSB_MCPU_HOSTS", "batch1 1 h41n01 42 h41n02 42")
    env = LSFEnvironment()
    assert (env.main_address, env.node_rank()) == ("h41n01", 1)


@pytest.mark.usefixtures("lsf")
def test_lsf_reads_hosts_from_lsb_hosts(monkeypatch):
    monkeypatch.delenv("LSB_DJOB_RANKFILE")
    monkeypatch.setenv("LSB_HOSTS", "batch1 h41n02 h41n02 h41n05")
    env = LSFEnvironment()
    assert (env.main_address, env.node_rank()) == ("h41n02", 0)


@pytest.mark.usefixtures("lsf")
@pytest.mark.parametrize("value", ["batch1 1 h41n01", "batch1 1 h41n01 many"])
def test_lsf_rejects_malformed_lsb_mcpu_hosts_naming_it(monkeypatch, value):
    monkeypatch.delenv("LSB_DJOB_RANKFILE")
    monkeypatch.setenv("LSB_MCPU_HOSTS", value)
    with pytest.raises(ValueError, match=rf"LSB_MCPU_HOSTS={value!r} is malformed"):
        LSFEnvironment()


@pytest.mark.usefixtures("lsf")
def test_lsf_without_any_host_source_lists_the_variables(monkeypatch):
    monkeypatch.delenv("LSB_DJOB_RANKFILE")
    with pytest.raises(ValueError, match=r"none of LSB_DJOB_RANKFILE, LSB_MCPU_HOSTS, LSB_HOSTS is set"):
        LSFEnvironment()


def test_lsf_rank_file_with_only_the_launch_node_is_rejected(lsf):
    lsf.write_text("batch1\n\n")
    with pytest.raises(ValueError, match=r"LSB_DJOB_RANKFILE=.* lists no compute host"):
        LSFEnvironment()


def test_lsf_unreadable_rank_file_names_its_path(lsf, monkeypatch):
    monkeypatch.setenv("LSB_DJOB_RANKFILE", str(lsf.parent / "missing"))
    with pytest.raises(FileNotFoundError, match=r"Cannot read the LSF rank file LSB_DJOB_RANKFILE=.*missing"):
        LSFEnvironment()


@pytest.mark.usefixtures("lsf")
def test_lsf_without_jsm_rank_names_the_variable(monkeypatch):
    monkeypatch.delenv("JSM_NAMESPACE_RANK")
    with pytest.raises(ValueError, match=r"JSM_NAMESPACE_RANK is not set.*jsrun"):
        LSFEnvironment().global_rank()


@pytest.mark.usefixtures("lsf")
def test_lsf_malformed_jsm_size_names_the_variable(monkeypatch):
    monkeypatch.setenv("JSM_NAMESPACE_SIZE", "six")
    with pytest.raises(ValueError, match=r"JSM_NAMESPACE_SIZE='six' must be an integer"):
        LSFEnvironment().world_size()


@pytest.mark.usefixtures("lsf")
def test_lsf_ignores_a_different_world_size_and_rank():
    env = LSFEnvironment()
    env.set_world_size(1)
    env.set_global_rank(0)
    assert (env.world_size(), env.global_rank()) == (6, 4)


@pytest.mark.usefixtures("lsf")
def test_lsf_accepts_matching_settings():
    LSFEnvironment().validate_settings(num_devices=3, num_nodes=2)


@pytest.mark.usefixtures("lsf")
def test_lsf_rejects_devices_times_nodes_that_differ_from_the_task_count():
    with pytest.raises(ValueError, match=r"jsrun started 6 tasks .* Fabric\(devices=4, num_nodes=2\) expects 8"):
        LSFEnvironment().validate_settings(num_devices=4, num_nodes=2)


# --------------------------------------------------------------------------------------------------
# MPIEnvironment (mpi4py is faked: it is not installed here, and a real one would need mpirun)
# --------------------------------------------------------------------------------------------------


class FakeComm:
    """mpi4py's COMM_WORLD as seen by one rank of a job whose ranks run on ``hostnames``."""

    def __init__(self, hostnames, rank=0, from_root=()):
        self.hostnames = list(hostnames)
        self.rank = rank
        self.from_root = list(from_root)  # what rank 0 broadcasts, for a fake rank other than 0
        self.calls = []

    def Get_size(self):
        self.calls.append("Get_size")
        return len(self.hostnames)

    def Get_rank(self):
        return self.rank

    def allgather(self, obj):
        self.calls.append("allgather")
        assert obj == self.hostnames[self.rank]
        return list(self.hostnames)

    def bcast(self, obj, root=0):
        self.calls.append("bcast")
        return obj if self.rank == root else self.from_root.pop(0)


@pytest.fixture
def fake_mpi(monkeypatch):
    """Install a fake mpi4py whose COMM_WORLD is the returned function's ``FakeComm``."""

    def install(hostnames=("node0",), rank=0, from_root=()):
        comm = FakeComm(hostnames, rank, from_root)
        mpi4py = types.ModuleType("mpi4py")
        mpi4py.MPI = types.SimpleNamespace(COMM_WORLD=comm)
        monkeypatch.setitem(sys.modules, "mpi4py", mpi4py)
        monkeypatch.setitem(sys.modules, "mpi4py.MPI", mpi4py.MPI)
        monkeypatch.setattr(socket, "gethostname", lambda: comm.hostnames[rank])
        return comm

    return install


def test_mpi_is_not_detected_without_launcher_variables_and_does_not_touch_mpi(fake_mpi):
    comm = fake_mpi(hostnames=["a", "b"])
    assert not MPIEnvironment.detect()
    assert comm.calls == []


@pytest.mark.parametrize(
    "variable", ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_SIZE"]
)
def test_mpi_is_detected_under_a_launcher_with_several_processes(fake_mpi, monkeypatch, variable):
    fake_mpi(hostnames=["a", "b"])
    monkeypatch.setenv(variable, "2")
    assert MPIEnvironment.detect()


def test_mpi_is_not_detected_for_a_single_process(fake_mpi, monkeypatch):
    fake_mpi(hostnames=["a"])
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert not MPIEnvironment.detect()


def test_mpi_is_not_detected_without_mpi4py(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert not MPIEnvironment.detect()


def test_mpi_without_mpi4py_asks_to_install_it():
    with pytest.raises(ModuleNotFoundError, match=r"mpi4py, which is not installed: pip install mpi4py"):
        MPIEnvironment()


def test_mpi_with_a_broken_mpi4py_reports_the_import_error(monkeypatch):
    # A package whose compiled MPI module cannot be loaded, as when libmpi is missing.
    broken = types.ModuleType("mpi4py")
    broken.__path__ = []
    monkeypatch.setitem(sys.modules, "mpi4py", broken)
    with pytest.raises(ImportError, match=r"mpi4py is installed but failed to import"):
        MPIEnvironment()


def test_mpi_single_process_reads_everything_from_comm_world(fake_mpi):
    fake_mpi(hostnames=["node0"])
    env = MPIEnvironment()
    assert env.creates_processes_externally
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (1, 0, 0, 0)
    assert env.main_address == "node0"
    assert 0 < env.main_port < 65536


def test_mpi_rank_zero_takes_standalone_port(fake_mpi, monkeypatch):
    fake_mpi(hostnames=["node0", "node1"])
    monkeypatch.setenv("STANDALONE_PORT", "29124")
    assert MPIEnvironment().main_port == 29124


@pytest.mark.parametrize(
    ("hostnames", "rank", "node_rank", "local_rank"),
    [
        (["a", "a", "b", "b"], 3, 1, 1),
        (["a", "a", "b", "b"], 2, 1, 0),
        (["a", "b", "a", "b"], 2, 0, 1),
        (["z", "z", "a", "a"], 2, 1, 0),  # nodes follow rank order, not host-name order
    ],
)
def test_mpi_node_and_local_rank_come_from_the_hosts_of_all_ranks(fake_mpi, hostnames, rank, node_rank, local_rank):
    fake_mpi(hostnames=hostnames, rank=rank)
    env = MPIEnvironment()
    assert (env.node_rank(), env.local_rank()) == (node_rank, local_rank)


def test_mpi_gathers_the_hosts_once(fake_mpi):
    comm = fake_mpi(hostnames=["a", "b"], rank=1)
    env = MPIEnvironment()
    env.node_rank(), env.local_rank(), env.node_rank()
    assert comm.calls.count("allgather") == 1


def test_mpi_main_address_and_port_are_broadcast_from_rank_zero(fake_mpi):
    comm = fake_mpi(hostnames=["a", "b"], rank=1, from_root=["a", 23456])
    env = MPIEnvironment()
    assert (env.main_address, env.main_port) == ("a", 23456)
    assert (env.main_address, env.main_port) == ("a", 23456)
    assert comm.calls.count("bcast") == 2


def test_mpi_ignores_a_different_world_size_and_rank(fake_mpi):
    fake_mpi(hostnames=["a", "b"], rank=1)
    env = MPIEnvironment()
    env.set_world_size(8)
    env.set_global_rank(0)
    assert (env.world_size(), env.global_rank()) == (2, 1)


def test_mpi_rejects_devices_times_nodes_that_differ_from_the_process_count(fake_mpi):
    fake_mpi(hostnames=["a", "a", "b", "b"])
    env = MPIEnvironment()
    env.validate_settings(num_devices=2, num_nodes=2)
    with pytest.raises(ValueError, match=r"started 4 processes but Fabric\(devices=4, num_nodes=2\) expects 8"):
        env.validate_settings(num_devices=4, num_nodes=2)


# --------------------------------------------------------------------------------------------------
# KubeflowEnvironment
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def kubeflow(monkeypatch):
    """Replica 2 of a PyTorchJob with 4 replicas."""
    _set_env(
        monkeypatch,
        KUBERNETES_PORT="tcp://10.0.0.1:443",
        MASTER_ADDR="job-master-0",
        MASTER_PORT=23456,
        WORLD_SIZE=4,
        RANK=2,
    )


@pytest.mark.usefixtures("kubeflow")
def test_kubeflow_is_never_detected_automatically():
    # As in Lightning: a pod that starts its own processes, or trains on its own, looks the same.
    assert KubeflowEnvironment.detect() is False


@pytest.mark.usefixtures("kubeflow")
def test_a_pytorchjob_pod_runs_in_the_local_environment_unless_kubeflow_is_passed():
    assert isinstance(Fabric(accelerator="cpu", devices=2).strategy.cluster_environment, LocalEnvironment)
    fabric = Fabric(accelerator="cpu", devices=1, num_nodes=4, plugins=[KubeflowEnvironment()])
    assert isinstance(fabric.strategy.cluster_environment, KubeflowEnvironment)


@pytest.mark.usefixtures("kubeflow")
def test_kubeflow_has_one_process_per_pod():
    env = KubeflowEnvironment()
    assert env.creates_processes_externally
    assert (env.world_size(), env.global_rank(), env.local_rank(), env.node_rank()) == (4, 2, 0, 2)
    assert (env.main_address, env.main_port) == ("job-master-0", 23456)


@pytest.mark.usefixtures("kubeflow")
def test_kubeflow_ignores_a_different_world_size_and_rank():
    env = KubeflowEnvironment()
    env.set_world_size(8)
    env.set_global_rank(0)
    assert (env.world_size(), env.global_rank()) == (4, 2)


def test_kubeflow_without_master_addr_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match=r"^Environment variable MASTER_ADDR is not set.*PyTorchJob"):
        _ = KubeflowEnvironment().main_address


@pytest.mark.parametrize(("method", "variable"), [("world_size", "WORLD_SIZE"), ("global_rank", "RANK")])
def test_kubeflow_missing_rank_variable_is_a_key_error(method, variable):
    with pytest.raises(KeyError, match=rf"{variable} is not set"):
        getattr(KubeflowEnvironment(), method)()


@pytest.mark.usefixtures("kubeflow")
def test_kubeflow_accepts_one_device_per_replica():
    KubeflowEnvironment().validate_settings(num_devices=1, num_nodes=4)


@pytest.mark.usefixtures("kubeflow")
def test_kubeflow_rejects_more_than_one_device_per_pod():
    with pytest.raises(ValueError, match=r"one process per pod but Fabric\(devices=2\): set devices=1"):
        KubeflowEnvironment().validate_settings(num_devices=2, num_nodes=4)


@pytest.mark.usefixtures("kubeflow")
def test_kubeflow_rejects_num_nodes_that_differ_from_the_replica_count():
    with pytest.raises(ValueError, match=r"4 replicas \(WORLD_SIZE=4\) but Fabric\(num_nodes=2\): set num_nodes=4"):
        KubeflowEnvironment().validate_settings(num_devices=1, num_nodes=2)

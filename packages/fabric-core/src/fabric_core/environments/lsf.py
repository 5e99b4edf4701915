"""The environment of processes started by ``jsrun`` in an IBM Spectrum LSF job (e.g. Summit)."""

from __future__ import annotations

import logging
import os
import socket

from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.environments.local import EnvironmentKeyError, _int_from_env, required_int_from_env

log = logging.getLogger(__name__)

_HOST_SOURCES = ("LSB_DJOB_RANKFILE", "LSB_MCPU_HOSTS", "LSB_HOSTS")


def _lsf_int(name: str) -> int:
    # Lightning's LSF environment reports a missing variable as a ValueError, not a KeyError.
    return required_int_from_env(
        name,
        "LSFEnvironment",
        "Start one process per device with `jsrun` inside an LSF job (bsub), which sets it.",
        error=ValueError,
    )


def _read_rank_file(path: str) -> list[str]:
    try:
        with open(path) as file:
            return [line.strip() for line in file if line.strip()]
    except OSError as err:
        # The same OSError subclass (FileNotFoundError, PermissionError, ...) and errno that opening it raised.
        raise type(err)(
            err.errno,
            f"Cannot read the LSF rank file LSB_DJOB_RANKFILE={path!r} ({err.strerror or err}); run inside an "
            "LSF job, where LSF writes that file, or unset the variable.",
        ) from None


def _hosts_from_mcpu(value: str) -> list[str]:
    # "launch 1 h41n01 42 h41n02 42": host and slot-count pairs.
    fields = value.split()
    if len(fields) % 2 or not all(count.isdigit() for count in fields[1::2]):
        raise ValueError(
            f"Environment variable LSB_MCPU_HOSTS={value!r} is malformed: expected host and slot-count pairs "
            "such as 'batch1 1 h41n01 42'. Unset it or point LSB_DJOB_RANKFILE to the job's rank file."
        )
    return [host for host, count in zip(fields[::2], fields[1::2]) for _ in range(int(count))]


def _job_hosts() -> list[str]:
    """One entry per slot of the job, in LSF's order, read from the first of the host sources that is set."""
    name = next((name for name in _HOST_SOURCES if os.environ.get(name)), None)
    if name is None:
        raise ValueError(
            "LSFEnvironment needs the job's hosts but none of LSB_DJOB_RANKFILE, LSB_MCPU_HOSTS, "
            "LSB_HOSTS is set: run inside an LSF job (bsub)."
        )
    value = os.environ[name]
    if name == "LSB_DJOB_RANKFILE":
        hosts = _read_rank_file(value)
    elif name == "LSB_MCPU_HOSTS":
        hosts = _hosts_from_mcpu(value)
    else:
        hosts = value.split()
    # The first entry is the launch (batch) node that runs the job script, not a compute node.
    compute_hosts = hosts[1:]
    if not compute_hosts:
        raise ValueError(
            f"{name}={value!r} lists no compute host after the launch node: LSF hosts are expected one per "
            "slot with the launch node first. Check the job's resource request (bsub -nnodes)."
        )
    return compute_hosts


class LSFEnvironment(ClusterEnvironment):
    """``jsrun`` started one process per device in an LSF job; ranks come from ``JSM_NAMESPACE_*``.

    Use, in a bsub script::

        #BSUB -nnodes 2
        jsrun --nrs 2 --tasks_per_rs 6 --gpu_per_rs 6 python train.py   # Fabric(devices=6, num_nodes=2)

    The hosts of the job come from ``LSB_DJOB_RANKFILE`` (one line per slot), else ``LSB_MCPU_HOSTS`` or
    ``LSB_HOSTS``; their first entry, the launch node, is skipped. The node rank is the index of this
    machine among the distinct compute hosts, the main address is the first compute host and the main
    port is ``MASTER_PORT`` or derived from ``LSB_JOBID``. These are read once, at construction, so a
    broken job description fails before anything starts: a missing variable is a ``ValueError``, a
    rank file that cannot be read an ``OSError`` and a machine that is not among the job's hosts a
    ``KeyError``, as in Lightning.
    """

    def __init__(self) -> None:
        hosts = _job_hosts()
        self._main_address = hosts[0]
        self._main_port = self._get_main_port()
        self._node_rank = self._get_node_rank(hosts)

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return self._main_address

    @property
    def main_port(self) -> int:
        return self._main_port

    @staticmethod
    def detect() -> bool:
        has_hosts = any(name in os.environ for name in _HOST_SOURCES)
        required = ("LSB_JOBID", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE")
        return has_hosts and all(name in os.environ for name in required)

    def world_size(self) -> int:
        return _lsf_int("JSM_NAMESPACE_SIZE")

    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            log.debug("LSFEnvironment.set_world_size(%d) ignored: jsrun fixed JSM_NAMESPACE_SIZE.", size)

    def global_rank(self) -> int:
        return _lsf_int("JSM_NAMESPACE_RANK")

    def set_global_rank(self, rank: int) -> None:
        if rank != self.global_rank():
            log.debug("LSFEnvironment.set_global_rank(%d) ignored: jsrun fixed JSM_NAMESPACE_RANK.", rank)

    def local_rank(self) -> int:
        return _lsf_int("JSM_NAMESPACE_LOCAL_RANK")

    def node_rank(self) -> int:
        return self._node_rank

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise ``ValueError`` when ``devices * num_nodes`` differs from the number of jsrun tasks."""
        world_size = self.world_size()
        if world_size != num_devices * num_nodes:
            raise ValueError(
                f"jsrun started {world_size} tasks (JSM_NAMESPACE_SIZE) but Fabric(devices={num_devices}, "
                f"num_nodes={num_nodes}) expects {num_devices * num_nodes}: start {num_devices} tasks per "
                f"node on {num_nodes} nodes, or set devices and num_nodes whose product is {world_size}."
            )

    @staticmethod
    def _get_main_port() -> int:
        if os.environ.get("MASTER_PORT"):
            return _int_from_env("MASTER_PORT")
        job_id = _lsf_int("LSB_JOBID")
        # Every process computes the same port from the job id; as in Lightning it stays in 10000-10999.
        return job_id % 1000 + 10000

    @staticmethod
    def _get_node_rank(hosts: list[str]) -> int:
        distinct = list(dict.fromkeys(hosts))
        hostname = socket.gethostname()
        if hostname in distinct:
            return distinct.index(hostname)
        # LSF may list short names where the machine reports its fully qualified name, or the reverse.
        short_names = [host.split(".")[0] for host in distinct]
        if hostname.split(".")[0] in short_names:
            return short_names.index(hostname.split(".")[0])
        raise EnvironmentKeyError(
            f"This machine's host name {hostname!r} is not among the job's compute hosts {distinct}: "
            "LSFEnvironment must run on a compute node of the job, started by `jsrun`."
        )

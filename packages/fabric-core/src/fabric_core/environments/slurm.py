"""The environment of processes started by Slurm's ``srun``, one task per device."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import sys

from fabric_core.environments.cluster_environment import ClusterEnvironment
from fabric_core.environments.local import _int_from_env, required_int_from_env
from fabric_core.environments.torchelastic import TorchElasticEnvironment
from fabric_core.utilities.rank_zero import rank_zero_warn
from fabric_core.utilities.warnings import PossibleUserWarning

log = logging.getLogger(__name__)

# Slurm names the job of `salloc`/`srun --pty bash` after the shell; processes there were started by
# hand, so the Slurm task variables describe the allocation rather than the processes of the run.
_INTERACTIVE_JOB_NAMES = ("bash", "interactive")

# One host of a Slurm host list: plain characters and bracketed ranges, up to the first comma or
# whitespace outside brackets. Spaces inside brackets ("node[1-3, 7]") are tolerated, as Lightning does.
_HOST = re.compile(r"(?:[^,\s\[\]]|\[[^\[\]]*\])+")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_NUMBER = r"\s*\d+\s*"
_RANGES = re.compile(rf"{_NUMBER}(?:-{_NUMBER})?(?:,{_NUMBER}(?:-{_NUMBER})?)*")
_DEFAULT_PORT = 12910


def _slurm_int(name: str) -> int:
    return required_int_from_env(
        name,
        "SLURMEnvironment",
        "Run the script as a job step with `srun` (for example `srun python train.py` inside an sbatch script).",
    )


def _optional_slurm_int(name: str) -> int | None:
    return _int_from_env(name) if os.environ.get(name) else None


def _is_interactive() -> bool:
    return SLURMEnvironment.job_name() in _INTERACTIVE_JOB_NAMES


def _is_srun_used() -> bool:
    return "SLURM_NTASKS" in os.environ and not _is_interactive()


def _warn_if_srun_is_not_used() -> None:
    # A multi-process job started without srun hangs waiting for ranks that never start: the most
    # common Slurm mistake. Having srun on the PATH but no job step suggests it.
    if sys.platform == "win32" or _is_srun_used() or shutil.which("srun") is None:
        return
    command = " ".join(["srun", os.path.basename(sys.executable), *sys.argv])
    rank_zero_warn(
        "The `srun` command is available on this machine but did not start this process. To run on Slurm, "
        f"start the script as a job step: `{command}`.",
        category=PossibleUserWarning,
    )


def _check_task_layout() -> None:
    # With --ntasks alone, Slurm may place the tasks unevenly across nodes, while Fabric starts the
    # same number of ranks (devices) on every node; --ntasks-per-node fixes the layout.
    tasks = _int_from_env("SLURM_NTASKS", default=1)
    if tasks > 1 and "SLURM_NTASKS_PER_NODE" not in os.environ:
        raise RuntimeError(
            f"The job was started with --ntasks={tasks} but without --ntasks-per-node, which Fabric needs to "
            f"place the same number of tasks on every node: use --ntasks-per-node=<devices per node> (e.g. "
            f"--ntasks-per-node={tasks} on one node) together with --nodes instead of --ntasks."
        )


class SLURMEnvironment(ClusterEnvironment):
    """``srun`` started one task per device; ranks come from the ``SLURM_*`` variables of the job step.

    Use, in an sbatch script::

        #SBATCH --nodes=2
        #SBATCH --ntasks-per-node=4
        srun python train.py   # with Fabric(devices=4, num_nodes=2)

    The main address is the first host of ``SLURM_NODELIST`` and the main port is derived from the job
    id, so every task finds the same values without talking to the others; ``MASTER_ADDR`` and
    ``MASTER_PORT`` override them. Nothing is written to ``os.environ``. Not detected in interactive
    jobs (``salloc``, ``srun --pty bash``) nor under ``srun torchrun``, where torchrun's variables rule.

    Creating it in a job of more than one task started with ``--ntasks`` but not ``--ntasks-per-node``
    is a ``RuntimeError``; a missing rank variable is a ``KeyError``; ``devices``/``num_nodes`` that
    differ from the job's tasks are a ``ValueError`` (from :meth:`validate_settings`).

    Args:
        auto_requeue: whether the job should be requeued when Slurm signals that its time is up.
        requeue_signal: the signal that announces it (default ``SIGUSR1`` where the platform has it).
    """

    def __init__(self, auto_requeue: bool = True, requeue_signal: signal.Signals | None = None) -> None:
        if not isinstance(auto_requeue, bool):
            raise TypeError(f"SLURMEnvironment(auto_requeue={auto_requeue!r}) expects a bool: pass True or False.")
        if requeue_signal is not None and not isinstance(requeue_signal, signal.Signals):
            raise TypeError(
                f"SLURMEnvironment(requeue_signal={requeue_signal!r}) expects a signal.Signals member or "
                "None: pass, for example, signal.SIGUSR1."
            )
        if requeue_signal is None:
            # Windows has no SIGUSR1; there is no Slurm there either, so no signal is the honest default.
            requeue_signal = getattr(signal, "SIGUSR1", None)
        #: Whether the job should be requeued when it receives :attr:`requeue_signal`.
        self.auto_requeue = auto_requeue
        self.requeue_signal = requeue_signal
        _warn_if_srun_is_not_used()
        _check_task_layout()

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        if os.environ.get("MASTER_ADDR"):
            return os.environ["MASTER_ADDR"]
        nodelist = os.environ.get("SLURM_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
        if not nodelist:
            return "127.0.0.1"
        return self.resolve_root_node_address(nodelist)

    @property
    def main_port(self) -> int:
        if os.environ.get("MASTER_PORT"):
            return _int_from_env("MASTER_PORT")
        job_id = os.environ.get("SLURM_JOB_ID")
        if not job_id:
            return _DEFAULT_PORT
        if not job_id.isdigit():
            raise ValueError(
                f"Environment variable SLURM_JOB_ID={job_id!r} must be a number to derive the main port "
                "from; set MASTER_PORT to choose the port yourself."
            )
        # Every task of the job computes the same port; the offset keeps it out of the privileged range.
        return int(job_id[-4:]) + 15000

    @staticmethod
    def detect() -> bool:
        # `srun torchrun ...` makes torchrun's workers the processes of the run: their ranks come from
        # torchrun, and the Slurm task variables only describe the per-node torchrun agents.
        _warn_if_srun_is_not_used()
        return _is_srun_used() and not TorchElasticEnvironment.detect()

    @staticmethod
    def job_name() -> str | None:
        """The Slurm job name (``SLURM_JOB_NAME``), or ``None`` outside a Slurm job."""
        return os.environ.get("SLURM_JOB_NAME")

    @staticmethod
    def job_id() -> int | None:
        """The Slurm job id, or ``None`` outside a job and in interactive jobs (no batch run to name)."""
        job_id = os.environ.get("SLURM_JOB_ID")
        if not job_id or _is_interactive():
            return None
        try:
            return int(job_id)
        except ValueError:
            return None

    @staticmethod
    def resolve_root_node_address(nodes: str) -> str:
        """The first host of a Slurm host list, with Slurm's bracket notation resolved.

        >>> SLURMEnvironment.resolve_root_node_address("node[001-003,7],gpu4")
        'node001'
        >>> SLURMEnvironment.resolve_root_node_address("rack[2-3]-ib[08,12]")
        'rack2-ib08'
        >>> SLURMEnvironment.resolve_root_node_address("gpu7 gpu8")
        'gpu7'

        A list that does not parse is a ``ValueError`` naming it.
        """
        text = nodes.strip()
        match = _HOST.match(text)
        rest = text[match.end() :] if match is not None else ""
        valid = match is not None and (not rest or rest[0] == "," or rest[0].isspace())
        if valid:
            host = match.group()
            valid = all(_RANGES.fullmatch(ranges) for ranges in _BRACKET.findall(host))
        if not valid:
            raise ValueError(
                f"Slurm host list {nodes!r} is malformed: expected hosts separated by commas or spaces, with "
                "numeric ranges in brackets such as 'node[001-003,7],gpu4'. Set MASTER_ADDR to the main node's "
                "address to skip parsing it."
            )
        return _BRACKET.sub(lambda ranges: re.split(r"[,-]", ranges.group(1))[0].strip(), host)

    def world_size(self) -> int:
        return _slurm_int("SLURM_NTASKS")

    def set_world_size(self, size: int) -> None:
        if size != self.world_size():
            log.debug("SLURMEnvironment.set_world_size(%d) ignored: Slurm fixed SLURM_NTASKS.", size)

    def global_rank(self) -> int:
        return _slurm_int("SLURM_PROCID")

    def set_global_rank(self, rank: int) -> None:
        if rank != self.global_rank():
            log.debug("SLURMEnvironment.set_global_rank(%d) ignored: Slurm fixed SLURM_PROCID.", rank)

    def local_rank(self) -> int:
        return _slurm_int("SLURM_LOCALID")

    def node_rank(self) -> int:
        return _slurm_int("SLURM_NODEID")

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise ``ValueError`` when ``devices``/``num_nodes`` differ from the tasks Slurm started.

        Skipped in interactive jobs, where processes are not started by ``srun`` task by task.
        """
        if _is_interactive():
            return
        per_node = _optional_slurm_int("SLURM_NTASKS_PER_NODE")
        if per_node is not None and per_node != num_devices:
            raise ValueError(
                f"You set devices={num_devices} but Slurm --ntasks-per-node={per_node}; "
                f"set devices={per_node} or --ntasks-per-node={num_devices}."
            )
        nodes = _optional_slurm_int("SLURM_NNODES")
        if nodes is not None and nodes != num_nodes:
            raise ValueError(
                f"You set num_nodes={num_nodes} but Slurm --nodes={nodes}; "
                f"set num_nodes={nodes} or --nodes={num_nodes}."
            )
        tasks = _optional_slurm_int("SLURM_NTASKS")
        if tasks is not None and tasks != num_devices * num_nodes:
            raise ValueError(
                f"Slurm started {tasks} tasks (--ntasks={tasks}) but Fabric(devices={num_devices}, "
                f"num_nodes={num_nodes}) expects {num_devices * num_nodes}: set "
                f"--ntasks-per-node={num_devices} with --nodes={num_nodes}, or match devices*num_nodes "
                f"to {tasks}."
            )

    def __repr__(self) -> str:
        signal_name = self.requeue_signal.name if self.requeue_signal is not None else None
        return f"SLURMEnvironment(auto_requeue={self.auto_requeue}, requeue_signal={signal_name})"

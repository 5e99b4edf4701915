"""``fabric run``: start a training script on every device of this node, with torch's elastic agent.

::

    fabric run --devices 2 train.py --lr 0.1                   # two processes on this machine
    fabric run --num-nodes 2 --node-rank 0 --main-address node0 train.py   # on node0
    fabric run --num-nodes 2 --node-rank 1 --main-address node0 train.py   # on node1

The flags given are passed to ``Fabric(...)`` in the script through ``FABRIC_*`` environment variables;
a script that sets a different value in code gets an error naming both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

PROG = "fabric run"
DEFAULT_MAIN_ADDRESS = "127.0.0.1"
DEFAULT_MAIN_PORT = 29400
# How often the elastic agent checks its workers: a failed worker ends the run within about this long.
MONITOR_INTERVAL = 0.5
# Seconds a worker gets to end after SIGTERM before SIGKILL (torch's default is 30).
SHUTDOWN_TIMEOUT = "5"

_FLAG_ENV = {
    "accelerator": "FABRIC_ACCELERATOR",
    "strategy": "FABRIC_STRATEGY",
    "devices": "FABRIC_DEVICES",
    "num_nodes": "FABRIC_NUM_NODES",
    "precision": "FABRIC_PRECISION",
}


class UsageError(ValueError):
    """A command-line value that ``fabric run`` cannot use (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fabric run`` (options come before SCRIPT; what follows is the script's)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run SCRIPT in one process per device on this node, with the environment that Fabric reads. "
            "Options go before SCRIPT; everything after SCRIPT is passed to it unchanged. With several "
            "nodes, run the same command on each node with its own --node-rank."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "--accelerator",
        default=None,
        help="device kind, e.g. cpu, cuda, gpu, mps or a plugin's name (default: auto, the available "
        "accelerator with the highest priority)",
    )
    parser.add_argument("--strategy", default=None, help="strategy name, e.g. ddp or fsdp (default: chosen by Fabric)")
    parser.add_argument(
        "--devices",
        default=None,
        help="devices per node: a count, 'auto', or what the accelerator accepts such as '0,1' "
        "(default: auto, every device of the accelerator; 1 for the CPU)",
    )
    parser.add_argument(
        "--num-nodes",
        "--num_nodes",
        dest="num_nodes",
        type=int,
        default=None,
        help="number of nodes (default: 1)",
    )
    parser.add_argument(
        "--node-rank",
        "--node_rank",
        dest="node_rank",
        type=int,
        default=0,
        help="index of this node, 0 <= R < num-nodes (default: 0)",
    )
    parser.add_argument(
        "--main-address",
        "--main_address",
        dest="main_address",
        default=DEFAULT_MAIN_ADDRESS,
        help=f"address of node 0, reachable from every node (default: {DEFAULT_MAIN_ADDRESS})",
    )
    parser.add_argument(
        "--main-port",
        "--main_port",
        dest="main_port",
        type=int,
        default=None,
        help=f"port on node 0 for the rendezvous, 1-65535 (default: {DEFAULT_MAIN_PORT} with several "
        "nodes, a free port with one node)",
    )
    parser.add_argument(
        "--precision", default=None, help="precision, e.g. bf16-mixed or 32-true (default: chosen by Fabric)"
    )
    parser.add_argument("script", metavar="SCRIPT", help="the Python script to run")
    parser.add_argument(
        "script_args", metavar="...", nargs=argparse.REMAINDER, help="arguments passed to SCRIPT unchanged"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fabric run``: the exit status, 2 for bad usage and non-zero when a rank fails."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:  # --help, or argparse's own usage errors
        return _status(exit_.code)
    try:
        num_nodes = _validate(args)
        num_processes = _processes_per_node(args.accelerator, args.devices)
    except UsageError as err:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    main_port = args.main_port if args.main_port is not None else _default_port(num_nodes)
    torchrun_args = [
        f"--nproc-per-node={num_processes}",
        f"--nnodes={num_nodes}",
        f"--node-rank={args.node_rank}",
        f"--master-addr={args.main_address}",
        f"--master-port={main_port}",
        f"--monitor-interval={MONITOR_INTERVAL}",
        "--rdzv-backend=static",
        args.script,
        *args.script_args,
    ]
    from fabric_core.launchers.subprocess_script import PARENT_PID_ENV

    # The workers' parent is this process (torch's elastic agent runs here). Should it be killed (kill -9,
    # the OOM killer), nothing would end them: Fabric(...) in each worker watches this pid and ends the
    # worker when it is gone (fabric_core.launchers.subprocess_script.watch_parent).
    env = {"FABRIC_CLI_USED": "1", PARENT_PID_ENV: str(os.getpid())}
    given = {flag: getattr(args, flag) for flag in _FLAG_ENV}
    env.update({_FLAG_ENV[flag]: str(value) for flag, value in given.items() if value is not None})
    with _environment(env, defaults={"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": SHUTDOWN_TIMEOUT}):
        return _run_torchrun(torchrun_args, node_rank=args.node_rank)


def _status(code: Any) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _validate(args: argparse.Namespace) -> int:
    """Check the values that torchrun would reject late or obscurely; return the number of nodes."""
    if not os.path.isfile(args.script):
        where = os.path.abspath(args.script)
        raise UsageError(
            f"SCRIPT {args.script!r} is not a file (looked for {where}). Pass the path of the Python script "
            "to run, after the options."
        )
    num_nodes = 1 if args.num_nodes is None else args.num_nodes
    if num_nodes < 1:
        raise UsageError(f"--num-nodes={num_nodes} must be >= 1.")
    if not 0 <= args.node_rank < num_nodes:
        raise UsageError(
            f"--node-rank={args.node_rank} must be between 0 and {num_nodes - 1} (--num-nodes={num_nodes})."
        )
    if args.main_port is not None and not 1 <= args.main_port <= 65535:
        raise UsageError(f"--main-port={args.main_port} must be a port number between 1 and 65535.")
    for flag in ("accelerator", "strategy", "devices", "precision"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            raise UsageError(f"--{flag} is empty; give a value or leave the option out.")
    return num_nodes


def _processes_per_node(accelerator: str | None, devices: str | None) -> int:
    """How many processes this node runs: the number of devices the accelerator parses ``devices`` into."""
    cls = _accelerator_class(accelerator)
    if devices is None or devices.strip() == "auto":
        value: Any = cls.auto_device_count()
    else:
        text = devices.strip()
        value = int(text) if text.lstrip("-").isdigit() else text
    try:
        return len(cls.get_parallel_devices(cls.parse_devices(value)))
    except (ValueError, TypeError) as err:
        raise UsageError(f"--devices={devices}: {err}") from err


def _accelerator_class(name: str | None) -> type:
    from fabric_core.plugins.manager import get_registries
    from fabric_core.resolution import ask, available_accelerators

    registry = get_registries().accelerators
    if name is not None and name not in ("auto", "gpu"):
        try:
            entry = registry.get(name)
            available = ask(entry, "is_available")
        except (ValueError, ImportError, TypeError, RuntimeError) as err:
            raise UsageError(f"--accelerator={name}: {err}") from err
        if not available:
            raise UsageError(f"--accelerator={name}: the {name} accelerator is not available here.")
        return entry.load()
    # A broken plugin's accelerator is skipped with a warning, as Fabric(accelerator="auto") does.
    candidates, gpus = available_accelerators(registry, gpu_only=name == "gpu")
    if not candidates:
        raise UsageError(
            f"--accelerator={name}: no GPU accelerator is available here (GPU accelerators: "
            f"{', '.join(gpus) or 'none installed'})."
        )
    return candidates[0].load()


def _default_port(num_nodes: int) -> int:
    if num_nodes > 1:
        return DEFAULT_MAIN_PORT  # every node must agree on it without talking first
    from fabric_core.environments.local import find_free_port

    return find_free_port()


@contextlib.contextmanager
def _environment(values: dict[str, str], defaults: dict[str, str]) -> Iterator[None]:
    """Set ``values`` (and ``defaults`` where unset) in ``os.environ``, restoring it afterwards."""
    names = [*values, *defaults]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(values)
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_torchrun(torchrun_args: list[str], node_rank: int) -> int:
    import torch.distributed

    if not torch.distributed.is_available():
        print(f"{PROG}: error: this PyTorch build has no torch.distributed support.", file=sys.stderr)
        return 1
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        torchrun.main(torchrun_args)
    except ChildFailedError as err:
        first_rank, first = err.get_first_failure()
        print(
            f"{PROG}: rank {first_rank} failed first ({_describe(first, node_rank)}); the other processes "
            "on this node were ended.",
            file=sys.stderr,
        )
        for rank, failure in sorted(err.failures.items()):
            if rank != first_rank:
                print(f"{PROG}: rank {rank} ended too ({_describe(failure, node_rank)}).", file=sys.stderr)
        return 128 - first.exitcode if first.exitcode < 0 else max(first.exitcode, 1)
    except SignalException as err:
        print(f"{PROG}: received {err.sigval.name}; the processes on this node were ended.", file=sys.stderr)
        return 128 + int(err.sigval)
    return 0


def _describe(failure: Any, node_rank: int) -> str:
    how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return f"local rank {failure.local_rank} on node {node_rank}, pid {failure.pid}, {how}"

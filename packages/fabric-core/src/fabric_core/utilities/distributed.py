"""Collectives over ``torch.distributed`` with clear errors: unknown ops, mismatched shapes, timeouts.

Each collective records what it is and where the user called it (:mod:`fabric_core.utilities.call_records`).
A timeout or a backend failure names what every rank was doing (gathered through the rendezvous store,
:mod:`fabric_core.utilities.hang_report`). With ``FABRIC_CHECK_COLLECTIVES=1`` every collective first
compares its operation, shapes and dtypes across ranks and raises :class:`CollectiveMismatchError` at the
first difference, naming each rank's call site.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from fabric_core.utilities import call_records, hang_report

T = TypeVar("T")

#: ``torch.distributed`` waits this long by default before a collective times out.
DEFAULT_TIMEOUT = timedelta(minutes=30)

_REDUCE_OPS = {
    "sum": "SUM",
    "mean": "SUM",
    "avg": "SUM",
    "max": "MAX",
    "min": "MIN",
    "product": "PRODUCT",
    "prod": "PRODUCT",
    "band": "BAND",
    "bor": "BOR",
    "bxor": "BXOR",
}


#: Substrings (lower case) of backend errors that come from another rank: it exited, crashed or sent
#: something else than this rank expected (gloo's "op.preamble.length <= op.nbytes" is a size mismatch).
_PEER_ERRORS = (
    "connection closed",
    "connection reset",
    "connection refused",
    "broken pipe",
    "by peer",
    "socket",
    "read error",
    "remote",
    "preamble.length",
    "op.nbytes",
    "nccl error",
)

_MISMATCH_ADVICE = (
    "Every rank must call the same collectives (all_reduce, all_gather, broadcast, barrier, save, load) in the "
    "same order with the same shapes: look for one inside a branch on the rank or on data that differs by rank."
)


class DistributedError(RuntimeError):
    """A collective failed or timed out; the message names the rank and the operation."""


class CollectiveMismatchError(DistributedError):
    """With ``FABRIC_CHECK_COLLECTIVES=1``: the ranks called different collectives (or shapes) at the same point."""


class _Checks:
    """Whether collectives compare their signatures across ranks first (``FABRIC_CHECK_COLLECTIVES``)."""

    enabled = False


_checks = _Checks()


def check_collectives_from_environment() -> bool:
    """Whether ``FABRIC_CHECK_COLLECTIVES`` asks for checks (``1``/``true``/``yes``/``on``); an unknown value raises.

    The strategy reads it when it is built and applies it (:func:`set_check_collectives`) when it sets up its
    process group; the variable must be the same on every rank.
    """
    value = os.environ.get("FABRIC_CHECK_COLLECTIVES", "").strip().lower()
    if value not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ValueError(
            f"FABRIC_CHECK_COLLECTIVES={value!r} is not understood: set it to 1 to compare every collective across "
            "ranks before running it, or 0 (or unset it) to run collectives unchecked."
        )
    return value in ("1", "true", "yes", "on")


def set_check_collectives(enabled: bool) -> None:
    """Turn the cross-rank comparison of every collective on or off in this process."""
    _checks.enabled = bool(enabled)


def resolve_reduce_op(reduce_op: Any) -> tuple[Any, bool]:
    """Map ``reduce_op`` (a name or a ``ReduceOp``) to a ``ReduceOp`` and whether to divide by world size."""
    if reduce_op is None:
        return dist.ReduceOp.SUM, True
    if isinstance(reduce_op, str):
        key = reduce_op.lower()
        if key not in _REDUCE_OPS:
            raise ValueError(
                f"Unknown reduce_op {reduce_op!r}. Expected one of {', '.join(repr(k) for k in _REDUCE_OPS)} "
                "or a torch.distributed.ReduceOp."
            )
        return getattr(dist.ReduceOp, _REDUCE_OPS[key]), key in ("mean", "avg")
    if isinstance(reduce_op, dist.ReduceOp) or type(reduce_op).__name__ == "RedOpType":
        if reduce_op == dist.ReduceOp.AVG:
            return dist.ReduceOp.SUM, True
        return reduce_op, False
    raise TypeError(
        f"reduce_op={reduce_op!r} ({type(reduce_op).__name__}) is not a reduce operation: pass a name such as "
        "'mean' or 'sum', or a torch.distributed.ReduceOp."
    )


def run_collective(name: str, timeout: timedelta | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn``; turn a backend failure into an error naming the rank, the operation and its cause.

    A timeout, or a failure that comes from another rank, also lists what every rank was doing (see
    :mod:`fabric_core.utilities.hang_report`); an error of this rank alone (e.g. numpy missing) blames no
    other rank.
    """
    try:
        return fn(*args, **kwargs)
    except RuntimeError as err:
        raise _explain(name, timeout, err) from err


def _explain(name: str, timeout: timedelta | None, err: RuntimeError) -> Exception:
    rank = dist.get_rank() if dist.is_initialized() else 0
    text = str(err)
    lower = text.lower()
    if "numpy is not available" in lower:
        return ModuleNotFoundError(
            f"Rank {rank} cannot run {name}: torch sends Python objects between ranks through numpy, which is not "
            "installed in this environment. Install it on every node: pip install numpy",
            name="numpy",
        )
    if "timed out" in lower or "timeout" in lower:
        limit = f" after {timeout.total_seconds():.0f} s" if timeout is not None else ""
        summary = f"Rank {rank} timed out in {name}{limit}: at least one rank never reached the same call."
        window = hang_report.TIMEOUT_WINDOW
    elif any(marker in lower for marker in _PEER_ERRORS):
        summary = (
            f"Rank {rank} failed in {name} because of another rank: it exited, crashed, or called a different "
            "collective or shape."
        )
        window = hang_report.FAILURE_WINDOW
    else:
        return DistributedError(
            f"Rank {rank} failed in {name}, on this rank (not because of another rank): {text.strip()}"
        )
    record = call_records.active()
    if record is None or not dist.is_initialized():
        return DistributedError(f"{summary} Backend error: {text}")
    lines = hang_report.report(record, rank, dist.get_world_size(), window)
    return DistributedError(
        "\n".join([f"{summary} What each rank was doing:", *lines, _MISMATCH_ADVICE, f"Backend error: {text}"])
    )


def check_matching(record: call_records.CallRecord, group: Any | None, device: torch.device, timeout: Any) -> None:
    """Raise :class:`CollectiveMismatchError` on every rank unless all ranks of ``group`` run ``record``'s signature.

    One ``all_gather`` of :data:`~fabric_core.utilities.call_records.ENCODED_SIZE` bytes per rank. Only
    the operation and its arguments are compared: two ranks may reach the same collective from
    different lines (e.g. both branches of an ``if`` on the rank), and the sites are named when the
    operations differ.
    """
    encoded = torch.frombuffer(bytearray(call_records.encode(record)), dtype=torch.uint8).to(device)
    world_size = dist.get_world_size(group)
    # torch 2.13 renamed all_gather_into_tensor (and warns on the old name); older releases have only that one.
    gather_into = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gathered = torch.empty(world_size * call_records.ENCODED_SIZE, dtype=torch.uint8, device=device)
    run_collective(
        f"{record.operation} (FABRIC_CHECK_COLLECTIVES)",
        timeout,
        gather_into,
        gathered,
        encoded,
        group=group,
    )
    rows = gathered.view(world_size, call_records.ENCODED_SIZE)
    digests = rows[:, :8]
    if bool((digests == digests[0]).all()):
        return
    rows = rows.cpu()
    found = {}
    for index in range(world_size):
        global_rank = index if group is None else dist.get_global_rank(group, index)
        found[global_rank] = (call_records.decode(bytes(rows[index].tolist()))[1], "")
    raise CollectiveMismatchError(
        "\n".join(
            [
                f"FABRIC_CHECK_COLLECTIVES: the ranks called different collectives (collective #{record.seq} of "
                f"rank {dist.get_rank()}):",
                *call_records.group_ranks(found),
                _MISMATCH_ADVICE,
            ]
        )
    )


def _device_for_checks(group: Any | None) -> torch.device:
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: Tensor, group: Any | None, reduce_op: Any, timeout: timedelta | None) -> Tensor:
    """Reduce ``tensor`` in place over ``group`` (a mean of an integer tensor returns a new float tensor)."""
    op, divide = resolve_reduce_op(reduce_op)
    world_size = dist.get_world_size(group)
    record = call_records.begin("all_reduce", call_records.tensor_arg(tensor), ("reduce_op", reduce_op))
    try:
        if _checks.enabled:
            check_matching(record, group, tensor.device, timeout)
        run_collective(f"all_reduce(reduce_op={reduce_op!r})", timeout, dist.all_reduce, tensor, op=op, group=group)
    finally:
        call_records.end()
    if divide and world_size > 1:
        if tensor.is_floating_point() or tensor.is_complex():
            tensor.div_(world_size)
        else:
            tensor = tensor / world_size
    return tensor


def all_gather(tensor: Tensor, group: Any | None, sync_grads: bool, timeout: timedelta | None) -> Tensor:
    """Stack ``tensor`` from every rank along a new first dimension (shapes must match across ranks)."""
    record = call_records.begin("all_gather", call_records.tensor_arg(tensor), ("sync_grads", sync_grads))
    try:
        if _checks.enabled:
            check_matching(record, group, tensor.device, timeout)
        return _all_gather(tensor, group, sync_grads, timeout)
    finally:
        call_records.end()


def _all_gather(tensor: Tensor, group: Any | None, sync_grads: bool, timeout: timedelta | None) -> Tensor:
    world_size = dist.get_world_size(group)
    tensor = tensor.contiguous()
    shape = torch.tensor([tensor.dim(), *tensor.shape, *[0] * (8 - tensor.dim())], device=tensor.device)
    if tensor.dim() <= 8:
        shapes = [torch.zeros_like(shape) for _ in range(world_size)]
        run_collective("all_gather (shape check)", timeout, dist.all_gather, shapes, shape, group=group)
        if any(not torch.equal(s, shapes[0]) for s in shapes):
            found = {i: tuple(s[1 : 1 + int(s[0])].tolist()) for i, s in enumerate(shapes)}
            raise ValueError(
                f"all_gather needs the same tensor shape on every rank, got {found}. Pad the tensors to one "
                "shape first (e.g. gather the lengths, then pad to the maximum)."
            )
    if sync_grads:
        from torch.distributed.nn.functional import all_gather as differentiable_all_gather

        gathered = run_collective(
            "all_gather", timeout, differentiable_all_gather, tensor, group=group or dist.group.WORLD
        )
        return torch.stack(gathered)
    out = [torch.empty_like(tensor) for _ in range(world_size)]
    run_collective("all_gather", timeout, dist.all_gather, out, tensor, group=group)
    return torch.stack(out)


def broadcast_object(obj: T, src: int, group: Any | None, timeout: timedelta | None) -> T:
    """Send a picklable object from rank ``src`` to every rank."""
    record = call_records.begin("broadcast", ("src", src))
    try:
        if _checks.enabled:
            check_matching(record, group, _device_for_checks(group), timeout)
        box = [obj]
        run_collective(f"broadcast(src={src})", timeout, dist.broadcast_object_list, box, src=src, group=group)
        return box[0]
    finally:
        call_records.end()


def barrier(name: str | None, device_ids: list[int] | None, timeout: timedelta | None) -> None:
    """Wait for every rank; ``name`` appears in the error when a rank never arrives."""
    label = f"barrier({name!r})" if name else "barrier()"
    record = call_records.begin("barrier", name) if name else call_records.begin("barrier")
    try:
        if _checks.enabled:
            check_matching(record, None, _device_for_checks(None), timeout)
        if device_ids is not None:
            run_collective(label, timeout, dist.barrier, device_ids=device_ids)
        else:
            run_collective(label, timeout, dist.barrier)
    finally:
        call_records.end()


def is_shared_filesystem(strategy: Any, path: str | Path | None = None, timeout: int = 3) -> bool:
    """Whether every process sees the same files at ``path`` (default: the working directory).

    Call it on every rank, after the processes are launched. A remote URL (``s3://...``) and a run of
    one process count as shared at once. Otherwise rank 0 creates a marker file in the directory and
    the other ranks look for it for up to ``timeout`` seconds; the answer is the same on every rank.
    The directory must exist on every rank and be writable by rank 0.

    Args:
        strategy: ``fabric.strategy``, or any object with ``world_size``, ``broadcast``, ``barrier``,
            ``reduce_boolean_decision`` and ``is_global_zero``.
        path: a file or directory to check; a file checks its directory.
        timeout: seconds the other ranks wait for rank 0's marker.

    Example::

        if not is_shared_filesystem(fabric.strategy, "checkpoints"):
            fabric.print("each node keeps its own checkpoints directory")
    """
    from fabric_core.utilities.cloud_io import is_local_path

    if path is not None and not is_local_path(path):
        return True
    if getattr(strategy, "world_size", 1) == 1:
        return True
    resolved = Path(Path.cwd() if path is None else path).resolve()
    # Different absolute paths on different ranks cannot be one shared directory.
    if not strategy.reduce_boolean_decision(strategy.broadcast(resolved) == resolved, all=True):
        return False
    if not strategy.reduce_boolean_decision(resolved.exists(), all=True):
        raise FileNotFoundError(
            f"is_shared_filesystem: '{resolved}' does not exist on every rank, so whether it is shared cannot be "
            "checked. Create it on every node first, or pass an existing directory."
        )
    directory = resolved.parent if resolved.is_file() else resolved
    marker = directory / ".fabric_shared_fs_check"
    marker.unlink(missing_ok=True)
    strategy.barrier()
    if strategy.is_global_zero:
        marker.touch()
        found = True
    else:
        deadline = time.perf_counter() + timeout
        found = marker.exists()
        while not found and time.perf_counter() < deadline:
            time.sleep(0.01)
            found = marker.exists()
    strategy.barrier()
    shared = strategy.reduce_boolean_decision(found, all=True)
    with contextlib.suppress(OSError):  # another rank of the same machine may have removed it already
        marker.unlink()
    return shared

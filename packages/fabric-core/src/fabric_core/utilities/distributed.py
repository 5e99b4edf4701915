"""Collectives over ``torch.distributed`` with clear errors: unknown ops, mismatched shapes, timeouts."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

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


class DistributedError(RuntimeError):
    """A collective failed or timed out; the message names the rank and the operation."""


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
    """Run ``fn``; turn a backend failure into a :class:`DistributedError` naming the rank and operation."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as err:
        rank = dist.get_rank() if dist.is_initialized() else 0
        text = str(err)
        if "timed out" in text.lower() or "timeout" in text.lower():
            limit = f" after {timeout.total_seconds():.0f} s" if timeout is not None else ""
            summary = (
                f"Rank {rank} timed out in {name}{limit}: at least one other rank never reached the same "
                "call (a rank crashed, hung, or took a different code path)."
            )
        else:
            summary = f"Rank {rank} failed in {name}: another rank may have exited or crashed."
        raise DistributedError(f"{summary} Backend error: {text}") from err


def all_reduce(tensor: Tensor, group: Any | None, reduce_op: Any, timeout: timedelta | None) -> Tensor:
    """Reduce ``tensor`` in place over ``group`` (a mean of an integer tensor returns a new float tensor)."""
    op, divide = resolve_reduce_op(reduce_op)
    world_size = dist.get_world_size(group)
    run_collective(f"all_reduce(reduce_op={reduce_op!r})", timeout, dist.all_reduce, tensor, op=op, group=group)
    if divide and world_size > 1:
        if tensor.is_floating_point() or tensor.is_complex():
            tensor.div_(world_size)
        else:
            tensor = tensor / world_size
    return tensor


def all_gather(tensor: Tensor, group: Any | None, sync_grads: bool, timeout: timedelta | None) -> Tensor:
    """Stack ``tensor`` from every rank along a new first dimension (shapes must match across ranks)."""
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
    box = [obj]
    run_collective(f"broadcast(src={src})", timeout, dist.broadcast_object_list, box, src=src, group=group)
    return box[0]


def barrier(name: str | None, device_ids: list[int] | None, timeout: timedelta | None) -> None:
    """Wait for every rank; ``name`` appears in the error when a rank never arrives."""
    label = f"barrier({name!r})" if name else "barrier()"
    if device_ids is not None:
        run_collective(label, timeout, dist.barrier, device_ids=device_ids)
    else:
        run_collective(label, timeout, dist.barrier)


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

"""Gradient clipping by total norm over sharded (DTensor) gradients.

Each rank holds a shard of each gradient; the norm of the whole model's gradient needs every shard.
``torch.nn.utils.get_total_norm`` over DTensors returns a DTensor whose full value takes a collective,
and gradients on different device meshes (data x tensor parallel, or parameters left unsharded) cannot
be stacked together. So the norm is computed per mesh, made whole, and the parts combined: the result
is a plain tensor, equal on every rank, and the same number DDP computes on the unsharded gradients.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor


def _groups(tensors: Iterable[Tensor]) -> list[list[Tensor]]:
    """Tensors grouped by where they live: one group per (mesh, placements), one for plain tensors."""
    groups: dict[object, list[Tensor]] = {}
    for tensor in tensors:
        key = (id(tensor.device_mesh), tensor.placements) if isinstance(tensor, DTensor) else None
        groups.setdefault(key, []).append(tensor)
    return list(groups.values())


def total_norm(grads: list[Tensor], norm_type: float, error_if_nonfinite: bool) -> Tensor:
    """The ``norm_type`` norm of all ``grads`` together, as a plain tensor equal on every rank."""
    norm_type = float(norm_type)
    if not grads:
        return torch.tensor(0.0)
    parts = []
    for group in _groups(grads):
        part = torch.nn.utils.get_total_norm(group, norm_type=norm_type, error_if_nonfinite=False)
        if isinstance(part, DTensor):
            part = part.full_tensor()  # the collective: every rank takes part, so no rank is left waiting
        parts.append(part)
    device = parts[0].device
    stacked = torch.stack([part.to(device) for part in parts])
    norm = stacked.max() if norm_type == float("inf") else torch.linalg.vector_norm(stacked, norm_type)
    # Decided after the collectives, on a value equal everywhere: every rank raises, or none does.
    if error_if_nonfinite and not torch.isfinite(norm):
        raise RuntimeError(
            f"The total norm of order {norm_type} of the gradients is non-finite ({norm.item()}), so they cannot be "
            "clipped. Check for NaN or inf in the loss, or pass error_if_nonfinite=False to clip_gradients."
        )
    return norm


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float, norm_type: float, error_if_nonfinite: bool) -> Tensor:
    """Scale the gradients of ``parameters`` so that their total norm is at most ``max_norm``; return the norm."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norm = total_norm(grads, norm_type, error_if_nonfinite)
    # The same scaling as torch.nn.utils.clip_grad_norm_, applied one mesh at a time.
    coefficient = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for group in _groups(grads):
        torch._foreach_mul_(group, coefficient.to(group[0].device))
    return norm

"""Walking nested collections (dicts, lists, tuples, namedtuples, dataclasses) of tensors."""

from __future__ import annotations

import dataclasses
from abc import ABC
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

_ATOMS = (str, bytes, int, float, bool, type(None))


def apply_to_collection(
    data: Any, dtype: type | tuple[type, ...], function: Callable, *args: Any, **kwargs: Any
) -> Any:
    """Apply ``function`` to every element of type ``dtype`` inside ``data``, keeping the structure.

    Mappings keep their type (``OrderedDict``, ``defaultdict``), namedtuples and dataclasses are rebuilt,
    everything else is returned as it is.
    """
    if isinstance(data, dtype):
        return function(data, *args, **kwargs)
    if isinstance(data, _ATOMS):
        return data
    if isinstance(data, Mapping):
        items = [(k, apply_to_collection(v, dtype, function, *args, **kwargs)) for k, v in data.items()]
        if type(data) is dict:
            return dict(items)
        if isinstance(data, defaultdict):
            return type(data)(data.default_factory, items)
        return type(data)(items)
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(apply_to_collection(v, dtype, function, *args, **kwargs) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(apply_to_collection(v, dtype, function, *args, **kwargs) for v in data)
    if isinstance(data, Sequence) and not isinstance(data, str):
        return [apply_to_collection(v, dtype, function, *args, **kwargs) for v in data]
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        changes = {
            f.name: apply_to_collection(getattr(data, f.name), dtype, function, *args, **kwargs)
            for f in dataclasses.fields(data)
            if f.init
        }
        result = dataclasses.replace(data, **changes)
        for f in dataclasses.fields(data):
            if not f.init and hasattr(data, f.name):  # replace() re-initialises these: keep their values
                value = apply_to_collection(getattr(data, f.name), dtype, function, *args, **kwargs)
                object.__setattr__(result, f.name, value)
        return result
    return data


class _Movable(ABC):  # noqa: B024 - no abstract methods: membership is decided by __subclasshook__
    """Anything with a ``to`` method (tensors, modules, a batch class of yours): what ``move_data_to_device`` moves."""

    @classmethod
    def __subclasshook__(cls, subclass: type) -> bool:
        return True if callable(getattr(subclass, "to", None)) else NotImplemented


def _move(data: Any, device: torch.device) -> Any:
    if isinstance(data, Tensor):
        # non_blocking only helps (and is only safe) for host-to-accelerator copies; MPS has a race with it
        return data.to(device, non_blocking=device.type not in ("cpu", "mps"))
    moved = data.to(device)
    return data if moved is None else moved  # a `to` that moves in place and returns nothing


def move_data_to_device(data: Any, device: torch.device | str | int) -> Any:
    """Move every tensor in ``data`` (a tensor or a nested collection) to ``device``.

    As in Lightning, any other object with a ``to(device)`` method is moved too (a graph batch, a
    custom batch class); one whose ``to`` returns nothing is taken as moved in place.

    Example::

        move_data_to_device({"x": torch.ones(2), "meta": "id-3"}, "cuda")  # x on the GPU, meta untouched
    """
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if isinstance(data, Tensor):
        return data if data.device == device else _move(data, device)
    return apply_to_collection(data, _Movable, _move, device)


# The dtype-named Tensor methods cast like ``tensor.to(dtype)`` without its argument parsing (about a
# microsecond less per call, which a precision's forward pays twice: inputs and outputs).
_CASTS = {
    torch.float16: Tensor.half,
    torch.bfloat16: Tensor.bfloat16,
    torch.float32: Tensor.float,
    torch.float64: Tensor.double,
}


def convert_fp_tensor(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast a floating-point tensor to ``dtype``; other tensors, and those already in ``dtype``, are returned as is."""
    if not tensor.is_floating_point() or tensor.dtype == dtype:
        return tensor
    cast = _CASTS.get(dtype)
    return cast(tensor) if cast is not None else tensor.to(dtype)


def convert_fp_collection(data: Any, dtype: torch.dtype) -> Any:
    """Cast every floating-point tensor inside ``data`` to ``dtype``.

    A tensor and a tuple of tensors (a forward's positional arguments) take a short path; a call's
    single tensor argument already in ``dtype`` comes back as the same tuple.

    Example::

        convert_fp_collection((torch.ones(2), torch.arange(2)), torch.bfloat16)  # (bfloat16 ones, the int64 arange)
    """
    if isinstance(data, Tensor):
        return convert_fp_tensor(data, dtype)
    if type(data) is tuple:
        if len(data) == 1 and isinstance(data[0], Tensor):  # model(x), the most common call
            item = data[0]
            converted = convert_fp_tensor(item, dtype)
            return data if converted is item else (converted,)
        if all(isinstance(item, Tensor) for item in data):
            return tuple([convert_fp_tensor(item, dtype) for item in data])
    return apply_to_collection(data, Tensor, convert_fp_tensor, dtype)


def convert_to_tensors(data: Any, device: torch.device) -> Any:
    """Turn Python and NumPy numbers inside ``data`` into tensors on ``device`` (for collectives)."""

    def _number(value: Any) -> Tensor:
        return torch.tensor(value, device=device)

    data = apply_to_collection(data, (int, float), _number)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional
        np = None
    if np is not None:
        data = apply_to_collection(data, (np.ndarray, np.number), lambda a: torch.as_tensor(a, device=device))
    return move_data_to_device(data, device)


def convert_tensors_to_scalars(data: Any) -> Any:
    """Replace every one-element tensor inside ``data`` by its Python number (``tensor.item()``).

    A tensor with more than one element raises ``ValueError`` naming its shape.

    Example::

        convert_tensors_to_scalars({"loss": torch.tensor(0.5), "step": 3})  # {"loss": 0.5, "step": 3}
    """

    def _item(tensor: Tensor) -> int | float | bool:
        if tensor.numel() != 1:
            raise ValueError(
                f"convert_tensors_to_scalars: a tensor of shape {tuple(tensor.shape)} has {tensor.numel()} elements, "
                "so it is no scalar. Reduce it first (e.g. .mean())."
            )
        return tensor.item()

    return apply_to_collection(data, Tensor, _item)

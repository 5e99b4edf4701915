"""Which CUDA GPUs a run uses: counting them without starting CUDA, and reading the ``devices`` flag.

``devices`` takes the forms Lightning accepts for GPUs:

=================  ===========================================
``2``, ``"2"``     the first two GPUs: ``[0, 1]``
``-1``, ``"-1"``   every GPU this process can see
``[1, 3]``         GPUs 1 and 3 (a tuple works too)
``"1, 3"``         the same, as a string; ``"0,"`` is GPU 0
``"auto"``         every GPU (Fabric asks :func:`num_cuda_devices`)
=================  ===========================================

Indices count the GPUs this process can see: with ``CUDA_VISIBLE_DEVICES=4,5`` the machine's GPUs
4 and 5 are ``0`` and ``1`` here, as everywhere in CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

_FORMS = "a count such as 2, -1 for every GPU, a list of GPU indices such as [0, 1], or a string such as '0,1'"


def num_cuda_devices() -> int:
    """How many GPUs this process can use (``CUDA_VISIBLE_DEVICES`` applied), without initialising CUDA.

    ``torch.cuda.device_count()`` asks NVML first and falls back on the CUDA runtime only where NVML
    fails; it is not cached before CUDA starts, so a changed ``CUDA_VISIBLE_DEVICES`` is seen.
    """
    return torch.cuda.device_count()


def describe_visible_gpus(count: int | None = None) -> str:
    """The GPUs this process sees, for messages: ``"2 GPUs: 0 (NVIDIA A100), 1 (NVIDIA A100)"``.

    Names come from NVML where it agrees with ``count``; otherwise only indices are listed. The value
    of ``CUDA_VISIBLE_DEVICES`` is added when it is set, since it decides what is visible.
    """
    count = num_cuda_devices() if count is None else count
    if count == 0:
        text = "no GPU"
    else:
        from fabric_cuda import nvml  # only messages need names: keep it off the common path

        gpus = nvml.visible_gpus()
        names = [gpu.name for gpu in gpus] if gpus is not None and len(gpus) == count else None
        listed = ", ".join(f"{i} ({names[i]})" if names else str(i) for i in range(count))
        text = f"{count} GPU{'s' if count > 1 else ''}: {listed}"
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        text += f" (CUDA_VISIBLE_DEVICES={mask!r} selects and renumbers what this process sees)"
    return text


def _from_string(devices: str) -> int | list[int]:
    text = devices.strip()
    if text == "auto":
        return -1
    if "," in text:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts or not all(part.isdigit() for part in parts):
            raise ValueError(
                f"devices={devices!r} is not valid for the CUDA accelerator: a comma-separated string must list "
                "GPU indices, e.g. '0,1' or '1, 3'."
            )
        return [int(part) for part in parts]
    if text.lstrip("-").isdigit() and text.count("-") <= 1:
        return int(text)
    raise ValueError(f"devices={devices!r} is not valid for the CUDA accelerator: expected {_FORMS}, or 'auto'.")


def _from_count(count: int, original: Any, available: int) -> list[int]:
    if count == 0:
        raise ValueError(
            f"devices={original!r} selects no GPU. To train on the CPU use accelerator='cpu'; to use GPU 0 pass "
            "devices=[0] (or '0,'); devices=1 means one GPU."
        )
    if count == -1:
        if available == 0:
            raise ValueError(
                f"devices={original!r} asks for every GPU, but this process sees {describe_visible_gpus(0)}. Check "
                "that `nvidia-smi` lists the GPUs and that CUDA_VISIBLE_DEVICES names them, or use accelerator='cpu'."
            )
        return list(range(available))
    if count < -1:
        raise ValueError(f"devices={original!r} is not valid for the CUDA accelerator: expected {_FORMS}.")
    if count > available:
        raise ValueError(
            f"devices={original!r} asks for {count} GPUs, but this process sees {describe_visible_gpus(available)}. "
            f"Ask for at most {available}, or devices=-1 for all of them."
        )
    return list(range(count))


def _from_indices(indices: Sequence[Any], original: Any, available: int) -> list[int]:
    if not indices:
        raise ValueError(
            f"devices={original!r} selects no GPU: list at least one GPU index, e.g. [0]. To train on the CPU use "
            "accelerator='cpu'."
        )
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(
                f"devices={original!r} is not valid for the CUDA accelerator: {index!r} is not a GPU index (an int "
                ">= 0)."
            )
    repeated = sorted({i for i in indices if list(indices).count(i) > 1})
    if repeated:
        raise ValueError(
            f"devices={original!r} names GPU{'s' if len(repeated) > 1 else ''} {', '.join(map(str, repeated))} more "
            "than once; each GPU can be used once. List each index once."
        )
    missing = [i for i in indices if i >= available]
    if missing:
        raise ValueError(
            f"devices={original!r} asks for GPU{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}, "
            f"but this process sees {describe_visible_gpus(available)}. Pass indices of GPUs listed there."
        )
    return list(indices)


def parse_cuda_devices(devices: Any) -> list[int]:
    """The GPU indices ``devices`` selects, checked against the GPUs this process can see.

    Example::

        parse_cuda_devices(2)       # [0, 1]
        parse_cuda_devices("1, 3")  # [1, 3]
        parse_cuda_devices(-1)      # every visible GPU

    Raises:
        TypeError: ``devices`` is of a type that cannot name GPUs (a float, a bool, ...).
        ValueError: it names no GPU, a GPU twice, or a GPU this process cannot see; the message lists
            the GPUs there are.
    """
    value: Any = devices
    if isinstance(value, bool) or not isinstance(value, (int, str, list, tuple)):
        raise TypeError(
            f"devices={devices!r} ({type(devices).__name__}) is not valid for the CUDA accelerator: expected {_FORMS}."
        )
    if isinstance(value, str):
        value = _from_string(value)
    if isinstance(value, int):
        return _from_count(value, devices, num_cuda_devices())
    return _from_indices(list(value), devices, num_cuda_devices())


def _can_allocate_on(index: int) -> bool:
    """Whether a tensor can be created on GPU ``index`` (not when another process holds it exclusively)."""
    try:
        torch.empty(1, device=torch.device("cuda", index))
    except RuntimeError:
        return False
    return True


def find_usable_cuda_devices(num_devices: int = -1) -> list[int]:
    """Indices of GPUs this process can actually allocate on; ``-1`` (the default) finds every one.

    Useful where GPUs run in exclusive mode and some are taken by other jobs. Each candidate is tried
    with a one-element tensor in the calling process, which therefore initialises CUDA: call it in a
    script before ``Fabric(...)``, not before forking workers.

    Example::

        fabric = Fabric(accelerator="cuda", devices=find_usable_cuda_devices(2))

    Two processes searching at the same time may both find a GPU free and then compete for it.

    Raises:
        ValueError: ``num_devices`` is not -1 or a positive int, or asks for more GPUs than are visible.
        RuntimeError: fewer GPUs than requested could be used.
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices == 0 or num_devices < -1:
        raise ValueError(
            f"find_usable_cuda_devices(num_devices={num_devices!r}): expected the number of GPUs to find, an int "
            "> 0, or -1 for every usable GPU."
        )
    available = num_cuda_devices()
    if available == 0 or num_devices > available:
        wanted = "any GPU" if num_devices == -1 else f"{num_devices} GPUs"
        raise ValueError(
            f"find_usable_cuda_devices(num_devices={num_devices}) looks for {wanted}, but this process sees "
            f"{describe_visible_gpus(available)}. Ask for fewer, or check that `nvidia-smi` lists the GPUs and "
            "that CUDA_VISIBLE_DEVICES names them."
        )
    usable, busy = [], []
    for index in range(available):
        (usable if _can_allocate_on(index) else busy).append(index)
        if len(usable) == num_devices:
            break
    if not usable or (num_devices != -1 and len(usable) < num_devices):
        raise RuntimeError(
            f"find_usable_cuda_devices(num_devices={num_devices}) found {len(usable)} usable GPU"
            f"{'' if len(usable) == 1 else 's'} ({usable}); GPUs {busy} could not be used, most likely because "
            "other processes hold them in exclusive mode. Wait for them to be released, or ask for fewer GPUs."
        )
    return usable

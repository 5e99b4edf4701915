"""What each fabric collective is: its operation, arguments and the user's call site, kept for error messages.

Every collective of a fabric strategy records a :class:`CallRecord` while it runs (a few microseconds:
the shapes and dtypes as tuples, the first frame outside fabric and torch, nothing formatted). When a
collective times out, the record is what this rank reports to the others (see
:mod:`fabric_core.utilities.hang_report`); with ``FABRIC_CHECK_COLLECTIVES=1`` its signature is compared
across ranks before the collective runs (see :func:`fabric_core.utilities.distributed.check_matching`).

Example of a record, formatted::

    all_reduce(tensor float32[4], reduce_op='mean') at train.py:42 (in main)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from types import CodeType, FrameType
from typing import Any

#: Top-level modules whose frames are never the user's call site.
_INTERNAL_MODULES = frozenset(
    {
        "fabric_core",
        "fabric_cuda",
        "fabric_fsdp",
        "fabric_deepspeed",
        "fabric_xla",
        "fabric_bnb",
        "fabric_te",
        "fabric_loggers",
        "torch",
        "contextlib",
        "lightning_utilities",
    }
)
#: Whether a code object belongs to fabric or torch; filled as frames are first met, so a walk costs a
#: dictionary lookup per frame.
_internal_code: dict[CodeType, bool] = {}

#: Bytes of one encoded signature: an 8-byte digest of the signature, then its text (truncated).
ENCODED_SIZE = 512


class CallRecord:
    """One collective in progress on this rank: its operation, arguments and where the user called it."""

    __slots__ = ("args", "file", "function", "line", "operation", "seq", "started", "thread")

    def __init__(self, operation: str, args: tuple[Any, ...], frame: FrameType | None, seq: int) -> None:
        self.operation = operation
        self.args = args  # raw values: tensors as (shape tuple, dtype); formatted only when reported
        if frame is None:
            self.file, self.line, self.function = "<unknown>", 0, "?"
        else:
            self.file, self.line, self.function = frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
        self.seq = seq
        self.started = time.monotonic()
        self.thread = threading.get_ident()

    def signature(self) -> str:
        """The operation and its arguments, e.g. ``all_reduce(tensor float32[4], reduce_op='mean')``."""
        return f"{self.operation}({', '.join(_format_arg(arg) for arg in self.args)})"

    def site(self) -> str:
        return format_site(self.file, self.line, self.function)

    def describe(self) -> str:
        return f"{self.signature()} at {self.site()}"


class _Active:
    """The collective this process is in (at most one at a time: collectives do not nest)."""

    record: CallRecord | None = None
    count = 0


_active = _Active()


def _format_arg(arg: Any) -> str:
    if isinstance(arg, tuple) and len(arg) == 2 and isinstance(arg[0], tuple):
        shape, dtype = arg
        return f"tensor {str(dtype).replace('torch.', '')}[{', '.join(str(size) for size in shape)}]"
    if isinstance(arg, tuple) and len(arg) == 2 and isinstance(arg[0], str):
        return f"{arg[0]}={arg[1]!r}"
    return repr(arg)


def format_site(file: str, line: int, function: str) -> str:
    """``path:line (in function)``, the path relative to the working directory when it lies below it."""
    try:
        relative = os.path.relpath(file)
        if not relative.startswith(".."):
            file = relative
    except ValueError:  # another drive (Windows)
        pass
    return f"{file}:{line} (in {function})"


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame, walking outwards from ``frame``, that is not fabric's, torch's or contextlib's."""
    internal_code = _internal_code
    while frame is not None:
        code = frame.f_code
        internal = internal_code.get(code)
        if internal is None:
            module = frame.f_globals.get("__name__") or ""
            internal = internal_code[code] = module.partition(".")[0] in _INTERNAL_MODULES
        if not internal:
            return frame
        frame = frame.f_back
    return None


def tensor_arg(tensor: Any) -> tuple[tuple[int, ...], Any]:
    """A tensor as a record keeps it: its shape and dtype, not the tensor."""
    return (tuple(tensor.shape), tensor.dtype)


def begin(operation: str, *args: Any) -> CallRecord:
    """Mark this process as inside ``operation`` until :func:`end`; call both in a ``try``/``finally``.

    ``args`` are tensors given as :func:`tensor_arg`, ``(name, value)`` pairs for keyword arguments,
    or plain values.
    """
    _active.count += 1
    record = CallRecord(operation, args, user_frame(sys._getframe(1)), _active.count)
    _active.record = record
    return record


def end() -> None:
    _active.record = None


def active() -> CallRecord | None:
    """The collective this process is in right now, if any."""
    return _active.record


def where_is(thread_id: int) -> str | None:
    """The user's call site that thread ``thread_id`` is running right now (``None`` when it has ended)."""
    frame = sys._current_frames().get(thread_id)
    found = user_frame(frame)
    if found is None:
        return None
    return format_site(found.f_code.co_filename, found.f_lineno, found.f_code.co_name)


# -- the signature compared across ranks by FABRIC_CHECK_COLLECTIVES -----------------------------------


def encode(record: CallRecord) -> bytes:
    """``record``'s signature and call site in :data:`ENCODED_SIZE` bytes; equal digests mean equal signatures."""
    signature = record.signature()
    digest = hashlib.blake2b(signature.encode(), digest_size=8).digest()
    text = json.dumps([signature, record.site()]).encode()[: ENCODED_SIZE - 8]
    return (digest + text).ljust(ENCODED_SIZE, b"\0")


def decode(data: bytes) -> tuple[bytes, str]:
    """The digest and ``signature at site`` text of an :func:`encode`-d record."""
    digest, text = data[:8], data[8:].rstrip(b"\0").decode(errors="replace")
    try:
        signature, site = json.loads(text)
        return digest, f"{signature} at {site}"
    except ValueError:  # truncated: show what there is
        return digest, text


def group_ranks(answers: dict[int, tuple[str, str]]) -> list[str]:
    """``rank N: what [detail]`` lines; ranks doing the same thing share a line (``ranks 0-3, 6: what``).

    ``answers`` maps each rank to what it was doing and a detail (pid, host, time waited) that is shown
    only for a rank alone on its line.
    """
    by_what: dict[str, list[int]] = {}
    for rank in sorted(answers):
        by_what.setdefault(answers[rank][0], []).append(rank)
    lines = []
    for what, ranks in sorted(by_what.items(), key=lambda item: item[1][0]):
        if len(ranks) == 1:
            detail = answers[ranks[0]][1]
            lines.append(f"  rank {ranks[0]}: {what}" + (f" [{detail}]" if detail else ""))
        else:
            lines.append(f"  ranks {_ranges(ranks)}: {what}")
    return lines


def _ranges(ranks: list[int]) -> str:
    runs: list[list[int]] = []
    for rank in ranks:
        if runs and rank == runs[-1][1] + 1:
            runs[-1][1] = rank
        else:
            runs.append([rank, rank])
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)

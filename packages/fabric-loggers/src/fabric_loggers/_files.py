"""Writing files so that a crash leaves either the old content or the new one, never half of it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


@contextmanager
def atomic_write(path: str, newline: str | None = None) -> Iterator[IO[str]]:
    """Write a text file through a temporary file in the same folder, fsync it, then rename it over ``path``.

    Example::

        with atomic_write("run/hparams.yaml") as f:
            f.write("lr: 0.001\\n")
    """
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open rather than tempfile.mkstemp: the file gets the usual umask permissions, not 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def append_durably(path: str, data: bytes) -> None:
    """Append ``data`` to ``path`` with unbuffered writes, then fsync: what returns is on disk."""
    with open(path, "ab", buffering=0) as f:
        view = memoryview(data)
        while view:
            written = f.write(view)
            view = view[written:]
        os.fsync(f.fileno())

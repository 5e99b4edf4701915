"""Making a finished write survive a power loss: flushing files and directory entries to the disk."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: str | Path) -> None:
    """Flush a directory's entries (a rename, a new file) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Stale build locks of DeepSpeed's just-in-time extensions, found before they hang a run.

DeepSpeed compiles some of its operators (``cpu_adam``, ``async_io``, ...) on first use with
``torch.utils.cpp_extension``, which guards each build folder with a ``lock`` file that it creates
exclusively and deletes when the build ends. A run killed during a build leaves the file behind, and
every later run that needs the operator waits for it to disappear, forever and silently. A lock that
no process on this machine holds open is such a leftover; on several nodes sharing the build folder
another node may be building, so there only an old lock counts as stale.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: On several nodes, a lock nobody here holds is taken for stale only when it is older than this.
SHARED_BUILD_GRACE_S = 600.0


def extensions_root() -> Path:
    """Where ``torch.utils.cpp_extension`` builds extensions (``TORCH_EXTENSIONS_DIR`` or its default)."""
    configured = os.environ.get("TORCH_EXTENSIONS_DIR")
    if configured:
        return Path(configured)
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


def _open_paths() -> set[str] | None:
    """The files any process of this machine has open (that we may look at), or ``None`` without /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    opened: set[str] = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            descriptors = os.listdir(proc / pid / "fd")
        except OSError:  # ended meanwhile, or another user's
            continue
        for fd in descriptors:
            try:
                opened.add(os.readlink(proc / pid / "fd" / fd))
            except OSError:
                continue
    return opened


def stale_locks(root: Path | None = None, shared: bool = False, now: float | None = None) -> list[Path]:
    """The build locks under ``root`` that no build will ever release.

    ``shared``: the build folder may be shared with other nodes, so a lock that is recent and held by
    no process here may be another node's build in progress; it counts as stale only after
    :data:`SHARED_BUILD_GRACE_S`.
    """
    root = extensions_root() if root is None else root
    locks = sorted(root.glob("*/lock")) + sorted(root.glob("*/*/lock"))
    if not locks:
        return []
    opened = _open_paths()
    now = time.time() if now is None else now
    stale = []
    for lock in locks:
        try:
            age = now - lock.stat().st_mtime
        except OSError:  # released meanwhile
            continue
        if opened is not None and (str(lock) in opened or str(lock.resolve()) in opened):
            continue  # a build in progress on this machine
        if (shared or opened is None) and age < SHARED_BUILD_GRACE_S:
            continue
        stale.append(lock)
    return stale


def check_build_locks(shared: bool = False) -> None:
    """Raise when a stale build lock would make DeepSpeed wait forever for an extension build."""
    stale = stale_locks(shared=shared)
    if not stale:
        return
    listed = "\n".join(f"  {lock}" for lock in stale)
    raise RuntimeError(
        "DeepSpeed extension builds are locked by a build that was killed before it finished (no process holds "
        f"the lock):\n{listed}\nA run that needs one of these operators would wait for the lock forever. Delete "
        f"the lock file{'s' if len(stale) > 1 else ''} (the next build starts over), e.g. rm "
        + " ".join(str(lock) for lock in stale)
    )

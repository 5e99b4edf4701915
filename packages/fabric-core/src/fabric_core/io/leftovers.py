"""Temporary files of checkpoint saves, named after their owner so that the next save can clean up safely.

A save that is killed leaves its temporary file (or folder) behind. :func:`owned_path` gives such a
temporary a name that says which process made it::

    .model.ckpt.tmp.node-3.41235.9f2c61aa
     ^name      ^kind ^host ^pid  ^random token

and :func:`remove_leftovers`, which every save calls first, removes the entries of owners that are gone:
made on this host by a process that no longer runs (or is a zombie). Entries of other hosts and of live
processes are never touched, so two jobs saving beside each other on a shared file system cannot delete
each other's work in progress.

The host part is the host name (dots replaced by ``-``) followed, on Linux, by the inode of the process's
PID namespace (``~4026531836``): two containers with the same host name but separate process tables then
never take each other's processes for dead.

Older fabric-core versions named their temporary files ``.<name>.<8 random characters>.tmp`` (from
``tempfile.mkstemp``) and staged the kept previous version as ``.<name>.previous.<pid>.tmp``. Those names
do not say which host wrote them, so they are removed only when nothing has written to them for
:data:`LEGACY_LEFTOVER_AGE_S` seconds (a live writer keeps its file's modification time fresh) and, for
the staging link, when its pid is not alive here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path

#: Leftovers in the naming of older versions are removed once unmodified for this long (seconds).
LEGACY_LEFTOVER_AGE_S = 15 * 60

_DOT_FREE = re.compile(r"^[^./\\\s]+$")
_LEGACY_TMP = re.compile(r"^[A-Za-z0-9_]{8}\.tmp$")
_LEGACY_STAGING = re.compile(r"^previous\.(\d+)\.tmp$")


def host_id() -> str:
    """This process's host, as written into owned names: host name (dots as ``-``) and PID namespace."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "localhost"
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return host
    inode = re.sub(r"\D", "", namespace)
    return f"{host}~{inode}" if inode else host


def owned_path(path: str | Path, kind: str) -> Path:
    """A name beside ``path`` for a temporary entry of a save in progress: ``.{name}.{kind}.{host}.{pid}.{token}``.

    ``kind`` says what it is (``"tmp"`` for a file being written, ``"partial"`` for a folder, ...); it must
    not contain dots. Nothing is created.

    Example::

        tmp = owned_path("out/model.ckpt", "tmp")  # out/.model.ckpt.tmp.node-3~4026531836.41235.9f2c61aa
    """
    if not isinstance(kind, str) or not _DOT_FREE.match(kind):
        raise ValueError(f"owned_path(kind={kind!r}): expected a non-empty name without dots, slashes or spaces.")
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}.{host_id()}.{os.getpid()}.{secrets.token_hex(4)}")


def owner_of(entry: str | Path, path: str | Path) -> tuple[str, str, int] | None:
    """``(kind, host, pid)`` when ``entry`` is a name :func:`owned_path` made for ``path``, else ``None``."""
    prefix = f".{Path(path).name}."
    name = Path(entry).name
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split(".")
    if len(parts) != 4 or not parts[2].isdigit() or not all(parts):
        return None
    kind, host, pid, _token = parts
    return kind, host, int(pid)


def pid_is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, which has ended, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    except OSError:  # e.g. Windows without that process
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # no /proc here (macOS) or it ended just now: trust kill()
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")
    # "pid (command) S ...": the state follows the last ")" (the command itself may hold parentheses).
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def remove_leftovers(path: str | Path) -> list[Path]:
    """Remove the temporaries beside ``path`` whose owner is gone; return what was removed.

    Removes entries named by :func:`owned_path` for ``path`` (any kind, files and folders) that were made
    on this host by a process that has ended, and the leftovers of older versions described in the module
    docstring. Never touches an entry of a live process or of another host. Entries that vanish or cannot
    be removed meanwhile are skipped (another save may be cleaning up at the same time).

    Example::

        remove_leftovers("out/model.ckpt")  # [PosixPath('out/.model.ckpt.tmp.node-3~4026531836.41235.9f2c61aa')]
    """
    path = Path(path)
    directory = path.parent
    try:
        names = os.listdir(directory if str(directory) else ".")
    except OSError:  # the directory does not exist (yet), or cannot be listed: nothing to clean
        return []
    here = host_id()
    prefix = f".{path.name}."
    removed = []
    for name in names:
        if not name.startswith(prefix):
            continue
        entry = directory / name
        if _is_dead_leftover(entry, name[len(prefix) :], path, here) and _remove(entry):
            removed.append(entry)
    return removed


def _is_dead_leftover(entry: Path, suffix: str, path: Path, here: str) -> bool:
    owner = owner_of(entry, path)
    if owner is not None:
        _kind, host, pid = owner
        return host == here and pid != os.getpid() and not pid_is_alive(pid)
    staging = _LEGACY_STAGING.match(suffix)
    if staging is not None:
        # A hard link to the old checkpoint, alive for microseconds: removing it is harmless even if wrong.
        return not pid_is_alive(int(staging.group(1)))
    if _LEGACY_TMP.match(suffix):
        try:
            age = time.time() - entry.lstat().st_mtime
        except OSError:
            return False
        return age > LEGACY_LEFTOVER_AGE_S
    return False


def _remove(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True

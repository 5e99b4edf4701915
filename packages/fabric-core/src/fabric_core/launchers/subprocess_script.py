"""Starting the other local ranks by running the user's command line again, one process per rank.

This is how ``strategy="ddp"`` works outside a scheduler: the script that the user ran becomes local
rank 0, and it starts local ranks ``1..N-1`` as copies of itself with ``LOCAL_RANK`` etc. in their
environment. A copy sees ``LOCAL_RANK`` and does not start processes again.

Reliability: a watchdog thread in rank 0 ends the whole run within seconds when a copy dies; the
copies die with rank 0 (``PR_SET_PDEATHSIG`` on Linux, :func:`watch_parent` everywhere); and at the
normal end of rank 0 the copies are waited for with a bound (``FABRIC_CHILD_EXIT_TIMEOUT``).

Exit codes: the run ends with rank 0's own status when rank 0 fails (``sys.exit(3)`` -> 3, an uncaught
exception -> 1, Ctrl-C -> 130), and the copies are ended at once; when rank 0 ends well, the run ends
with the code of the first copy that failed, or 0.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fabric_core.launchers.launcher import Launcher

if TYPE_CHECKING:
    from fabric_core.environments.cluster_environment import ClusterEnvironment

#: Set in each started process to the pid of the process that started it (see :func:`watch_parent`).
PARENT_PID_ENV = "FABRIC_PARENT_PID"
#: Seconds rank 0 waits, once it is done, for the processes it started (default 120).
CHILD_EXIT_TIMEOUT_ENV = "FABRIC_CHILD_EXIT_TIMEOUT"
DEFAULT_CHILD_EXIT_TIMEOUT = 120.0

_POLL_INTERVAL = 0.2
# How long a process gets to end after SIGTERM before it is killed.
_TERMINATE_GRACE = 3.0

# The processes this process started; a second launch would start the whole run a second time.
_children: _ChildProcesses | None = None
# Rank 0's own exit status, once its code has told us (see _record_main_exit): nonzero means its copies
# are ended at once and the run ends with this status. None: not known (still running, or it ended by
# ``raise SystemExit(n)`` or ``exit(n)``, which pass no hook): then the copies are waited for as usual.
_main_exit_code: int | None = None
_parent_watch_started = False


class SubprocessScriptLauncher(Launcher):
    """Start local ranks ``1..num_processes-1`` by running this process's command line again.

    Each copy runs ``sys.executable`` with the same script (or ``-m module``) and arguments, and gets
    ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and
    ``FABRIC_PARENT_PID`` in its environment. This process is local rank 0 and runs ``function``
    itself. Where the cluster environment starts the processes itself (a scheduler, ``torchrun``, or
    a copy started by this launcher), :meth:`launch` only runs ``function``.

    Example (what the DDP strategy does)::

        launcher = SubprocessScriptLauncher(LocalEnvironment(), num_processes=2, num_nodes=1)
        result = launcher.launch(train, model)  # rank 0's result, in rank 0

    Args:
        cluster_environment: Where the processes run and how they reach rank 0.
        num_processes: Processes on this node (one per device).
        num_nodes: Nodes in the run; each node starts its own ``num_processes``.
    """

    def __init__(self, cluster_environment: ClusterEnvironment, num_processes: int, num_nodes: int) -> None:
        self.cluster_environment = cluster_environment
        self.num_processes = _positive_int("num_processes", num_processes)
        self.num_nodes = _positive_int("num_nodes", num_nodes)

    @property
    def is_interactive_compatible(self) -> bool:
        # A notebook has no command line to run again.
        return False

    def launch(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        """Start the other local ranks (unless started externally), then run ``function`` here.

        Raises:
            RuntimeError: This process already started local ranks, or it was not started from a
                script or module that can be run again.
        """
        if self.cluster_environment.creates_processes_externally:
            watch_parent()
        elif self.num_processes > 1:
            self._start_children()
        try:
            return function(*args, **kwargs)
        except BaseException as error:
            _record_main_exit(_exit_status(error))
            raise

    def _start_children(self) -> None:
        global _children
        if _children is not None:
            pids = ", ".join(str(child.process.pid) for child in _children.children)
            raise RuntimeError(
                f"launch() was called a second time in this process, which already started local ranks "
                f"1..{len(_children.children)} (pids {pids}). Call Fabric.launch() once per process."
            )
        command = script_command()
        env = self._child_environment()
        preexec_fn = _preexec_fn()
        started: list[_Child] = []
        try:
            for local_rank in range(1, self.num_processes):
                env["LOCAL_RANK"] = str(local_rank)
                process = subprocess.Popen(command, env=dict(env), preexec_fn=preexec_fn)
                started.append(_Child(local_rank, process))
        except BaseException:
            _terminate([child.process for child in started], _TERMINATE_GRACE)
            raise
        node_rank = int(env["NODE_RANK"])
        _children = _ChildProcesses(started, node_rank=node_rank, num_processes=self.num_processes)
        _children.start_watchdog()
        atexit.register(_children.wait_at_exit)
        _install_exit_hooks()

    def _child_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            MASTER_ADDR=str(self.cluster_environment.main_address),
            MASTER_PORT=str(self.cluster_environment.main_port),
            NODE_RANK=str(self.cluster_environment.node_rank()),
            WORLD_SIZE=str(self.num_processes * self.num_nodes),
            **{PARENT_PID_ENV: str(os.getpid())},
        )
        return env


def interpreter_options() -> list[str]:
    """The command-line options of this interpreter (``-O``, ``-W ...``, ``-X ...``, ``-I``, ...) to pass on.

    A rank started again must run under the same interpreter settings: warnings turned into errors,
    ``-X faulthandler``, ``-O``.
    """
    flags = sys.flags
    options: list[str] = []
    if flags.isolated:
        options.append("-I")
    else:
        if flags.ignore_environment:
            options.append("-E")
        if flags.no_user_site:
            options.append("-s")
        if getattr(flags, "safe_path", False):
            options.append("-P")
    if flags.optimize:
        options.append("-" + "O" * flags.optimize)
    if flags.bytes_warning:
        options.append("-" + "b" * flags.bytes_warning)
    for option in sys.warnoptions:
        options += ["-W", option]
    for name, value in getattr(sys, "_xoptions", {}).items():
        options += ["-X", name if value is True else f"{name}={value}"]
    return options


def script_command() -> list[str]:
    """The command line that runs this process's script (or ``-m`` module) again, with its arguments
    and the interpreter's options.

    Raises:
        RuntimeError: The process was not started from a script file or module (``python -c``, an
            interactive interpreter, a notebook).
    """
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        # Started as ``python -m package``: the module's spec is set and ``sys.argv[0]`` is its file.
        name = spec.name.removesuffix(".__main__")
        return [sys.executable, *interpreter_options(), "-m", name, *sys.argv[1:]]
    script = sys.argv[0] if sys.argv else ""
    if not script or script == "-c" or not os.path.isfile(script):
        raise RuntimeError(
            f"Cannot start the other processes by running this program again: it was not started from a "
            f"script file (sys.argv[0]={script!r}). Run it as 'python your_script.py', or use a launcher "
            "that does not re-run the script: strategy='ddp_spawn' (or 'ddp_notebook' in a notebook)."
        )
    return [sys.executable, *interpreter_options(), os.path.abspath(script), *sys.argv[1:]]


def watch_parent(poll_interval: float = 1.0) -> None:
    """In a process started by :class:`SubprocessScriptLauncher`: end it when the parent process dies.

    Does nothing in any other process (no ``FABRIC_PARENT_PID`` in the environment) and on a second
    call. :meth:`SubprocessScriptLauncher.launch` calls it in the started processes; on Linux the
    kernel also kills them (``PR_SET_PDEATHSIG``), this thread covers the other platforms and the
    processes a started process runs in turn.
    """
    global _parent_watch_started
    raw = os.environ.get(PARENT_PID_ENV, "")
    if _parent_watch_started or not raw.isdigit():
        return
    parent_pid = int(raw)
    # A direct child notices its parent's death by being re-parented, even while the dead parent is
    # a zombie that still answers kill(pid, 0).
    is_direct_child = os.getppid() == parent_pid

    def parent_alive() -> bool:
        if is_direct_child:
            return os.getppid() == parent_pid
        return _pid_alive(parent_pid)

    if not parent_alive():
        _exit_orphan(parent_pid)

    def watch() -> None:
        while parent_alive():
            time.sleep(poll_interval)
        _exit_orphan(parent_pid)

    threading.Thread(target=watch, name="fabric-parent-watch", daemon=True).start()
    _parent_watch_started = True


def _exit_orphan(parent_pid: int) -> None:
    print(
        f"[fabric] The process that started this one (pid {parent_pid}) is gone; ending pid {os.getpid()}.",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)


@dataclass
class _Child:
    local_rank: int
    process: subprocess.Popen


class _ChildProcesses:
    """The processes rank 0 started: a watchdog while it runs, a bounded wait when it ends."""

    def __init__(self, children: list[_Child], node_rank: int, num_processes: int) -> None:
        self.children = children
        self.node_rank = node_rank
        self.num_processes = num_processes
        self._stop = threading.Event()
        # Held by whoever ends the run (watchdog or exit handler), so that only one of them does.
        self._ending = threading.Lock()

    def start_watchdog(self) -> None:
        threading.Thread(target=self._watch, name="fabric-child-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(_POLL_INTERVAL):
            if _main_failed() and not threading.main_thread().is_alive():
                # Rank 0's script has ended with a failure. Its exit (Fabric's teardown destroys the
                # process group) makes the copies fail too, or leaves them blocked in a collective;
                # their code must not replace rank 0's. End them now, even while another atexit
                # handler or a non-daemon thread holds rank 0 up, and let Python exit with rank 0's
                # own status.
                if self._ending.acquire(blocking=False):
                    try:
                        self._end_after_main_failed()
                    finally:
                        self._ending.release()
                return
            failed = self.first_failure()
            if failed is not None and self._ending.acquire(blocking=False):
                # The main thread may be blocked inside a collective that never returns: end the
                # process from here rather than trying to interrupt it.
                self._abort(failed)

    def first_failure(self) -> _Child | None:
        for child in self.children:
            code = child.process.poll()
            if code is not None and code != 0:
                return child
        return None

    def _describe(self, child: _Child) -> str:
        global_rank = self.node_rank * self.num_processes + child.local_rank
        return f"local rank {child.local_rank} (global rank {global_rank}, pid {child.process.pid})"

    def _abort(self, failed: _Child) -> None:
        code = _exit_code(failed.process.returncode)
        alive = [child for child in self.children if child.process.poll() is None]
        others = ", ".join(str(child.local_rank) for child in alive) or "none"
        _report(
            f"{self._describe(failed)} exited with code {failed.process.returncode}. Ending local ranks "
            f"{others} and local rank 0 (this process, pid {os.getpid()}) with exit code {code}."
        )
        _terminate([child.process for child in alive], _TERMINATE_GRACE)
        _flush_and_exit(code)

    def wait_at_exit(self) -> None:
        """At the end of rank 0: wait (bounded) for the others; a failure among them fails the run."""
        self._stop.set()
        with self._ending:
            try:
                self._wait_at_exit()
            except KeyboardInterrupt:
                _terminate([child.process for child in self.children], _TERMINATE_GRACE)
                raise

    def _wait_at_exit(self) -> None:
        if _main_failed():
            self._end_after_main_failed()
            return
        timeout = _exit_timeout()
        deadline = time.monotonic() + timeout
        while True:
            failed = self.first_failure()
            if failed is not None:
                self._abort(failed)
            alive = [child.process for child in self.children if child.process.poll() is None]
            if not alive:
                return
            if time.monotonic() >= deadline:
                _report(
                    f"Local ranks {self._ranks(alive)} were still running {timeout:g} s after local rank 0 "
                    f"finished; ending them. Set {CHILD_EXIT_TIMEOUT_ENV} to wait longer."
                )
                _terminate(alive, _TERMINATE_GRACE)
                _flush_and_exit(1)
            time.sleep(_POLL_INTERVAL)

    def _end_after_main_failed(self) -> None:
        # Returns rather than exiting: the interpreter then ends rank 0 with its own status (the
        # SystemExit code, 1 after a traceback, SIGINT after Ctrl-C), after the other atexit handlers.
        alive = [child.process for child in self.children if child.process.poll() is None]
        if alive:
            _report(f"Local rank 0 exited with code {_main_exit_code}; ending local ranks {self._ranks(alive)}.")
            _terminate(alive, _TERMINATE_GRACE)

    def _ranks(self, processes: list[subprocess.Popen]) -> str:
        return ", ".join(str(child.local_rank) for child in self.children if child.process in processes)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"SubprocessScriptLauncher({name}={value!r}): expected an int >= 1.")
    return value


def _exit_timeout() -> float:
    raw = os.environ.get(CHILD_EXIT_TIMEOUT_ENV, "")
    if not raw.strip():
        return DEFAULT_CHILD_EXIT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        _report(
            f"{CHILD_EXIT_TIMEOUT_ENV}={raw!r} is not a number of seconds >= 0; "
            f"using the default {DEFAULT_CHILD_EXIT_TIMEOUT:g} s."
        )
        return DEFAULT_CHILD_EXIT_TIMEOUT
    return value


def _exit_code(returncode: int) -> int:
    # A process killed by signal N reports -N; shells report that as 128 + N.
    return 128 - returncode if returncode < 0 else returncode


def _terminate(processes: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM, then SIGKILL for the processes still alive after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _report(f"Process {process.pid} did not end after SIGKILL.")


def _report(message: str) -> None:
    print(f"[fabric] {message}", file=sys.stderr, flush=True)


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _exit_status(error: BaseException) -> int:
    """The exit status the interpreter gives a process that ``error`` ends."""
    if isinstance(error, SystemExit):
        if error.code is None:
            return 0
        # Any other object is printed and the process exits with 1 (``sys.exit("message")``).
        return int(error.code) if isinstance(error.code, int) else 1
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT  # the interpreter ends itself with SIGINT, which shells report as 130
    return 1


def _record_main_exit(code: int) -> None:
    global _main_exit_code
    if code and _children is not None and _children.first_failure() is not None:
        # A copy failed before rank 0 did: rank 0 most likely failed because of it (a collective that
        # lost its peer), so the run keeps the copy's code, as the watchdog reports it.
        return
    _main_exit_code = code


def _main_failed() -> bool:
    return bool(_main_exit_code)


def _install_exit_hooks() -> None:
    """Learn how rank 0's script ends, for the watchdog and the exit handler.

    ``fabric.launch()`` without a function returns before training starts, so the rest of the script
    never passes through launch(): an uncaught exception reaches ``sys.excepthook``, and the exit code
    of ``sys.exit(n)`` is seen nowhere else (the interpreter calls no hook for SystemExit, and atexit
    handlers do not get the code). A SystemExit that the script catches and does not re-raise is still
    recorded; ``raise SystemExit(n)`` and ``exit(n)`` are not seen.
    """
    previous_excepthook = sys.excepthook
    previous_exit = sys.exit

    def excepthook(*exc_info: Any) -> None:
        _record_main_exit(_exit_status(exc_info[1]))
        previous_excepthook(*exc_info)

    def exit_hook(*status: Any) -> None:
        # sys.exit() in another thread ends only that thread.
        if threading.current_thread() is threading.main_thread():
            _record_main_exit(_exit_status(SystemExit(*status)))
        previous_exit(*status)

    sys.excepthook = excepthook
    sys.exit = exit_hook


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The state follows the parenthesised command name; a zombie has ended.
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _preexec_fn() -> Callable[[], None] | None:
    """On Linux, have the kernel kill a started process when the thread that starts it ends."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        # PDEATHSIG fires when the starting *thread* ends: from another thread that could kill the
        # copies while rank 0 still runs, so rely on watch_parent() there.
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the line above took effect
            os._exit(1)

    return set_death_signal

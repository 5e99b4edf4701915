"""Running a function in new processes started by ``torch.multiprocessing`` (spawn, fork or forkserver).

This is the launcher of ``strategy="ddp_spawn"`` (spawn) and ``"ddp_fork"``/``"ddp_notebook"`` (fork).
Unlike :class:`~fabric_core.launchers.subprocess_script.SubprocessScriptLauncher`, the calling process
only waits: every rank, rank 0 included, runs in a new process, and rank 0's result is sent back.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import queue
import sys
from collections.abc import Callable
from typing import Any

import torch

from fabric_core.launchers.launcher import Launcher

_START_METHODS = ("spawn", "fork", "forkserver")
# How often the parent looks at the workers (and at the result queue) while it waits.
_JOIN_POLL_INTERVAL = 0.5
# After a worker fails, the others get this long to end on their own, then again after SIGTERM.
_GRACE_PERIOD = 2.0
# How long the parent waits for rank 0's result once every worker has exited cleanly.
_RESULT_TIMEOUT = 10.0
_NO_RESULT = object()


class MultiProcessingLauncher(Launcher):
    """Start ``strategy.num_processes`` processes with ``torch.multiprocessing`` and run a function in each.

    Each worker tells the strategy its local rank (``strategy.set_local_rank(i)``), runs the function
    and, in local rank 0, sends the result back (tensors moved to the CPU). The calling process waits;
    when a worker fails, the others are ended and a ``RuntimeError`` names the failed rank.

    With spawn and forkserver, in a run on the CPU, each worker gives the modules among the arguments
    (also inside lists, tuples, dicts and dataclasses) their own copy of their parameters and
    buffers, so that one rank's in-place update never shows in another rank's model.

    Example::

        launcher = MultiProcessingLauncher(strategy, start_method="spawn")
        result = launcher.launch(train, model)  # runs train(model) in every worker, returns rank 0's result

    Args:
        strategy: Provides ``cluster_environment``, ``num_processes``, ``num_nodes`` and ``set_local_rank``.
        start_method: ``"spawn"`` (fresh interpreters: the function and its arguments must be picklable),
            ``"fork"`` (copies of this process; works in notebooks, not after CUDA is initialised; each
            worker runs torch on one intra-op thread, as more would hang after the parent used OpenMP)
            or ``"forkserver"``.
    """

    def __init__(self, strategy: Any, start_method: str = "spawn") -> None:
        if start_method not in _START_METHODS:
            raise ValueError(
                f"MultiProcessingLauncher(start_method={start_method!r}): expected one of "
                f"{', '.join(repr(m) for m in _START_METHODS)}.{_unavailable_note()}"
            )
        available = [m for m in multiprocessing.get_all_start_methods() if m in _START_METHODS]
        if start_method not in available:
            raise ValueError(
                f"MultiProcessingLauncher(start_method={start_method!r}): this start method is not available "
                f"on this platform ({sys.platform}).{_unavailable_note()} Use one of "
                f"{', '.join(repr(m) for m in available)}."
            )
        self._strategy = strategy
        self._start_method = start_method

    @property
    def start_method(self) -> str:
        return self._start_method

    @property
    def is_interactive_compatible(self) -> bool:
        # Only fork needs nothing importable from __main__, which a notebook does not have.
        return self._start_method == "fork"

    def launch(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in every worker; return local rank 0's result.

        Raises:
            TypeError: ``function`` cannot be pickled, which spawn and forkserver need.
            RuntimeError: A worker raised or exited non-zero (the message names its rank).
        """
        if self._start_method in ("spawn", "forkserver"):
            _check_picklable(function, self._start_method)
        import torch.multiprocessing as mp

        # Workers read MASTER_PORT from their environment: it must be fixed before they start, and the
        # same in all of them.
        os.environ["MASTER_PORT"] = str(self._strategy.cluster_environment.main_port)
        results = mp.get_context(self._start_method).Queue()
        context = mp.start_processes(
            _worker,
            args=(self._start_method, self._strategy, function, args, kwargs, results),
            nprocs=self._strategy.num_processes,
            join=False,
            start_method=self._start_method,
        )
        try:
            return self._wait(context, results)
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                    process.join(_GRACE_PERIOD)
            results.close()

    def _wait(self, context: Any, results: Any) -> Any:
        from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

        payload = _NO_RESULT
        while True:
            # Read the result while waiting: a worker cannot exit before its queued data is read.
            if payload is _NO_RESULT:
                payload = _poll(results, timeout=0)
            try:
                if context.join(timeout=_JOIN_POLL_INTERVAL, grace_period=_GRACE_PERIOD):
                    break
            except ProcessRaisedException as err:
                raise RuntimeError(
                    f"{self._worker_name(err.error_index, err.error_pid)} raised an exception; the other "
                    f"workers were ended.{err.msg}"
                ) from None
            except ProcessExitedException as err:
                how = f"signal {err.signal_name}" if err.signal_name else f"exit code {err.exit_code}"
                hint = ""
                if self._start_method != "fork":
                    hint = (
                        " Its output above says why; a worker that fails before running the function often "
                        'means the script starts its work outside `if __name__ == "__main__":`, which '
                        f"start_method={self._start_method!r} runs again in every worker."
                    )
                raise RuntimeError(
                    f"{self._worker_name(err.error_index, err.error_pid)} terminated with {how}; the other "
                    f"workers were ended.{hint}"
                ) from None
        if payload is _NO_RESULT:
            payload = _poll(results, timeout=_RESULT_TIMEOUT)
        # No payload: rank 0 left through sys.exit(0) before returning.
        return None if payload is _NO_RESULT else pickle.loads(payload)

    def _worker_name(self, local_rank: int, pid: int) -> str:
        node_rank = self._strategy.cluster_environment.node_rank()
        global_rank = node_rank * self._strategy.num_processes + local_rank
        return f"Worker rank {global_rank} (local rank {local_rank}, pid {pid})"


def _worker(
    process_idx: int,
    start_method: str,
    strategy: Any,
    function: Callable,
    args: tuple,
    kwargs: dict,
    results: Any,
) -> None:
    if start_method == "fork":
        # GNU OpenMP's thread pool does not survive fork: a forked worker whose parent already ran a
        # parallel torch op hangs forever in its first one, unless it uses a single thread.
        torch.set_num_threads(1)
    strategy.set_local_rank(process_idx)
    if start_method != "fork" and _runs_on_cpu(strategy):
        args, kwargs = _unshare_modules((args, kwargs))
    result = function(*args, **kwargs)
    if process_idx == 0:
        from fabric_core.utilities.apply_func import move_data_to_device

        # Pickled here to bytes with the tensor data inline: torch's queue pickling would share tensors
        # through this process's file descriptors, which are gone once it exits.
        results.put(pickle.dumps(move_data_to_device(result, "cpu"), protocol=pickle.HIGHEST_PROTOCOL))


def _runs_on_cpu(strategy: Any) -> bool:
    try:
        device = strategy.root_device
    except (AttributeError, RuntimeError):  # a strategy that does not say: assume the CPU
        return True
    return torch.device(device).type == "cpu"


def _unshare_modules(data: Any) -> Any:
    """Give each module in ``data`` private copies of the CPU tensors it holds in shared memory.

    torch.multiprocessing sends every tensor of the arguments to a spawned worker through shared
    memory, so without this all ranks would train one set of weights (two ranks each adding 1.0 would
    read 2.0). Only the CPU needs it: setting a module up on an accelerator copies it to the device.
    The parameters stay the same objects (only their ``.data`` changes), so optimizers built on them
    in the parent still point at them.
    """
    from fabric_core.utilities.apply_func import apply_to_collection

    def unshare(module: torch.nn.Module) -> torch.nn.Module:
        with torch.no_grad():
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                if tensor.device.type == "cpu" and tensor.is_shared():
                    tensor.data = tensor.data.clone()
        return module

    return apply_to_collection(data, torch.nn.Module, unshare)


def _poll(results: Any, timeout: float) -> Any:
    try:
        return results.get(timeout=timeout) if timeout > 0 else results.get_nowait()
    except queue.Empty:
        return _NO_RESULT


def _unavailable_note() -> str:
    available = multiprocessing.get_all_start_methods()
    missing = [m for m in _START_METHODS if m not in available]
    return f" Not available on this platform ({sys.platform}): {', '.join(missing)}." if missing else ""


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def _check_picklable(function: Callable, start_method: str) -> None:
    class TensorSkippingPickler(pickle.Pickler):
        # Tensors reach the workers through shared memory anyway; skipping their data keeps the
        # check cheap when ``function`` holds a large model.
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, (torch.Tensor, torch.UntypedStorage, torch.TypedStorage)):
                return id(obj)
            return None

    try:
        TensorSkippingPickler(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(function)
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        raise TypeError(
            f"The function {function!r} cannot be sent to processes started with start_method="
            f"{start_method!r}, which pickles it: {err}. Define it at the top level of a module (not as a "
            "lambda or inside another function), or use strategy='ddp_fork' (processes forked, nothing "
            "pickled) or strategy='ddp' (the script is run again)."
        ) from err

"""What every rank was doing when a collective failed, gathered out of band through the rendezvous store.

When a fabric collective times out (or its backend fails), the failing rank opens an *incident* in the
process group's TCPStore, posts what it was doing (its :class:`~fabric_core.utilities.call_records.CallRecord`)
and collects the other ranks' answers for a few seconds. Every rank answers through a small daemon
thread, the *watcher*: it polls the store once a second on its own connection (never the process
group's, so a store call cannot queue behind the group's own use of it) and answers with the
collective its process is in, or, outside a collective, the user's line its main thread is running.
A rank whose own collective times out later finds its answer already given for the same call and reads
the same incident, so every rank's error lists every rank::

    rank 0: all_reduce(tensor float32[4], reduce_op='mean') at train.py:42 (in main)
    rank 1: barrier('epoch end') at train.py:57 (in main)

The watcher costs the training loop nothing: it sleeps with the GIL released, wakes once a second for
one store round trip, and stops at teardown and at interpreter exit (it never enters the store after
the exit handler ran, so it cannot be caught inside C++ code when the interpreter finalises).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from fabric_core.utilities import call_records

#: Seconds between two looks of the watcher for a request.
POLL_INTERVAL = 1.0
#: Seconds a failing rank waits for the others' answers after a timeout (ends early once all answered).
TIMEOUT_WINDOW = 5.0
#: The same after a backend failure, where a rank has probably exited and will never answer.
FAILURE_WINDOW = 2.0
#: Bound on each store call (a store that does not answer must not turn an error into a hang).
STORE_TIMEOUT = timedelta(seconds=5)

NO_REPORT = (
    "no report (not in a fabric collective and not answering: the process may have exited, be stuck in "
    "native code holding the Python GIL, or not be running fabric)"
)


class Reporter:
    """One process's connection to the rendezvous store: answers incidents and opens them.

    Created by the strategy once its process group exists (:func:`start`); ``store`` is any
    ``torch.distributed.Store`` of its own (a second client of the group's TCPStore).
    """

    def __init__(self, store: Any, rank: int, world_size: int, prefix: str) -> None:
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.prefix = prefix
        self.pid = os.getpid()
        self._lock = threading.Lock()  # held around every store call; see stop()
        self._stopped = False
        self._next_incident = 1
        self._answered: dict[int, int | None] = {}  # incident -> seq of the collective this rank was in
        self._thread = threading.Thread(target=self._watch, name="fabric-collective-watcher", daemon=True)
        self._thread.start()

    def _key(self, incident: int, name: str) -> str:
        return f"{self.prefix}/{incident}/{name}"

    # -- answering ---------------------------------------------------------------------------------

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_INTERVAL)
            with self._lock:
                if self._stopped:
                    return
                try:
                    while self.store.check([self._key(self._next_incident, "request")]):
                        incident = self._next_incident
                        self._next_incident += 1
                        if incident not in self._answered:
                            self._answer(incident, call_records.active())
                except Exception:  # the store is gone (its host exited): there is nobody left to answer
                    self._stopped = True
                    return

    def _answer(self, incident: int, record: call_records.CallRecord | None) -> None:
        self._answered[incident] = record.seq if record is not None else None
        if record is not None:
            what, waited = record.describe(), f", waiting for {time.monotonic() - record.started:.1f} s"
        else:
            site = call_records.where_is(threading.main_thread().ident or 0)
            what = f"not in a fabric collective: running {site}" if site else "its main thread has ended"
            waited = ""
        answer = {"what": what, "detail": f"pid {self.pid} on {socket.gethostname()}{waited}"}
        self.store.set(self._key(incident, f"rank{self.rank}"), json.dumps(answer))
        self.store.add(self._key(incident, "answers"), 1)

    # -- opening an incident -----------------------------------------------------------------------

    def gather(self, record: call_records.CallRecord, window: float) -> dict[int, tuple[str, str]]:
        """Every rank's answer for the incident of ``record`` (this rank's failed collective), by rank."""
        with self._lock:
            if self._stopped:
                return {}
            # Another rank may have asked while this rank sat in the same call: that is the same incident.
            incident = next((i for i, seq in self._answered.items() if seq == record.seq), None)
            if incident is None:
                incident = self._next_incident
                self._next_incident += 1
                self.store.add(self._key(incident, "request"), 1)
                self._answer(incident, record)
        deadline = time.monotonic() + window
        while True:
            with self._lock:
                complete = self.store.add(self._key(incident, "answers"), 0) >= self.world_size
            if complete or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        answers: dict[int, tuple[str, str]] = {}
        with self._lock:
            for rank in range(self.world_size):
                key = self._key(incident, f"rank{rank}")
                if self.store.check([key]):
                    answer = json.loads(self.store.get(key))
                    answers[rank] = (answer["what"], answer["detail"])
        return answers

    def leave_together(self, key: str, timeout: float) -> bool:
        """Count this rank in at ``key`` and wait until every rank has (at most ``timeout`` s); whether all did."""
        deadline = time.monotonic() + timeout
        try:
            with self._lock:
                if self._stopped:
                    return False
                arrived = self.store.add(key, 1)
            while arrived < self.world_size and time.monotonic() < deadline:
                time.sleep(0.005)
                with self._lock:
                    if self._stopped:
                        return False
                    arrived = self.store.add(key, 0)
        except Exception:  # the store went away (a rank ended the run): nothing to wait for
            return False
        return arrived >= self.world_size

    def stop(self) -> None:
        """Stop answering; no store call starts after this returns (safe at interpreter exit)."""
        with self._lock:
            self._stopped = True
            self.store = None


_reporter: Reporter | None = None
#: Process groups this process started reports for: every rank counts alike, so keys of one group match.
_groups = 0


def start(host: str, port: int, rank: int, world_size: int) -> None:
    """Connect to the store at ``host:port`` and start answering incidents; a failure only disables reports."""
    global _reporter, _groups
    stop()
    _groups += 1
    import torch.distributed as dist

    # A store kept by torchelastic's agent survives restarts of the workers: keep each attempt apart.
    attempt = f"{os.environ.get('TORCHELASTIC_RUN_ID', '')}.{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    try:
        store = dist.TCPStore(host, port, is_master=False, timeout=STORE_TIMEOUT, wait_for_workers=False)
    except Exception:  # reports are a diagnostic: a run must not fail because they cannot be given
        return
    _reporter = Reporter(store, rank, world_size, prefix=f"fabric_core/collective_report/{attempt}")


def leave_together(timeout: float) -> bool:
    """Wait until every rank of the group reached the end of its run (at most ``timeout`` s), out of band.

    Ranks that destroy a gloo process group while a peer is still using its connections can die with
    SIGABRT at exit ("terminate called without an active exception", about 1 run in 25 here); leaving
    together closes that window. Without a store connection it returns ``False`` at once.
    """
    reporter = _reporter
    if reporter is None:
        return False
    return reporter.leave_together(f"{reporter.prefix}/group{_groups}/left", timeout)


def stop() -> None:
    global _reporter
    if _reporter is not None:
        _reporter.stop()
        _reporter = None


def _forget_in_child() -> None:
    # A forked child (a dataloader worker) has no watcher thread and must not use the parent's store.
    global _reporter
    _reporter = None


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(stop)


def report(record: call_records.CallRecord, rank: int, world_size: int, window: float) -> list[str]:
    """Lines naming what every rank was doing, for the error of ``record``; only this rank without a store."""
    answers: dict[int, tuple[str, str]] = {}
    reporter = _reporter
    problem = "no fabric process group store in this process"
    if reporter is not None and reporter.pid == os.getpid():
        try:
            answers = reporter.gather(record, window)
        except Exception as err:  # the store went away while gathering: report what there is
            problem = f"the rendezvous store did not answer: {err}"
    if not answers:
        return [*call_records.group_ranks({rank: (record.describe(), "")}), f"  (other ranks not asked: {problem})"]
    for other in range(world_size):
        answers.setdefault(other, (NO_REPORT, ""))
    return call_records.group_ranks(answers)

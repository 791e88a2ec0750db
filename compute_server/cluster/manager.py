"""The job manager of a clustered front: the embedded one, with one thread per worker.

Why a subclass and not a new manager: records, persistence, events, cancel, retention
and restart recovery are exactly the embedded server's; only "one job at a time" changes.
Each thread takes the next queued job and runs it (through the cluster runner, which
waits for a free worker), so as many jobs run at once as the cluster has workers. The
next job is chosen fairly between the clients that submitted them (``_fair_first``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from compute_server.jobs.manager import RETRY_UNSAVED_EVERY_S, SHUTDOWN_RUNNING, JobManager, _Entry
from shared.protocol import ErrorCode, ErrorInfo
from shared.records import JobState

log = logging.getLogger(__name__)


class ClusterJobManager(JobManager):
    """See the module docstring. ``concurrency``: how many jobs may run at once (set by
    setup.py to the number of cluster workers before ``start``)."""

    def __init__(self, *args, concurrency: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self.cluster_problem = lambda: None   # a sentence when the cluster cannot run jobs
        self.cluster_kinds: dict = {}         # job kind name -> the same kind, run on the cluster
        self._active: set[_Entry] = set()
        self._clients: dict[str, bytes | None] = {}  # job id -> who submitted it, while unfinished
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(max(1, self.concurrency)):
            thread = threading.Thread(target=self._work, name=f"headsplat-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._worker = self._threads[0]

    @property
    def worker_alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def health(self) -> dict:
        health = super().health()
        problem = self.cluster_problem()
        if problem:
            health["cluster_problem"] = problem
        return health

    def submit(self, kind, job_input, params_summary: dict, client: bytes | None = None):
        """Queue the job with its cluster ``run`` (the registry keeps the embedded one)."""
        info = super().submit(self.cluster_kinds.get(kind.name, kind), job_input, params_summary)
        with self._cond:
            if info.job in self._entries and not self._entries[info.job].record.state.finished:
                self._clients[info.job] = client
        return info

    def note_worker(self, job_id: str, worker: str) -> bool:
        """Job ``job_id`` runs (partly) on ``worker``: job status names it. -> whether it
        is the job's first worker."""
        with self._cond:
            entry = self._entries.get(job_id)
            if entry is None:
                return False
            names = [n for n in (entry.record.worker or "").split(", ") if n]
            if worker not in names:
                entry.record.worker = ", ".join(names + [worker])
                entry.record.revision += 1
            return not names

    # ---------------------------------------------------------------- several running jobs

    def _next(self):
        with self._cond:  # a reentrant lock: the base class takes it again
            while not self._queue and not self._stopping:
                self._cond.wait(RETRY_UNSAVED_EVERY_S if self.keeper.unsaved else None)
                if self.keeper.unsaved and not self._queue:
                    self.keeper.flush()
            self._fair_first()
            entry = super()._next()
            if entry is not None:
                self._active.add(entry)
                if self._running is entry:
                    self._running = None
        return entry

    def _fair_first(self) -> None:
        """Fair between clients: the next job is the oldest one of the client that has the
        fewest jobs running now (a seat that queued ten jobs does not hold every worker
        while another seat's single job waits). The caller holds the lock."""
        if len(self._queue) < 2:
            return
        running = Counter(self._clients.get(e.record.job) for e in self._active)
        best = min(range(len(self._queue)), key=lambda i: (running[self._clients.get(self._queue[i])], i))
        if best:
            job = self._queue[best]
            del self._queue[best]
            self._queue.appendleft(job)

    def _finish(self, entry, state, error, message=None, result=None) -> None:
        self._active.discard(entry)
        self._clients.pop(entry.record.job, None)
        super()._finish(entry, state, error, message, result)

    def _fail_stuck(self, entry, exc) -> None:
        super()._fail_stuck(entry, exc)
        with self._cond:
            self._active.discard(entry)

    def avatars_in_use(self) -> set[str]:
        with self._cond:
            entries = [self._entries[j] for j in self._queue] + list(self._active)
            return set().union(*(e.avatars for e in entries))

    def counts(self) -> dict:
        with self._cond:
            running = sorted(e.record.job for e in self._active)
            return {"queued": len(self._queue), "running": running[0] if running else None,
                    "running_jobs": running}

    def shutdown(self, grace_s: float = 5.0) -> None:
        """As the embedded manager's: queued jobs fail as interrupted, running ones are
        cancelled, and those that do not stop within ``grace_s`` are recorded as
        interrupted."""
        with self._cond:
            for entry in self._active:
                entry.cancel_event.set()
        self._worker = None  # the base class joins one thread; this one joins them all below
        super().shutdown(0.0)
        for thread in self._threads:
            thread.join(grace_s)
        with self._cond:
            for entry in list(self._active):
                log.warning("job did not stop within %.1f s; recording it as interrupted", grace_s,
                            extra={"job": entry.record.job})
                self._abandoned.add(entry.record.job)
                self._finish(entry, JobState.FAILED, ErrorInfo(ErrorCode.INTERRUPTED.value, SHUTDOWN_RUNNING))
        self.keeper.flush()

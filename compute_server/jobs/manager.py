"""The job manager: a FIFO queue, one worker thread, cancellation, persistence, events.

One worker because the jobs share one GPU: running two optimizations at once only makes
both slower and risks running out of memory. The network thread calls ``submit``,
``cancel``, ``info``...; the worker thread runs jobs. Every state change is saved to
DATA/jobs/ and announced through ``emit(job_id, event_name, params)`` (the server routes
events to the client that watches the job).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from compute_server.errors import JobCancelled, UserError
from shared.protocol import EVENT_CANCELLED, EVENT_DONE, EVENT_FAILED, EVENT_PROGRESS, ErrorCode, ErrorInfo
from shared.records import JobInfo, JobState

from .context import JobContext, JobKind
from .persistence import JobRecordStore
from .records import JobRecord, check_job_id, new_job_id, summarize
from .retention import RetentionPolicy, jobs_to_forget

log = logging.getLogger(__name__)

PERSIST_PROGRESS_EVERY_S = 2.0
INTERRUPTED_RUNNING = "the server restarted while this job was running; submit it again"
INTERRUPTED_QUEUED = "the server restarted before this job started; submit it again"
SHUTDOWN_RUNNING = "the server shut down while this job was running; submit it again"
SHUTDOWN_QUEUED = "the server shut down before this job started; submit it again"

EmitFn = Callable[[str, str, dict], None]
# An error classifier turns an exception raised by a job into an ErrorInfo (or None to
# pass); e.g. a later issue maps torch.cuda.OutOfMemoryError to a helpful message.
ErrorClassifier = Callable[[BaseException], "ErrorInfo | None"]


class _Entry:
    """A job the manager knows about in this run: its record plus runtime state."""

    def __init__(self, record: JobRecord, kind: JobKind | None = None, job_input=None, avatars=()):
        self.record = record
        self.kind = kind
        self.job_input = job_input
        self.avatars = frozenset(avatars)
        self.cancel_event = threading.Event()
        self.last_saved_at = 0.0


class JobManager:
    """See the module docstring. ``device`` and ``store`` are passed to every JobContext."""

    def __init__(self, records: JobRecordStore, *, store, device, max_queued: int, emit: EmitFn,
                 retention: RetentionPolicy | None = None):
        self.records = records
        self.retention = retention or RetentionPolicy()
        self.store = store
        self.device = device
        self.max_queued = max_queued
        self.emit = emit
        self.error_classifiers: list[ErrorClassifier] = []
        self._cond = threading.Condition(threading.RLock())
        self._entries: dict[str, _Entry] = {}
        self._queue: deque[str] = deque()
        self._running: _Entry | None = None
        self._stopping = False
        self._abandoned: set[str] = set()
        self._worker: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def recover(self) -> list[str]:
        """Load records from disk; jobs left queued/running by a previous run become
        failed (code ``interrupted``). -> ids of those jobs."""
        interrupted = []
        for record in self.records.load_all():
            if not record.state.finished:
                was_running = record.state == JobState.RUNNING
                message = INTERRUPTED_RUNNING if was_running else INTERRUPTED_QUEUED
                record.finish(JobState.FAILED, ErrorInfo(ErrorCode.INTERRUPTED.value, message), message)
                self.records.save(record.to_json())
                interrupted.append(record.job)
            self._entries[record.job] = _Entry(record)
        if interrupted:
            log.warning("marked %d job(s) interrupted by the previous shutdown", len(interrupted))
        self.forget_old_jobs()
        return interrupted

    def forget_old_jobs(self, now: float | None = None) -> list[str]:
        """Apply the retention policy (see retention.py): forget finished jobs beyond it,
        records and results. -> their ids."""
        with self._cond:
            ids = jobs_to_forget((e.record for e in self._entries.values()), time.time() if now is None else now,
                                 self.retention)
            for job_id in ids:
                del self._entries[job_id]
        for job_id in ids:
            self.records.forget(job_id)
        if ids:
            log.info("forgot %d finished job(s) under the retention policy (%d jobs, %g days)", len(ids),
                     self.retention.keep_jobs, self.retention.keep_days)
        return ids

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="headsplat-worker", daemon=True)
        self._worker.start()

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop: queued jobs fail as interrupted, the running job is cancelled; if it
        does not stop within ``grace_s`` it is recorded as interrupted and abandoned."""
        with self._cond:
            self._stopping = True
            while self._queue:
                entry = self._entries[self._queue.popleft()]
                self._finish(entry, JobState.FAILED, ErrorInfo(ErrorCode.INTERRUPTED.value, SHUTDOWN_QUEUED))
            running = self._running
            if running is not None:
                running.cancel_event.set()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(grace_s)
        with self._cond:
            if self._running is not None:
                entry = self._running
                log.warning("job did not stop within %.1f s; recording it as interrupted", grace_s,
                            extra={"job": entry.record.job})
                self._abandoned.add(entry.record.job)
                self._finish(entry, JobState.FAILED, ErrorInfo(ErrorCode.INTERRUPTED.value, SHUTDOWN_RUNNING))

    # ---------------------------------------------------------------- network-thread API

    def submit(self, kind: JobKind, job_input, params_summary: dict) -> JobInfo:
        """Queue a job; raises UserError busy when the queue is full."""
        avatars = tuple(kind.avatars_used(job_input)) if kind.avatars_used else ()
        with self._cond:
            if self._stopping:
                raise UserError("unavailable", "the server is shutting down; submit the job again once it is back")
            if len(self._queue) >= self.max_queued:
                raise UserError("busy", f"the server already has {len(self._queue)} jobs waiting (the limit is "
                                        f"{self.max_queued}); wait for some to finish or cancel them")
            record = JobRecord(job=new_job_id(), kind=kind.name, state=JobState.QUEUED, created_at=time.time(),
                               params=params_summary, message="waiting for the worker")
            entry = _Entry(record, kind, job_input, avatars)
            self._entries[record.job] = entry
            self._queue.append(record.job)
            snapshot = record.to_json()
            info = self._info(entry)
            self._cond.notify_all()
        self.records.save(snapshot)
        log.info("job queued", extra={"job": record.job, "method": kind.name})
        return info

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job: a queued one at once, a running one at its next check (the
        returned info then has cancel_requested). Finished jobs are left as they are."""
        with self._cond:
            entry = self._entry(job_id)
            if entry.record.state == JobState.QUEUED:
                self._queue.remove(job_id)
                self._finish(entry, JobState.CANCELLED, None, "cancelled before it started")
            elif entry.record.state == JobState.RUNNING and not entry.cancel_event.is_set():
                entry.cancel_event.set()
                log.info("cancel requested", extra={"job": job_id})
            return self._info(entry)

    def info(self, job_id: str) -> JobInfo:
        with self._cond:
            return self._info(self._entry(job_id))

    def list(self, states: set[JobState] | None = None, limit: int = 100) -> list[JobInfo]:
        """Jobs newest first, optionally filtered by state."""
        with self._cond:
            entries = sorted(self._entries.values(), key=lambda e: e.record.created_at, reverse=True)
            return [self._info(e) for e in entries if states is None or e.record.state in states][:limit]

    def output_dir(self, job_id: str):
        """The folder where job ``job_id`` keeps its files (not_found for unknown jobs)."""
        with self._cond:
            self._entry(job_id)
        return self.records.output_dir(job_id)

    def result(self, job_id: str) -> dict:
        """The full result of a done job, read from disk; raises UserError otherwise
        (not_ready while pending, the job's own error when it failed, cancelled)."""
        with self._cond:
            record = self._entry(job_id).record
            state, error = record.state, record.error
        if state == JobState.DONE:
            try:
                return self.records.load_result(job_id)
            except FileNotFoundError:  # forgotten by the retention policy while this request waited
                raise UserError("not_found", f"job {job_id} is no longer kept on this server (see headsplat serve "
                                             "--keep-jobs / --keep-job-days)") from None
        if state == JobState.CANCELLED:
            raise UserError("cancelled", f"job {job_id} was cancelled; it has no result")
        if state == JobState.FAILED:
            error = error or ErrorInfo(ErrorCode.INTERNAL.value, f"job {job_id} failed")
            raise UserError(error.code, error.message, **error.details)
        raise UserError("not_ready", f"job {job_id} is {state.value}; its result is ready once it is done "
                                     "(watch its events or poll job.status)")

    def avatars_in_use(self) -> set[str]:
        with self._cond:
            entries = [self._entries[j] for j in self._queue] + ([self._running] if self._running else [])
            return set().union(*(e.avatars for e in entries))

    def counts(self) -> dict:
        with self._cond:
            return {"queued": len(self._queue), "running": self._running.record.job if self._running else None}

    def _entry(self, job_id) -> _Entry:
        entry = self._entries.get(check_job_id(job_id))
        if entry is None:
            raise UserError("not_found", f"there is no job {job_id} on this server (see job.list)")
        return entry

    def _info(self, entry: _Entry) -> JobInfo:
        position = None
        if entry.record.state == JobState.QUEUED:
            position = self._queue.index(entry.record.job)
        return entry.record.to_info(position=position, cancel_requested=entry.cancel_event.is_set())

    # ---------------------------------------------------------------- state changes

    def _finish(self, entry: _Entry, state: JobState, error: ErrorInfo | None, message: str | None = None,
                result: dict | None = None) -> None:
        """Record a final state and announce it (caller holds the lock)."""
        record = entry.record
        record.finish(state, error, message if message is not None else (error.message if error else None))
        if self._running is entry:
            self._running = None
        entry.job_input = None  # let big inputs be freed
        self.records.save(record.to_json())
        if state == JobState.DONE:
            self.emit(record.job, EVENT_DONE, {"job": record.job, "result": result or {}})
        elif state == JobState.CANCELLED:
            self.emit(record.job, EVENT_CANCELLED, {"job": record.job})
        else:
            self.emit(record.job, EVENT_FAILED, {"job": record.job, "error": error.to_wire()})
        log.info("job %s", state.value, extra={"job": record.job, "method": record.kind,
                                               "code": error.code if error else None})

    def _report(self, entry: _Entry, *, stage, fraction, message, eta_s, preview, extra, send) -> None:
        """JobContext's progress sink (worker thread)."""
        with self._cond:
            if entry.record.job in self._abandoned:
                return
            record = entry.record
            if stage is not None:
                record.stage, record.fraction, record.message, record.eta_s = stage, fraction, message, eta_s
                record.revision += 1
            now = time.monotonic()
            snapshot = None
            if stage is not None and now - entry.last_saved_at >= PERSIST_PROGRESS_EVERY_S:
                entry.last_saved_at = now
                snapshot = record.to_json()
            params = {"job": record.job, "stage": record.stage, "fraction": record.fraction,
                      "message": record.message}
        if snapshot is not None:
            self.records.save(snapshot)
        if not send:
            return
        if eta_s is not None:
            params["eta_s"] = float(eta_s)
        if preview is not None:
            params["preview"] = preview
        params.update(extra)
        self.emit(record.job, EVENT_PROGRESS, params)

    # ---------------------------------------------------------------- worker thread

    def _next(self) -> _Entry | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            entry = self._entries[self._queue.popleft()]
            entry.record.state = JobState.RUNNING
            entry.record.started_at = time.time()
            entry.record.stage, entry.record.message = "starting", "started"
            entry.record.revision += 1
            entry.last_saved_at = time.monotonic()
            self._running = entry
            snapshot = entry.record.to_json()
        self.records.save(snapshot)
        self.emit(entry.record.job, EVENT_PROGRESS, {"job": entry.record.job, "stage": "starting", "fraction": 0.0,
                                                     "message": "started"})
        return entry

    def _work(self) -> None:
        while True:
            entry = self._next()
            if entry is None:
                return
            self._run(entry)
            self.forget_old_jobs()

    def _run(self, entry: _Entry) -> None:
        job_id = entry.record.job
        ctx = JobContext(job_id, output_dir=self.records.output_dir(job_id, create=True), store=self.store,
                         device=self.device, cancel_event=entry.cancel_event,
                         report=lambda **kw: self._report(entry, **kw))
        log.info("job running", extra={"job": job_id, "method": entry.kind.name})
        state, error, result = JobState.DONE, None, None
        try:
            result = entry.kind.run(ctx, entry.job_input)
            if not isinstance(result, dict):
                raise TypeError(f"job kind {entry.kind.name} returned a {type(result).__name__}, not a dict")
            self.records.save_result(job_id, result)
        except JobCancelled:
            state = JobState.CANCELLED
        except UserError as exc:
            state, error = JobState.FAILED, ErrorInfo(exc.code, exc.message, dict(exc.details))
        except Exception as exc:
            state, error = JobState.FAILED, self._classify(exc, entry)
        with self._cond:
            if job_id in self._abandoned:
                return
            if state == JobState.DONE:
                entry.record.result = summarize(result)
                entry.record.stage, entry.record.fraction = "done", 1.0
            self._finish(entry, state, error, "done" if state == JobState.DONE else
                         ("cancelled" if state == JobState.CANCELLED else None), result)

    def _classify(self, exc: Exception, entry: _Entry) -> ErrorInfo:
        for classify in self.error_classifiers:
            info = classify(exc)
            if info is not None:
                return info
        log.error("job failed with an internal error", exc_info=exc,
                  extra={"job": entry.record.job, "method": entry.kind.name})
        return ErrorInfo(ErrorCode.INTERNAL.value,
                         f"the job failed with an internal error ({type(exc).__name__}: {str(exc)[:200]}); "
                         "the server log has the details")

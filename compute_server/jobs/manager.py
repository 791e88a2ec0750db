"""The job manager: a FIFO queue, one worker thread, cancellation, persistence, events.

One worker because the jobs share one GPU: running two optimizations at once only makes
both slower and risks running out of memory. The network thread calls ``submit``,
``cancel``, ``info``...; the worker thread runs jobs. Every state change is saved to
DATA/jobs/ and announced through ``emit(job_id, event_name, params)`` (the server routes
events to the client that watches the job).

Faults: the worker outlives anything a job or its bookkeeping raises. A job that fails
gets a code (``no_space`` when the disk is full); a record that cannot be saved (full or
read-only disk) stays current in memory, is retried every few seconds and at shutdown,
and is reported by ``health()`` (``server.info``) until it is on disk. A submission the
disk cannot hold is refused before it is queued, so no job is left behind half-recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from compute_server.errors import JobCancelled, UserError
from compute_server.storage.disk_space import (
    disk_state, format_bytes, no_space_error, read_only_error, storage_error,
)
from shared.protocol import EVENT_CANCELLED, EVENT_DONE, EVENT_FAILED, EVENT_PROGRESS, ErrorCode, ErrorInfo
from shared.records import JobInfo, JobState

from .context import JobContext, JobKind
from .persistence import JobRecordStore
from .record_keeper import RecordKeeper
from .records import JobRecord, check_job_id, new_job_id, summarize
from .retention import RetentionPolicy, jobs_to_forget

log = logging.getLogger(__name__)

PERSIST_PROGRESS_EVERY_S = 2.0
INTERRUPTED_RUNNING = "the server restarted while this job was running; submit it again"
INTERRUPTED_QUEUED = "the server restarted before this job started; submit it again"
SHUTDOWN_RUNNING = "the server shut down while this job was running; submit it again"
SHUTDOWN_QUEUED = "the server shut down before this job started; submit it again"
RECOVERED_DONE = "done (recovered at restart: the avatar was published before the server stopped)"
RETRY_UNSAVED_EVERY_S = 5.0  # how often records that could not be saved are tried again

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
                 retention: RetentionPolicy | None = None, min_free_bytes: int = 0):
        self.records = records
        self.min_free_bytes = min_free_bytes
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
        self.keeper = RecordKeeper(records)  # saves that never raise (full or read-only disk)

    # ---------------------------------------------------------------- lifecycle

    def recover(self) -> list[str]:
        """Load records from disk; jobs left queued/running by a previous run become
        failed (code ``interrupted``), except an avatar job whose avatar was published
        before the crash: that one is done, with the avatar as its result. Never raises for
        a full or read-only disk: records that cannot be rewritten now are kept in memory
        and retried (see health()). -> ids of the interrupted jobs."""
        interrupted = []
        records = self.records.load_all()
        unfinished = [r.job for r in records if not r.state.finished]
        published = self._published_by(unfinished)
        for record in records:
            if not record.state.finished:
                summary = published.get(record.job)
                if summary is not None:
                    self._recover_done(record, summary)
                else:
                    was_running = record.state == JobState.RUNNING
                    message = INTERRUPTED_RUNNING if was_running else INTERRUPTED_QUEUED
                    record.finish(JobState.FAILED, ErrorInfo(ErrorCode.INTERRUPTED.value, message), message)
                    interrupted.append(record.job)
                self._save(record.to_json(), "recording the state of a job left by the previous run")
            self._entries[record.job] = _Entry(record)
        if interrupted:
            log.warning("marked %d job(s) interrupted by the previous shutdown", len(interrupted))
        self.forget_old_jobs()
        return interrupted

    def _published_by(self, jobs: list[str]) -> dict:
        finder = getattr(self.store, "published_by", None)
        if finder is None or not jobs:
            return {}
        try:
            return finder(jobs)
        except OSError as exc:
            self._note_problem("looking for avatars of unfinished jobs", exc)
            return {}

    def _recover_done(self, record: JobRecord, summary) -> None:
        """A job that published its avatar but was killed before recording it: done."""
        meta = summary.metadata
        result = {"avatar": summary.avatar, "name": summary.name, "recovered": True}
        for key in ("metrics", "timings_s", "warnings"):
            if key in meta:
                result[key] = meta[key]
        if isinstance(meta.get("counts"), dict) and "splats" in meta["counts"]:
            result["splats"] = meta["counts"]["splats"]
        try:
            self.records.save_result(record.job, result)
        except OSError as exc:
            self._note_problem(f"saving the recovered result of job {record.job}", exc)
        record.result = summarize(result)
        record.stage, record.fraction = "done", 1.0
        record.finish(JobState.DONE, None, RECOVERED_DONE)
        log.warning("job %s had published avatar %s before the server stopped; recorded as done", record.job,
                    summary.avatar, extra={"job": record.job, "avatar": summary.avatar})

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
            self.keeper.forget(job_id)
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
        if not self.keeper.flush():
            log.error("%d job record(s) could not be saved before stopping (the disk is full or read-only); "
                      "after a restart they show as interrupted", self.keeper.unsaved)

    # ---------------------------------------------------------------- health

    @property
    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def health(self) -> dict:
        """What ``server.info`` reports about the jobs' side: whether the worker runs, how
        many records are not on disk yet, and the newest fault."""
        return {"worker_alive": self.worker_alive, "unsaved_records": self.keeper.unsaved,
                "last_error": self.keeper.last_problem}

    def _note_problem(self, where: str, exc: BaseException, job: str | None = None) -> None:
        self.keeper.note_problem(where, exc, job)

    def _save(self, snapshot: dict, where: str = "saving a job record") -> bool:
        """Save a record (see RecordKeeper); a failure wakes the worker, which retries."""
        if self.keeper.save(snapshot, where):
            return True
        with self._cond:
            self._cond.notify_all()
        return False

    def _check_disk(self, kind: JobKind, job_input) -> None:
        """Refuse a job the data disk cannot hold (no_space) or cannot record (read-only)."""
        roots = [self.records.root] + ([self.store.root] if getattr(self.store, "root", None) else [])
        states = [disk_state(root) for root in roots]
        if not all(state.writable for state in states):
            raise read_only_error(next(s.path for s in states if not s.writable))
        needed = int(kind.disk_bytes(job_input)) if kind.disk_bytes else 0
        fullest = min(states, key=lambda state: state.free_bytes)
        if fullest.free_bytes < needed + self.min_free_bytes:
            what = f"this {kind.name} job" + (f" ({format_bytes(needed)})" if needed else "")
            error = no_space_error(fullest.path, needed_bytes=needed + self.min_free_bytes,
                                   what=f"{what} with the server's reserve of {format_bytes(self.min_free_bytes)}")
            raise error

    # ---------------------------------------------------------------- network-thread API

    def submit(self, kind: JobKind, job_input, params_summary: dict, client: bytes | None = None) -> JobInfo:
        """Queue a job; raises UserError busy when the queue is full, no_space when the
        data disk cannot hold it, unavailable when the worker is gone. The record is on
        disk before the job is queued: a refused submission leaves nothing behind.
        client: who submitted it (a clustered server shares its workers fairly between
        clients; this one-worker queue is first come, first served)."""
        avatars = tuple(kind.avatars_used(job_input)) if kind.avatars_used else ()
        self._check_queue(kind)
        self._check_disk(kind, job_input)
        record = JobRecord(job=new_job_id(), kind=kind.name, state=JobState.QUEUED, created_at=time.time(),
                           params=params_summary, message="waiting for the worker")
        try:
            self.records.save(record.to_json())
        except OSError as exc:
            self.records.forget(record.job)
            self._note_problem(f"recording a new {kind.name} job", exc)
            raise storage_error(exc, self.records.root) or exc from None
        with self._cond:
            try:
                self._check_queue(kind)
            except UserError:
                self.records.forget(record.job)
                raise
            entry = _Entry(record, kind, job_input, avatars)
            self._entries[record.job] = entry
            self._queue.append(record.job)
            info = self._info(entry)
            self._cond.notify_all()
        log.info("job queued", extra={"job": record.job, "method": kind.name})
        return info

    def _check_queue(self, kind: JobKind) -> None:
        with self._cond:
            if self._stopping:
                raise UserError("unavailable", "the server is shutting down; submit the job again once it is back")
            if self._worker is not None and not self._worker.is_alive():
                raise UserError("unavailable", "the server's job worker has stopped (see server.info health and "
                                               "the server log); restart the server")
            if len(self._queue) >= self.max_queued:
                raise UserError("busy", f"the server already has {len(self._queue)} jobs waiting (the limit is "
                                        f"{self.max_queued}); wait for some to finish or cancel them")

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
        if state != JobState.DONE:  # partial files (an upload, frames) that no one will be served
            self.records.remove_output(record.job)
        self._save(record.to_json(), f"recording that a job is {state.value}")
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
            self._save(snapshot, "recording a job's progress")
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
                self._cond.wait(RETRY_UNSAVED_EVERY_S if self.keeper.unsaved else None)
                if self.keeper.unsaved and not self._queue:
                    self.keeper.flush()
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
        self._save(snapshot, "recording that a job started")
        self.emit(entry.record.job, EVENT_PROGRESS, {"job": entry.record.job, "stage": "starting", "fraction": 0.0,
                                                     "message": "started"})
        return entry

    def _work(self) -> None:
        """The worker thread: run jobs one by one. Nothing a job or its bookkeeping raises
        ends this loop; only shutdown does."""
        while True:
            entry = None
            try:
                entry = self._next()
                if entry is None:
                    return
                self._run(entry)
            except BaseException as exc:  # a bug in the bookkeeping itself: fail the job, keep working
                self._note_problem("the job worker", exc, entry.record.job if entry else None)
                if entry is not None:
                    self._fail_stuck(entry, exc)
            try:
                self.forget_old_jobs()
                self.keeper.flush()
            except Exception as exc:
                self._note_problem("cleaning up after a job", exc)

    def _fail_stuck(self, entry: _Entry, exc: BaseException) -> None:
        with self._cond:
            if entry.record.state.finished or entry.record.job in self._abandoned:
                return
            try:
                self._finish(entry, JobState.FAILED, self._classify(exc, entry))
            except Exception as again:
                self._note_problem("failing a job after a worker error", again, entry.record.job)
                entry.record.finish(JobState.FAILED, ErrorInfo(ErrorCode.INTERNAL.value, "the job failed"))
                if self._running is entry:
                    self._running = None

    def _run(self, entry: _Entry) -> None:
        job_id = entry.record.job
        log.info("job running", extra={"job": job_id, "method": entry.kind.name})
        state, error, result = JobState.DONE, None, None
        try:
            store = self.store.for_job(job_id) if hasattr(self.store, "for_job") else self.store
            ctx = JobContext(job_id, output_dir=self.records.output_dir(job_id, create=True), store=store,
                             device=self.device, cancel_event=entry.cancel_event,
                             report=lambda **kw: self._report(entry, **kw))
            result = entry.kind.run(ctx, entry.job_input)
            if not isinstance(result, dict):
                raise TypeError(f"job kind {entry.kind.name} returned a {type(result).__name__}, not a dict")
            self.records.save_result(job_id, result)
        except JobCancelled:
            state = JobState.CANCELLED
        except UserError as exc:
            state, error = JobState.FAILED, ErrorInfo(exc.code, exc.message, dict(exc.details))
        except BaseException as exc:  # noqa: BLE001 - whatever a job raises fails that job, not the worker
            state, error = JobState.FAILED, self._classify(exc, entry)
        with self._cond:
            if job_id in self._abandoned:
                return
            if state == JobState.DONE:
                entry.record.result = summarize(result)
                entry.record.stage, entry.record.fraction = "done", 1.0
            self._finish(entry, state, error, "done" if state == JobState.DONE else
                         ("cancelled" if state == JobState.CANCELLED else None), result)

    def _classify(self, exc: BaseException, entry: _Entry) -> ErrorInfo:
        storage = storage_error(exc, self.records.root)
        if storage is not None:  # the disk, not the job: say what to free
            self._note_problem(f"running {entry.kind.name if entry.kind else 'a job'}", exc, entry.record.job)
            return ErrorInfo(storage.code, storage.message, dict(storage.details))
        for classify in self.error_classifiers:
            try:
                info = classify(exc)
            except Exception:  # a broken classifier must not hide the job's own error
                log.exception("error classifier %r failed", classify)
                continue
            if info is not None:
                return info
        self.keeper.note_problem(f"running {entry.kind.name if entry.kind else 'a job'} (an internal error)", exc,
                                 entry.record.job, traceback=True)
        return ErrorInfo(ErrorCode.INTERNAL.value,
                         f"the job failed with an internal error ({type(exc).__name__}: {str(exc)[:200]}); "
                         "the server log has the details")

"""Running one piece of a job on one worker, watched from the front.

The front asks the worker for its buffered reports every ``POLL_S`` while the task runs
and relays them to the job's own JobContext, so a client sees the same events as from
the embedded server. A cancel of the job becomes a ``cancel`` call to the worker (the
job's own checks stop it within half a second). A worker whose process dies raises
``WorkerLost``; callers run the work again on another worker (at most ``MAX_ATTEMPTS``
times) and say so in a progress message.
"""

from __future__ import annotations

import itertools
import logging

from compute_server.errors import JobCancelled, UserError

from .pool import PooledWorker, WorkerPool
from .worker import TaskOutcome, WorkerTask

log = logging.getLogger(__name__)

POLL_S = 0.2   # reports reach the client at most this late; a finished task is seen at once
EVENTS_TIMEOUT_S = 10.0
MAX_ATTEMPTS = 3
_task_numbers = itertools.count()


class WorkerLost(Exception):
    """The worker running a task died (or became unreachable) before it finished."""

    def __init__(self, worker: PooledWorker, cause: BaseException):
        super().__init__(f"worker {worker.name} stopped: {type(cause).__name__}")
        self.worker = worker
        self.cause = cause


def task_id(job: str) -> str:
    return f"{job}-{next(_task_numbers)}"


def lost_errors(ray) -> tuple[type[BaseException], ...]:
    """What Ray raises for a task whose worker died or cannot be reached."""
    exceptions = ray.exceptions
    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
             "NodeDiedError", "ObjectLostError", "OwnerDiedError", "RaySystemError")
    return tuple(getattr(exceptions, n) for n in names if hasattr(exceptions, n))


class RunningTask:
    """A task started on a worker. ``drain`` collects its reports (and, once the task is
    finished, its outcome)."""

    def __init__(self, pool: WorkerPool, worker: PooledWorker, task: WorkerTask):
        self.pool = pool
        self.ray = pool.connection.ray
        self.worker = worker
        self.task = task
        self.ref = worker.handle.run.remote(task)
        self._cancel_sent = False
        self._events_ref = None   # an events() call whose answer has not been read yet

    def cancel(self) -> None:
        if not self._cancel_sent:
            self._cancel_sent = True
            self.worker.handle.cancel.remote(self.task.task_id)

    def drain(self, finished: bool) -> tuple[list[dict], TaskOutcome | None]:
        """-> (reports since the last drain, the outcome when ``finished``). The reports are
        read after ``finished`` was seen, so none made before the end is missed."""
        timeout = self.ray.exceptions.GetTimeoutError  # a slow answer is not a dead worker: wait for it
        try:
            if self._events_ref is None:
                self._events_ref = self.worker.handle.events.remote(self.task.task_id)
            events = self.ray.get(self._events_ref, timeout=EVENTS_TIMEOUT_S)
            self._events_ref = None
        except timeout:
            return [], None
        except lost_errors(self.ray) as exc:
            raise WorkerLost(self.worker, exc) from None
        if not finished:
            return events, None
        try:
            outcome = self.ray.get(self.ref, timeout=EVENTS_TIMEOUT_S)
        except timeout:
            return events, None
        except lost_errors(self.ray) as exc:  # the reports read above are dropped: that work runs again
            raise WorkerLost(self.worker, exc) from None
        self.worker.handle.forget_events.remote(self.task.task_id)
        return events, outcome


def outcome_result(outcome: TaskOutcome) -> dict:
    """A finished task's result, or what it raised, raised here as the embedded server's
    worker thread would have seen it."""
    if outcome.status == "done":
        return outcome.result
    if outcome.status == "cancelled":
        raise JobCancelled(outcome.worker)
    if outcome.status == "user_error":
        error = outcome.error
        raise UserError(error["code"], error["message"], **error.get("details", {}))
    raise outcome.exception


def run_on_worker(pool: WorkerPool, ctx, make_task, *, on_worker, note_retry) -> TaskOutcome:
    """Run ``make_task()`` on a free worker until it finishes, relaying its reports to
    ``ctx``; re-run it on another worker when its worker dies. A cancel is passed on and
    the task's end awaited, so the worker is free again when the job is recorded cancelled. ``on_worker(worker)``: a
    worker took the task. ``note_retry(message)``: tell the user about a re-run."""
    connection = pool.connection
    for attempt in range(1, MAX_ATTEMPTS + 1):
        worker = acquire(pool, ctx)
        lost = False
        try:
            on_worker(worker)
            running = RunningTask(pool, worker, make_task())
            while True:
                finished = bool(connection.ray.wait([running.ref], timeout=POLL_S)[0])
                if ctx.cancel_requested:
                    running.cancel()
                if not connection.reachable:
                    raise connection.unavailable_error()
                events, outcome = running.drain(finished)
                for report in events:
                    ctx.relay(**report)
                if outcome is not None:
                    return outcome
        except WorkerLost as exc:
            lost = True
            if not connection.reachable:
                raise connection.unavailable_error() from None
            if attempt == MAX_ATTEMPTS:
                raise UserError("worker_lost", f"the job's cluster worker died {MAX_ATTEMPTS} times "
                                               f"(last: {exc}); see the Ray logs of the cluster") from None
            log.warning("%s during job %s; running it again", exc, ctx.job, extra={"job": ctx.job})
            note_retry(f"{exc}; running the job again on another worker")
        finally:
            pool.release(worker, lost=lost)
    raise AssertionError("unreachable")


def acquire(pool: WorkerPool, ctx, *, wait: bool = True, fraction: float = 0.0) -> PooledWorker | None:
    """A free worker for the job of ``ctx`` (UserError when the cluster is gone,
    JobCancelled when the job is cancelled while it waits). ``fraction``: the job's
    progress so far, for the "waiting" report."""
    connection = pool.connection
    worker = pool.acquire(ctx.job, wait=False)
    if worker is not None or not wait:
        return worker
    ctx.progress("waiting", fraction, "waiting for a free cluster worker")
    while worker is None:
        if not connection.reachable:
            raise connection.unavailable_error()
        ctx.check()
        worker = pool.acquire(ctx.job, wait=True, give_up=lambda: ctx.cancel_requested or not connection.reachable,
                              poll_s=0.1)
    return worker


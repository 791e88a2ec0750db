"""Non-blocking conversation with one server: requests with callbacks, and jobs followed
to their end. No bpy here: Blender's timer calls ``pump(0)``, background scripts call
``wait_until`` (which pumps the same way), and tests drive it directly.

Why callbacks and not threads: bpy may only be touched from Blender's main thread, and a
request that blocks the main thread freezes the UI. ``shared.client.Client`` offers
``send``/``poll``/``expire``; this class matches replies and events to what asked for
them and keeps each job alive:

- events (``job.progress``, ``job.done``, ...) are the fast path;
- every ``status_interval_s`` a ``job.status`` with ``watch: true`` asks for the job's
  state and routes its events to us (so a reattached or reconnected session gets them);
- a job whose server has not answered anything for ``lost_contact_s`` ends as ``lost``
  (it may still run on the server; reattach later with its id).

Callbacks run inside ``pump``; an exception in one is logged and, for a job, ends the job
with code ``internal`` and the exception's text, so a bug never stops the timer.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ERROR_TIMEOUT = "timeout"
ERROR_LOST = "lost"
ERROR_CANCELLED = "cancelled"
ERROR_INTERNAL = "internal"
FINAL_STATES = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Failure:
    """Why a request or job did not succeed: a protocol error code and a sentence."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class JobHandlers:
    """What to do as a job moves. ``on_done`` gets the result map; ``on_failed`` a
    Failure (codes from the server, or ``cancelled``, ``lost``, ``internal``)."""

    on_progress: Callable[[dict], None] | None = None
    on_done: Callable[[dict], None] | None = None
    on_failed: Callable[[Failure], None] | None = None
    on_state: Callable[[str], None] | None = None  # queued / running, from job.status


@dataclass
class _Request:
    method: str
    on_result: Callable[[dict], None] | None
    on_error: Callable[[Failure], None] | None


@dataclass
class _Watch:
    job_id: str
    handlers: JobHandlers
    last_contact: float
    next_status_at: float = 0.0
    status_pending: bool = False
    finished: bool = False
    state: str = "queued"


@dataclass
class SessionStats:
    """Counters for tests and the benchmark (how much work each pump did)."""

    pumps: int = 0
    messages: int = 0
    max_pump_s: float = 0.0
    callback_errors: list[str] = field(default_factory=list)


class Session:
    """Requests and job watches over one ``shared.client.Client`` (see the module docstring).

    client: a connected Client (its ``send``/``poll``/``expire`` are used, never its
        blocking calls). request_timeout_s: a request with no reply after this long fails
        with code ``timeout``. lost_contact_s: a watched job whose server stays silent this
        long fails with code ``lost``. clock: monotonic seconds (tests may replace it).
    """

    def __init__(self, client, *, request_timeout_s: float = 15.0, lost_contact_s: float = 60.0,
                 status_interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.request_timeout_s = float(request_timeout_s)
        self.lost_contact_s = float(lost_contact_s)
        self.status_interval_s = float(status_interval_s)
        self.clock = clock
        self.stats = SessionStats()
        self.last_contact: float | None = None  # when the server last answered anything
        self._requests: dict[str, _Request] = {}
        self._watches: dict[str, _Watch] = {}

    # ------------------------------------------------------------------ state

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    @property
    def busy(self) -> bool:
        """True while a request waits for its reply or a watched job is unfinished."""
        return bool(self._requests) or any(not w.finished for w in self._watches.values())

    def watched_jobs(self) -> list[str]:
        return [w.job_id for w in self._watches.values() if not w.finished]

    def close(self) -> None:
        """Drop every request and watch (jobs keep running on the server) and close the socket."""
        self._requests.clear()
        self._watches.clear()
        self.client.close()

    # ------------------------------------------------------------------ requests

    def request(self, method: str, params: dict | None = None, *, on_result=None, on_error=None) -> str:
        """Send a request now; ``on_result(result)`` or ``on_error(Failure)`` runs from a
        later ``pump``. Returns the request id. Never blocks."""
        try:
            request_id = self.client.send(method, params)
        except Exception as exc:  # the outgoing queue is full (server long gone), or params the wire cannot carry
            # (ServerUnavailable is matched by name: this module stays free of the zmq-based client)
            code = ERROR_TIMEOUT if type(exc).__name__ == "ServerUnavailable" else ERROR_INTERNAL
            self._call(on_error, Failure(code, str(exc)))
            return ""
        self._requests[request_id] = _Request(method, on_result, on_error)
        return request_id

    def submit(self, method: str, params: dict, handlers: JobHandlers, *,
               on_queued: Callable[[str], None] | None = None) -> str:
        """Start a job: send ``method``, then watch the job id the server answers with.
        A refused submission goes to ``handlers.on_failed``; ``on_queued(job_id)`` runs
        when the server accepted it."""

        def accepted(result: dict) -> None:
            job_id = result.get("job")
            if not isinstance(job_id, str):
                self._call(handlers.on_failed, Failure(ERROR_INTERNAL, f"the server's reply to {method} has no job id"))
                return
            self.watch(job_id, handlers, status_now=False)
            self._call(on_queued, job_id)

        return self.request(method, params, on_result=accepted, on_error=handlers.on_failed)

    def watch(self, job_id: str, handlers: JobHandlers, *, status_now: bool = True) -> None:
        """Follow ``job_id`` (e.g. a job started before Blender was reopened). With
        ``status_now`` its status is asked at once (and its events routed here)."""
        now = self.clock()
        delay = 0.0 if status_now else self.status_interval_s
        self._watches[job_id] = _Watch(job_id, handlers, last_contact=now, next_status_at=now + delay)

    def forget(self, job_id: str) -> None:
        """Stop following a job (it keeps running on the server)."""
        self._watches.pop(job_id, None)

    def cancel(self, job_id: str, *, on_result=None, on_error=None) -> str:
        """Ask the server to cancel a job; its watch ends when ``job.cancelled`` (or the
        status) says so."""
        return self.request("job.cancel", {"job": job_id}, on_result=on_result, on_error=on_error)

    # ------------------------------------------------------------------ pumping

    def pump(self, timeout_ms: int = 0) -> int:
        """Handle what has arrived (waiting at most ``timeout_ms`` for it), expire old
        requests and send due status polls. Returns the number of messages handled."""
        started = time.perf_counter()
        messages = self.client.poll(timeout_ms)
        if messages:
            self.last_contact = self.clock()
        for message in messages:
            if hasattr(message, "name"):  # an Event
                self._on_event(message)
            else:
                self._on_reply(message)
        for reply in self.client.expire(self.request_timeout_s):
            self._on_reply(reply)
        self._poll_statuses()
        self.stats.pumps += 1
        self.stats.messages += len(messages)
        self.stats.max_pump_s = max(self.stats.max_pump_s, time.perf_counter() - started)
        return len(messages)

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float | None = None, *,
                   poll_ms: int = 100) -> bool:
        """Pump until ``predicate()`` is true (-> True) or ``timeout_s`` passes (-> False).
        For background mode, where nothing else needs the thread."""
        deadline = None if timeout_s is None else self.clock() + timeout_s
        while not predicate():
            if deadline is not None and self.clock() >= deadline:
                return False
            if not self.busy:
                return bool(predicate())
            self.pump(poll_ms)
        return True

    # ------------------------------------------------------------------ dispatch

    def _on_reply(self, reply) -> None:
        request = self._requests.pop(reply.id, None) if reply.id is not None else None
        if request is None:
            if reply.error is not None and reply.id is None:
                log.warning("server reported an error for an unreadable request: %s", reply.error.message)
            return
        if reply.error is None:
            self._call(request.on_result, reply.result)
        else:
            self._call(request.on_error, Failure(reply.error.code, reply.error.message))

    def _on_event(self, event) -> None:
        watch = self._watches.get(event.job or "")
        if watch is None or watch.finished:
            return
        watch.last_contact = self.clock()
        params = event.params
        if event.name == "job.progress":
            watch.state = "running"
            self._call_job(watch, watch.handlers.on_progress, params)
        elif event.name == "job.done":
            result = params.get("result")
            if isinstance(result, dict):
                self._finish_done(watch, result)
            else:
                self._fetch_result(watch)
        elif event.name == "job.failed":
            error = params.get("error") or {}
            self._finish_failed(watch, Failure(str(error.get("code", ERROR_INTERNAL)),
                                               str(error.get("message", f"job {watch.job_id} failed"))))
        elif event.name == "job.cancelled":
            self._finish_failed(watch, Failure(ERROR_CANCELLED, f"job {watch.job_id} was cancelled"))

    def _poll_statuses(self) -> None:
        now = self.clock()
        for watch in list(self._watches.values()):
            if watch.finished or watch.status_pending or now < watch.next_status_at:
                continue
            if now - watch.last_contact > self.lost_contact_s:
                self._finish_failed(watch, Failure(ERROR_LOST, (
                    f"lost contact with the server at {self.endpoint} for {now - watch.last_contact:.0f} s while "
                    f"job {watch.job_id} was running; it may still finish there: reconnect and press Reattach")))
                continue
            watch.status_pending = True
            self.request("job.status", {"job": watch.job_id, "watch": True},
                         on_result=lambda record, w=watch: self._on_status(w, record),
                         on_error=lambda failure, w=watch: self._on_status_error(w, failure))

    def _on_status(self, watch: _Watch, record: dict) -> None:
        watch.status_pending = False
        watch.last_contact = self.clock()
        watch.next_status_at = watch.last_contact + self.status_interval_s
        if watch.finished:
            return
        state = str(record.get("state", ""))
        if state == "done":
            self._fetch_result(watch)
        elif state == "failed":
            error = record.get("error") or {}
            self._finish_failed(watch, Failure(str(error.get("code", ERROR_INTERNAL)),
                                               str(error.get("message", f"job {watch.job_id} failed"))))
        elif state == "cancelled":
            self._finish_failed(watch, Failure(ERROR_CANCELLED, f"job {watch.job_id} was cancelled"))
        elif state and state != watch.state:
            watch.state = state
            self._call_job(watch, watch.handlers.on_state, state)

    def _on_status_error(self, watch: _Watch, failure: Failure) -> None:
        watch.status_pending = False
        watch.next_status_at = self.clock() + self.status_interval_s
        if watch.finished:
            return
        if failure.code == ERROR_TIMEOUT:
            return  # silence is judged by lost_contact_s
        self._finish_failed(watch, failure)  # e.g. not_found: the server no longer knows the job

    def _fetch_result(self, watch: _Watch) -> None:
        if watch.finished or watch.state == "fetching":
            return
        watch.state = "fetching"
        self.request("job.result", {"job": watch.job_id},
                     on_result=lambda reply, w=watch: self._finish_done(w, reply.get("result") or {}),
                     on_error=lambda failure, w=watch: self._finish_failed(w, failure))

    def _finish_done(self, watch: _Watch, result: dict) -> None:
        if watch.finished:
            return
        watch.finished, watch.state = True, "done"
        self._call_job(watch, watch.handlers.on_done, result)

    def _finish_failed(self, watch: _Watch, failure: Failure) -> None:
        if watch.finished:
            return
        watch.finished, watch.state = True, "cancelled" if failure.code == ERROR_CANCELLED else "failed"
        self._call(watch.handlers.on_failed, failure)

    # ------------------------------------------------------------------ callbacks

    def _call(self, callback, *args) -> bool:
        if callback is None:
            return True
        try:
            callback(*args)
            return True
        except Exception as exc:  # a handler bug must not stop the pump
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.error("HeadSplat callback failed:\n%s", traceback.format_exc())
            self.stats.callback_errors.append(text)
            return False

    def _call_job(self, watch: _Watch, callback, *args) -> None:
        if self._call(callback, *args):
            return
        failure = Failure(ERROR_INTERNAL, f"HeadSplat could not handle job {watch.job_id}: "
                                          f"{self.stats.callback_errors[-1]} (details in the system console)")
        watch.finished, watch.state = True, "failed"
        self._call(watch.handlers.on_failed, failure)

"""The HeadSplat client: what the CLI, the Blender add-on and scripts talk to a server with.

Two ways to use it, mixable on one instance:

- Blocking, for scripts and the CLI: ``call(method, params)`` returns the result map or
  raises ``ServerError`` (an error reply) / ``ServerUnavailable`` (no reply in time);
  ``wait_job(job_id)`` follows a job to its end.
- Non-blocking, for Blender timers: ``send(method, params)`` returns a request id at once;
  ``poll(timeout_ms=0)`` returns the replies and events that have arrived, never waiting
  longer than ``timeout_ms``; ``expire(older_than_s)`` gives up on requests that got no
  answer.

One DEALER socket with a stable routing id per instance, so the server can push a job's
events to it and it keeps working after the server restarts (ZeroMQ reconnects; the
heartbeat notices a dead server). A Client is meant for one thread at a time; a lock
makes accidental sharing safe but serializes the calls.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import replace

import zmq

from .protocol import (
    DEFAULT_ENDPOINT, EVENT_CANCELLED, EVENT_DONE, EVENT_FAILED, EVENT_PROGRESS, ErrorCode, ErrorInfo, Event,
    ProtocolError, Reply, decode_server_message, encode_request,
)
from .records import AvatarSummary, JobInfo, JobState

log = logging.getLogger(__name__)

Message = Reply | Event

RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
MAX_MESSAGES_PER_POLL = 1000


class ServerError(Exception):
    """The server answered with an error: ``code`` (see ErrorCode) and a sentence."""

    def __init__(self, code: str, message: str, *, method: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.method = method
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"

    @classmethod
    def from_info(cls, error: ErrorInfo, method: str | None = None) -> "ServerError":
        return cls(error.code, error.message, method=method, details=dict(error.details))


class JobFailed(ServerError):
    """A job ended failed or cancelled; ``job`` is its id."""

    def __init__(self, job: str, code: str, message: str, details: dict | None = None):
        super().__init__(code, message, details=details)
        self.job = job


class ServerUnavailable(Exception):
    """No reply arrived in time: the server is down, unreachable or refused our keys."""

    def __init__(self, endpoint: str, message: str):
        super().__init__(message)
        self.endpoint = endpoint


def result_of(reply: Reply) -> dict:
    """The result of a reply from ``poll``/``expire``; raises its error as an exception."""
    if reply.error is None:
        return reply.result
    if reply.error.code == ErrorCode.TIMEOUT.value:
        raise ServerUnavailable(reply.error.details.get("endpoint", ""), reply.error.message)
    raise ServerError.from_info(reply.error, reply.method)


def load_curve_keys(server_key_file: str | os.PathLike, client_key_file: str | os.PathLike) -> dict:
    """Keyword arguments for ``Client`` from certificate files made by ``headsplat keys``:
    the server's public certificate and this client's secret certificate."""
    import zmq.auth

    server_public, _ = zmq.auth.load_certificate(os.fspath(server_key_file))
    client_public, client_secret = zmq.auth.load_certificate(os.fspath(client_key_file))
    if client_secret is None:
        raise ValueError(f"{client_key_file} holds no secret key; pass the client's '.key_secret' file")
    return {"server_public_key": server_public, "client_public_key": client_public, "client_secret_key": client_secret}


def _as_key(value: bytes | str) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else bytes(value)


class Client:
    """A connection to one HeadSplat server (see the module docstring).

    endpoint: ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:7788``.
    server_public_key, client_secret_key, client_public_key: Z85 CURVE keys (40 chars);
        give the server's public key and this client's secret key to talk to a server
        that requires CURVE (the public key is derived when omitted).
    timeout_s: default seconds ``call`` waits for a reply.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, server_public_key: bytes | str | None = None,
                 client_secret_key: bytes | str | None = None, client_public_key: bytes | str | None = None,
                 timeout_s: float = 30.0, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.timeout_s = float(timeout_s)
        self.routing_id = b"hs-" + secrets.token_hex(8).encode("ascii")
        self._context = context or zmq.Context.instance()
        self._id_prefix = secrets.token_hex(3)
        self._counter = itertools.count(1)
        self._pending: dict[str, tuple[str, float]] = {}  # request id -> (method, sent at, monotonic s)
        self._backlog: deque[Message] = deque()  # messages received while waiting for something else
        self._lock = threading.RLock()
        self._curve = server_public_key is not None
        self._socket = self._open_socket(server_public_key, client_secret_key, client_public_key)

    def _open_socket(self, server_public_key, client_secret_key, client_public_key) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.routing_id)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if server_public_key is not None or client_secret_key is not None:
            if server_public_key is None or client_secret_key is None:
                sock.close()
                raise ValueError("CURVE needs both the server's public key and this client's secret key")
            secret = _as_key(client_secret_key)
            sock.curve_secretkey = secret
            sock.curve_publickey = _as_key(client_public_key) if client_public_key else zmq.curve_public(secret)
            sock.curve_serverkey = _as_key(server_public_key)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise ValueError(f"{self.endpoint!r} is not a usable ZeroMQ endpoint ({exc}); "
                             "use e.g. tcp://127.0.0.1:7788") from None
        return sock

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            if not self._socket.closed:
                self._socket.close(linger=0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ non-blocking API

    def send(self, method: str, params: dict | None = None) -> str:
        """Queue a request and return its id at once; the reply comes through ``poll``.

        Arrays in ``params`` are sent without copying: do not modify them until the
        reply arrives. Raises ServerUnavailable if the outgoing queue is full (the
        server has been unreachable for a long time).
        """
        with self._lock:
            request_id = f"{self._id_prefix}-{next(self._counter)}"
            frames = encode_request(request_id, method, params)
            try:
                self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                raise ServerUnavailable(self.endpoint, f"cannot queue more requests for {self.endpoint}: "
                                                       "is the server running?") from None
            self._pending[request_id] = (method, time.monotonic())
            return request_id

    def poll(self, timeout_ms: int = 0) -> list[Message]:
        """Replies (to our pending requests) and events received so far.

        Waits at most ``timeout_ms`` for the first message (0: do not wait). Replies carry
        ``method`` from the pending request; use ``result_of(reply)`` to get the result
        or raise its error. Replies to expired or unknown requests are dropped.
        """
        with self._lock:
            messages = list(self._backlog)
            self._backlog.clear()
            wait_ms = 0 if messages else max(0, int(timeout_ms))
            if self._socket.poll(wait_ms, zmq.POLLIN):
                messages.extend(self._drain())
            return messages

    def pending(self) -> dict[str, str]:
        """Requests sent and not yet answered: request id -> method name."""
        with self._lock:
            return {rid: method for rid, (method, _) in self._pending.items()}

    def expire(self, older_than_s: float) -> list[Reply]:
        """Give up on requests waiting longer than ``older_than_s``: they are returned as
        replies with error code ``timeout`` (``result_of`` raises ServerUnavailable)."""
        now = time.monotonic()
        expired = []
        with self._lock:
            for rid, (method, sent_at) in list(self._pending.items()):
                if now - sent_at >= older_than_s:
                    del self._pending[rid]
                    error = ErrorInfo(ErrorCode.TIMEOUT.value, self._no_reply_message(now - sent_at),
                                      {"endpoint": self.endpoint})
                    expired.append(Reply(rid, error=error, method=method))
        return expired

    def _drain(self) -> list[Message]:
        messages: list[Message] = []
        while len(messages) < MAX_MESSAGES_PER_POLL:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            message = self._accept(frames)
            if message is not None:
                messages.append(message)
        return messages

    def _accept(self, frames) -> Message | None:
        try:
            message = decode_server_message(frames)
        except ProtocolError as exc:
            log.warning("ignoring a malformed message from %s: %s", self.endpoint, exc.message)
            return None
        if isinstance(message, Event):
            return message
        if message.id is None:  # the server could not read a request id: surface it as-is
            return message
        pending = self._pending.pop(message.id, None)
        if pending is None:
            log.debug("dropping a reply to unknown or expired request %s", message.id)
            return None
        return replace(message, method=pending[0])

    def _no_reply_message(self, waited_s: float) -> str:
        hint = ("is the server running? Is this client's public key in its --curve-clients folder?" if self._curve
                else "is the server running? (A server with CURVE keys answers only clients that have them.)")
        return f"no reply from {self.endpoint} in {waited_s:.3g} s: {hint}"

    # ------------------------------------------------------------------ blocking API

    def request(self, method: str, params: dict | None = None, *, timeout_s: float | None = None) -> Reply:
        """Send one request and wait for its reply (events arriving meanwhile are kept
        for ``poll``/``wait_job``). Raises ServerUnavailable when none comes in time."""
        timeout_s = self.timeout_s if timeout_s is None else float(timeout_s)
        with self._lock:
            request_id = self.send(method, params)
            deadline = time.monotonic() + timeout_s
            while True:
                remaining_ms = (deadline - time.monotonic()) * 1000.0
                if remaining_ms <= 0:
                    self._pending.pop(request_id, None)
                    raise ServerUnavailable(self.endpoint, self._no_reply_message(timeout_s))
                if not self._socket.poll(max(1, int(remaining_ms)), zmq.POLLIN):
                    continue
                found = None
                for message in self._drain():
                    if found is None and isinstance(message, Reply) and message.id == request_id:
                        found = message
                    else:
                        self._backlog.append(message)
                if found is not None:
                    return found

    def call(self, method: str, params: dict | None = None, *, timeout_s: float | None = None) -> dict:
        """Send a request and return its result; raises ServerError or ServerUnavailable."""
        return result_of(self.request(method, params, timeout_s=timeout_s))

    def info(self, *, timeout_s: float | None = None) -> dict:
        return self.call("server.info", timeout_s=timeout_s)

    def submit(self, method: str, params: dict | None = None, *, timeout_s: float | None = None) -> str:
        """Start a job (``avatar.create``, ``motion.track``, ``render.frames``); -> job id.
        Its events come to this client."""
        return self.call(method, params, timeout_s=timeout_s)["job"]

    def job_status(self, job: str, *, watch: bool = False, timeout_s: float | None = None) -> JobInfo:
        """A job's record; ``watch=True`` also sends its future events to this client."""
        params = {"job": job, "watch": True} if watch else {"job": job}
        return JobInfo.from_wire(self.call("job.status", params, timeout_s=timeout_s))

    def list_jobs(self, *, states: list[str] | None = None, limit: int | None = None) -> list[JobInfo]:
        """Jobs newest first, optionally only those in ``states``."""
        params: dict = {}
        if states is not None:
            params["states"] = [str(s) for s in states]
        if limit is not None:
            params["limit"] = int(limit)
        return [JobInfo.from_wire(j) for j in self.call("job.list", params)["jobs"]]

    def cancel(self, job: str) -> JobInfo:
        """Ask the server to cancel a job; a queued job is cancelled at once, a running
        one within about a second (watch its state or wait_job)."""
        return JobInfo.from_wire(self.call("job.cancel", {"job": job}))

    def job_result(self, job: str) -> dict:
        """The result map of a done job (raises ServerError not_ready / the job's error)."""
        return self.call("job.result", {"job": job})["result"]

    def list_avatars(self) -> list[AvatarSummary]:
        return [AvatarSummary.from_wire(a) for a in self.call("avatar.list")["avatars"]]

    def get_avatar(self, avatar: str, *, include: list[str] | None = None, timeout_s: float | None = None) -> dict:
        """``{"avatar", "metadata", "arrays", "files"}``; ``include`` limits which files are sent."""
        params = {"avatar": avatar} if include is None else {"avatar": avatar, "include": list(include)}
        return self.call("avatar.get", params, timeout_s=timeout_s)

    def delete_avatar(self, avatar: str) -> None:
        self.call("avatar.delete", {"avatar": avatar})

    # ------------------------------------------------------------------ jobs

    def wait_job(self, job_id: str, on_progress=None, timeout_s: float | None = None, *,
                 status_interval_s: float = 2.0) -> dict:
        """Follow a job to its end and return its result map.

        on_progress: called with each job.progress event's params (stage, fraction,
            message, optional eta_s, preview, frame...).
        timeout_s: give up (TimeoutError) after this long; None waits for ever.
        Raises JobFailed (code from the job, ``cancelled`` or ``interrupted``). Events
        are the fast path; every ``status_interval_s`` the job's status is also asked
        for (and its events re-routed here), so missed events and server restarts are
        survived: a restarted server reports the interrupted job as failed.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        next_status_at = 0.0
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout_s:g} s")
            if now >= next_status_at:
                info = self._status_if_reachable(job_id)
                if info is not None and info.state.finished:
                    return self._final_result(info)
                next_status_at = time.monotonic() + status_interval_s
            wait_ms = int(max(0.0, min(next_status_at, deadline or next_status_at) - time.monotonic()) * 1000)
            for event in self._take_job_events(job_id, wait_ms):
                if event.name == EVENT_PROGRESS:
                    if on_progress is not None:
                        on_progress(event.params)
                elif event.name == EVENT_DONE:
                    result = event.params.get("result")
                    return result if isinstance(result, dict) else self.job_result(job_id)
                elif event.name == EVENT_FAILED:
                    error = ErrorInfo.from_wire(event.params.get("error"))
                    raise JobFailed(job_id, error.code, error.message, error.details)
                elif event.name == EVENT_CANCELLED:
                    raise JobFailed(job_id, ErrorCode.CANCELLED.value, f"job {job_id} was cancelled")

    def _status_if_reachable(self, job_id: str) -> JobInfo | None:
        try:
            return self.job_status(job_id, watch=True, timeout_s=min(self.timeout_s, 5.0))
        except ServerUnavailable:
            return None

    def _final_result(self, info: JobInfo) -> dict:
        if info.state == JobState.DONE:
            return self.job_result(info.job)
        if info.state == JobState.CANCELLED:
            raise JobFailed(info.job, ErrorCode.CANCELLED.value, f"job {info.job} was cancelled")
        error = info.error or ErrorInfo(ErrorCode.INTERNAL.value, f"job {info.job} failed")
        raise JobFailed(info.job, error.code, error.message, error.details)

    def _take_job_events(self, job_id: str, wait_ms: int) -> list[Event]:
        """Events of ``job_id`` received so far, waiting up to ``wait_ms`` for new ones
        when there are none; every other message stays in the backlog, in order."""

        def is_mine(message) -> bool:
            return isinstance(message, Event) and message.job == job_id

        with self._lock:
            mine = [m for m in self._backlog if is_mine(m)]
            if mine:
                self._backlog = deque(m for m in self._backlog if not is_mine(m))
                return mine
            if self._socket.poll(max(0, wait_ms), zmq.POLLIN):
                for message in self._drain():
                    (mine.append if is_mine(message) else self._backlog.append)(message)
            return mine

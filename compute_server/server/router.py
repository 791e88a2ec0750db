"""The network loop: one ROUTER socket, requests in, replies and events out.

The loop never does heavy work: cheap methods run inline, heavy ones are queued as jobs
(registry.add_job_kind). Whatever a client sends, the loop answers with a reply or an
error reply and keeps serving; only the loop thread touches the ROUTER socket.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq

from compute_server.errors import UserError
from compute_server.storage.disk_space import storage_error
from shared.protocol import (
    ErrorCode, ProtocolError, decode_request, encode_error, encode_result, frame_nbytes, peek_request_id,
)

from .registry import Call

log = logging.getLogger(__name__)

POLL_INTERVAL_MS = 100  # how often the loop looks at its stop flag when idle
MAX_REQUESTS_PER_TURN = 64  # then events get their turn


def client_label(routing_id: bytes) -> str:
    """A printable name for a routing id (our clients use ASCII ids; others get hex)."""
    try:
        text = routing_id.decode("ascii")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return routing_id.hex()


def split_envelope(frames: list) -> tuple[list, list]:
    """ROUTER frames -> (envelope, body). The envelope is the routing id, plus the empty
    delimiter frame that REQ sockets add (echoed back so REQ clients work too)."""
    if len(frames) >= 3 and frame_nbytes(frames[1]) == 0:
        return frames[:2], frames[2:]
    return frames[:1], frames[1:]


class RouterLoop:
    """Serves ``socket`` (a bound ROUTER) until ``stop`` is set; ``ctx`` is the
    ServerContext, whose EventBus supplies outgoing events."""

    def __init__(self, ctx, socket: zmq.Socket):
        self.ctx = ctx
        self.socket = socket
        self.bus = ctx.events

    def run(self, stop: threading.Event) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.bus.wake_socket, zmq.POLLIN)
        while not stop.is_set():
            ready = dict(poller.poll(POLL_INTERVAL_MS))
            if self.socket in ready:
                self._serve_requests()
            self.send_events()

    def _serve_requests(self) -> None:
        for _ in range(MAX_REQUESTS_PER_TURN):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.handle(frames)

    def send_events(self) -> None:
        for client, frames in self.bus.take():
            self._send([client], frames)

    def handle(self, frames: list) -> None:
        """Answer one request (frames as received from the ROUTER)."""
        started = time.perf_counter()
        envelope, body = split_envelope(frames)
        client = bytes(envelope[0].bytes if hasattr(envelope[0], "bytes") else envelope[0])
        reply, method, request_id, code = self._answer(client, body)
        self._send(envelope, reply)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        fields = {"method": method, "request": request_id, "client": client_label(client), "code": code,
                  "bytes": sum(frame_nbytes(f) for f in body), "ms": elapsed_ms}
        if code is None:
            log.debug("request served", extra=fields)
        else:
            log.info("request refused: %s", code, extra=fields)

    def _answer(self, client: bytes, body: list) -> tuple[list, str | None, str | None, str | None]:
        """-> (reply frames, method, request id, error code or None)."""
        limits = self.ctx.limits
        total = sum(frame_nbytes(f) for f in body)
        if total > limits.max_message_bytes:
            request_id = peek_request_id(body[0]) if body else None
            message = (f"the message is {total / 2**20:.1f} MiB; this server accepts at most "
                       f"{limits.max_message_bytes / 2**20:g} MiB per message")
            return encode_error(request_id, ErrorCode.TOO_LARGE, message), None, request_id, ErrorCode.TOO_LARGE.value
        try:
            request = decode_request(body)
        except ProtocolError as exc:
            return self._error(exc.request_id, exc.code, exc.message, exc.details), None, exc.request_id, exc.code
        handler = self.ctx.registry.get(request.method)
        if handler is None:
            message = (f"unknown method {request.method!r}; this server offers "
                       f"{', '.join(self.ctx.registry.implemented())}")
            return (encode_error(request.id, ErrorCode.UNKNOWN_METHOD, message), request.method, request.id,
                    ErrorCode.UNKNOWN_METHOD.value)
        try:
            result = handler(self.ctx, Call(request.method, request.params, client, request.id))
            if not isinstance(result, dict):
                raise TypeError(f"handler of {request.method} returned a {type(result).__name__}, not a map")
            return encode_result(request.id, result), request.method, request.id, None
        except UserError as exc:
            return self._error(request.id, exc.code, exc.message, exc.details), request.method, request.id, exc.code
        except Exception as exc:
            storage = storage_error(exc, self.ctx.config.data_dir)
            if storage is not None:  # a full or read-only disk is the machine's state, not a bug
                log.error("%s failed: %s", request.method, exc, extra={"method": request.method})
                return (self._error(request.id, storage.code, storage.message, storage.details), request.method,
                        request.id, storage.code)
            log.exception("handler failed", extra={"method": request.method, "request": request.id})
            message = (f"the server failed while handling {request.method} ({type(exc).__name__}); "
                       "the server log has the details")
            return encode_error(request.id, ErrorCode.INTERNAL, message), request.method, request.id, "internal"

    @staticmethod
    def _error(request_id, code: str, message: str, details: dict) -> list:
        try:
            return encode_error(request_id, code, message, **details)
        except (TypeError, ValueError):  # details that msgpack cannot carry
            return encode_error(request_id, code, message)

    def _send(self, envelope: list, frames: list) -> None:
        try:
            self.socket.send_multipart([*envelope, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # the peer's queue is full or it is gone: drop, like ROUTER does
            log.warning("could not send to a client: %s", exc)

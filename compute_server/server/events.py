"""Getting job events from worker threads to the right client.

ZeroMQ sockets are not thread-safe and only the network thread may touch the ROUTER.
Worker threads therefore put events on a queue and poke the network thread through an
inproc PUSH/PULL pair; the network thread encodes them and sends each to the client that
watches the job (the one that submitted it, or the last one that asked ``job.status``
with ``watch: true``).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading

import zmq

from shared.protocol import FINAL_EVENTS, encode_event

log = logging.getLogger(__name__)

_bus_numbers = itertools.count()


class EventBus:
    """Thread-safe ``emit``; ``watch``/``take`` belong to the network thread.

    ``wake_socket`` is the PULL socket the network loop polls beside the ROUTER.
    """

    def __init__(self, context: zmq.Context):
        endpoint = f"inproc://headsplat-events-{next(_bus_numbers)}-{id(self)}"
        self.wake_socket = context.socket(zmq.PULL)
        self.wake_socket.setsockopt(zmq.LINGER, 0)
        self.wake_socket.bind(endpoint)
        self._push = context.socket(zmq.PUSH)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.setsockopt(zmq.SNDHWM, 64)
        self._push.connect(endpoint)
        self._push_lock = threading.Lock()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._watchers: dict[str, bytes] = {}

    def emit(self, job_id: str, name: str, params: dict) -> None:
        """Queue an event for ``job_id``'s watcher (any thread; never blocks)."""
        self._events.put((job_id, name, params))
        with self._push_lock:
            try:
                self._push.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # the loop already has wake-ups pending; it will drain the queue
            except zmq.ZMQError:
                pass  # closed during shutdown

    def watch(self, job_id: str, client: bytes) -> None:
        """Send ``job_id``'s future events to ``client`` (a routing id)."""
        self._watchers[job_id] = client

    def watcher(self, job_id: str) -> bytes | None:
        return self._watchers.get(job_id)

    def take(self) -> list[tuple[bytes, list]]:
        """Pending events as ``(client routing id, frames)``; events of unwatched jobs
        are dropped. Also clears the wake-up signals."""
        while True:
            try:
                self.wake_socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        out = []
        while True:
            try:
                job_id, name, params = self._events.get_nowait()
            except queue.Empty:
                return out
            client = self._watchers.get(job_id)
            if name in FINAL_EVENTS:
                self._watchers.pop(job_id, None)
            if client is None:
                continue
            try:
                out.append((client, encode_event(name, params)))
            except (TypeError, ValueError) as exc:  # a job put something unsendable in an event
                log.error("dropping an event that cannot be encoded: %s", exc, extra={"job": job_id})

    def close(self) -> None:
        with self._push_lock:
            self._push.close(linger=0)
        self.wake_socket.close(linger=0)

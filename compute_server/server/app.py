"""Assembling a server: data directory, avatar store, job manager, methods, socket, loop.

``Server(config)`` opens everything (and raises UserError with an actionable sentence if
it cannot: port taken, data directory locked, bad keys); ``serve_forever()`` runs the
loop in the calling thread until ``stop()``; ``start_background()`` runs it in a thread
(tests, the embedded demo server). Shutdown cancels the running job, records every job
and closes the sockets.

Plugins: each module in ``PLUGIN_MODULES`` that exists, then each module named in
``ServerConfig.plugins`` (``headsplat serve --plugin MODULE``), defines ``register(ctx)``,
which adds methods/job kinds to ``ctx.registry``, providers to ``ctx.providers`` and error
classifiers to ``ctx.jobs.error_classifiers``. A missing built-in plugin module is skipped;
a named plugin that cannot be imported, or a broken one, stops the server (its error must
be fixed, not hidden).
"""

from __future__ import annotations

import importlib
import logging
import threading

import zmq

from compute_server.device import describe_device, resolve_device
from compute_server.errors import UserError
from compute_server.jobs.manager import JobManager
from compute_server.jobs.persistence import JobRecordStore
from compute_server.storage.avatar_store import AvatarStore
from compute_server.storage.data_dir import DataDir, DataDirLock

from .config import ServerConfig
from .context import ServerContext
from .events import EventBus
from .methods import register_builtin_methods
from .registry import MethodRegistry
from .router import RouterLoop
from .security import check_bind_allowed, load_server_keys, make_curve_server, start_authenticator

log = logging.getLogger(__name__)

PLUGIN_MODULES: tuple[str, ...] = ("compute_server.pipeline.plugin", "compute_server.doctor.plugin")

HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
SEND_LINGER_MS = 1000  # on shutdown, how long queued replies/events may still go out


class Server:
    """One HeadSplat server (see the module docstring). ``endpoint`` is the bound
    address (with the real port when the config asked for ``*``)."""

    def __init__(self, config: ServerConfig):
        check_bind_allowed(config)
        self.config = config
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._zmq = zmq.Context()
        self._auth = None
        self.socket = None
        self.events = None
        self.data = DataDir.open(config.data_dir)
        self._lock = DataDirLock(self.data.lock_file)
        self._lock.acquire()
        try:
            self._open()
        except BaseException:
            self._release()
            raise

    def _open(self) -> None:
        config = self.config
        device = resolve_device(config.device)
        store = AvatarStore(self.data.avatars)
        store.recover()
        self.events = EventBus(self._zmq)
        manager_class = JobManager
        if config.cluster:  # jobs run on a Ray cluster's workers (compute_server/cluster/)
            from compute_server.cluster.manager import ClusterJobManager as manager_class
        jobs = manager_class(JobRecordStore(self.data.jobs), store=store, device=device,
                          max_queued=config.limits.max_queued_jobs, emit=self.events.emit,
                          retention=config.retention, min_free_bytes=config.limits.min_free_bytes)
        jobs.recover()
        registry = MethodRegistry()
        register_builtin_methods(registry)
        self.ctx = ServerContext(config=config, store=store, jobs=jobs, events=self.events, registry=registry,
                                 device=device, device_description=describe_device(device),
                                 secure=config.curve is not None)
        self._load_plugins()
        if config.cluster:
            from compute_server.cluster.setup import attach_cluster
            self.ctx.cluster = attach_cluster(self.ctx, jobs)
        self.socket = self._bind()
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._loop = RouterLoop(self.ctx, self.socket)
        jobs.start()
        log.info("listening on %s (data %s, device %s%s)", self.endpoint, self.data.root,
                 self.ctx.device_description, ", CURVE" if config.curve else "")

    def _load_plugins(self) -> None:
        for name in PLUGIN_MODULES:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name == name:
                    log.debug("plugin %s is not installed", name)
                    continue
                raise
            module.register(self.ctx)
            log.info("loaded plugin %s", name)
        for name in self.config.plugins:
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                raise UserError("bad_request", f"plugin {name!r} could not be imported ({exc}); check the "
                                               "module name given to --plugin and that it is on the Python path") from exc
            if not callable(getattr(module, "register", None)):
                raise UserError("bad_request", f"plugin {name!r} has no register(ctx) function")
            module.register(self.ctx)
            log.info("loaded plugin %s", name)

    def _bind(self) -> zmq.Socket:
        config = self.config
        sock = self._zmq.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, SEND_LINGER_MS)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client takes over its routing id
        sock.setsockopt(zmq.MAXMSGSIZE, config.hard_max_frame_bytes)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if config.curve is not None:
            public, secret = load_server_keys(config.curve)
            self._auth = start_authenticator(self._zmq, config.curve)
            make_curve_server(sock, public, secret)
        try:
            sock.bind(config.bind)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise UserError("busy", f"cannot listen on {config.bind}: {exc.strerror}; is another server running "
                                    "there? Choose another address with --bind") from None
        return sock

    # ------------------------------------------------------------------ running

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop()``; then shut down cleanly."""
        try:
            self._loop.run(self._stop)
        finally:
            self._shutdown()

    def start_background(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name="headsplat-router", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Ask the loop to stop (any thread, signal handlers included)."""
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _shutdown(self) -> None:
        log.info("shutting down")
        self.ctx.jobs.shutdown(self.config.shutdown_grace_s)
        self._loop.send_events()  # the job.cancelled / job.failed events of the shutdown
        if self.ctx.cluster is not None:
            self.ctx.cluster.close()
        self._release()
        log.info("stopped")

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.socket is not None:
            self.socket.close(linger=SEND_LINGER_MS)
        if self.events is not None:
            self.events.close()
        if self._auth is not None:
            self._auth.stop()
        self._zmq.term()
        self._lock.release()

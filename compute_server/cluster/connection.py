"""Joining a Ray cluster as the front, and knowing whether it is still there.

Why a watcher thread: every Ray call that needs the cluster's control service (GCS)
blocks while that service is gone, and ``server.info`` must answer at once. A daemon
thread asks the cluster for its nodes every couple of seconds; everything else reads its
last answer. When the answers stop, the cluster is reported unreachable.

Why ``RAY_gcs_rpc_server_reconnect_timeout_s`` is raised: by default a Ray driver whose
GCS has been gone for 60 s ends its own process, and the front is a driver; the front
must instead stay up and say that the cluster is gone.

Ray Client (``ray://HOST:10001``, a front on a machine that is not a node): the calls
go over one gRPC connection to the head, which runs the driver for the front. Two things
differ. When the head goes away, the client blocks every call while it tries to
reconnect for ``RAY_CLIENT_RECONNECT_GRACE_PERIOD`` (30 s by default), then shuts itself
down for good; the front shortens that to ``UNREACHABLE_AFTER_S``, so a lost cluster
fails its jobs as soon as it is reported. And once the client has shut down every call
raises (``ConnectionError``, or a plain ``Exception`` saying it is not connected), so
``reachable`` also asks whether the client is still connected, and the runner turns
whatever a job raised then into the "cluster unreachable" error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from compute_server.errors import UserError

log = logging.getLogger(__name__)

PROBE_EVERY_S = 2.0
UNREACHABLE_AFTER_S = 6.0      # no answer from the cluster for this long: it is gone
GCS_RECONNECT_TIMEOUT_S = 10**8  # never end the front's process for a lost cluster
NAMESPACE = "headsplat"
CLIENT_PREFIX = "ray://"
# what Ray Client's proxier on the head says when it could not start a client's own server
CLIENT_SERVER_START_FAILURES = ("Starting Ray client server failed", "start_specific_server")


@dataclass
class ClusterSnapshot:
    """The cluster as last seen: alive nodes, their CPUs and GPUs (totals and free)."""

    nodes: list[dict] = field(default_factory=list)
    cpus: float = 0.0
    gpus: float = 0.0
    free_cpus: float = 0.0
    free_gpus: float = 0.0
    seen_at: float = 0.0


def is_client_address(address: str) -> bool:
    """A Ray Client address (``ray://HOST:PORT``): the front joins through the head's
    client server instead of being a node of the cluster."""
    return address.startswith(CLIENT_PREFIX)


def import_ray(*, client: bool = False):
    """``ray``, or a UserError that says how to install it. ``client``: Ray Client (its
    ``grpcio`` comes with ``ray[client]``, which the ``cluster`` extra installs)."""
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(GCS_RECONNECT_TIMEOUT_S))
    if client:
        os.environ.setdefault("RAY_CLIENT_RECONNECT_GRACE_PERIOD", str(int(UNREACHABLE_AFTER_S)))
    try:
        import ray
        if client:
            import grpc  # noqa: F401 - Ray Client's transport; missing with plain `pip install ray`
    except ModuleNotFoundError as exc:
        raise UserError("unavailable", f"--cluster needs Ray on the front and on every worker ({exc.name} is "
                                       "missing): pip install 'headsplat[cluster]'") from None
    return ray


class ClusterConnection:
    """The front's membership in a cluster (see the module docstring). ``address``: what
    was asked for: ``auto`` or ``HOST:PORT`` of the head (this machine must then be a node
    of the cluster, as every Ray driver), or ``ray://HOST:PORT``, the head's Ray Client
    server (any machine that reaches it)."""

    def __init__(self, address: str):
        self.address = address
        self.via_client = is_client_address(address)
        self.ray = import_ray(client=self.via_client)
        try:
            self._init()
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            reach = (" and let this machine reach the head's Ray Client port (10001 unless "
                     "--ray-client-server-port says otherwise)") if self.via_client else ""
            raise UserError("unavailable", f"cannot join the Ray cluster at {address!r}: {exc}. Start it first "
                                           f"(`ray start --head` on the head node; see docs/cluster.md){reach}") from None
        self.snapshot = ClusterSnapshot()
        self._probe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="headsplat-cluster-watch", daemon=True)
        self._thread.start()

    def _init(self) -> None:
        """``ray.init``; through Ray Client, tried up to three times when the head's proxier could
        not start this client's own server process (it reports "Starting Ray client server
        failed", or a traceback through its ``start_specific_server`` when that process died
        while starting and is a zombie; both seen on a loaded head, and the next try gets a
        fresh process on the next port)."""
        for attempt in range(3):
            try:
                self.ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False,
                              logging_level=logging.WARNING, configure_logging=False)
                return
            except (ConnectionError, RuntimeError) as exc:
                if not self.via_client or not _client_server_did_not_start(exc) or attempt == 2:
                    raise
                log.warning("the Ray Client server for this front did not start (%s); trying again", exc)
                try:
                    self.ray.shutdown()   # leave the half-made client connection before the next try
                except Exception:  # noqa: BLE001 - nothing was connected
                    pass
                time.sleep(2.0)

    # ------------------------------------------------------------------ health

    @property
    def reachable(self) -> bool:
        if self.via_client and not self.ray.is_initialized():  # the client gave up: it never reconnects
            return False
        return time.time() - self.snapshot.seen_at < UNREACHABLE_AFTER_S

    def problem(self) -> str | None:
        """A sentence when the cluster cannot run jobs, else None."""
        if self.via_client and not self.ray.is_initialized():
            return (f"the Ray Client connection to the Ray cluster at {self.address} was lost: jobs cannot run; "
                    "start the cluster again and restart the front (headsplat serve --cluster)")
        if not self.reachable:
            return (f"the Ray cluster at {self.address} has not answered for "
                    f"{time.time() - self.snapshot.seen_at:.0f} s: jobs cannot run; start the cluster again "
                    "and restart the front (headsplat serve --cluster)")
        return None

    def unavailable_error(self) -> UserError:
        return UserError("unavailable", self.problem() or f"the Ray cluster at {self.address} is unreachable")

    def _probe(self) -> None:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        total = self.ray.cluster_resources()
        free = self.ray.available_resources()
        self.snapshot = ClusterSnapshot(
            nodes=[{"address": n.get("NodeManagerAddress", "?"), "cpus": n.get("Resources", {}).get("CPU", 0.0),
                    "gpus": n.get("Resources", {}).get("GPU", 0.0)} for n in nodes],
            cpus=float(total.get("CPU", 0.0)), gpus=float(total.get("GPU", 0.0)),
            free_cpus=float(free.get("CPU", 0.0)), free_gpus=float(free.get("GPU", 0.0)), seen_at=time.time())

    def _watch(self) -> None:
        was_reachable = True
        while not self._stop.wait(PROBE_EVERY_S):
            try:
                self._probe()
            except Exception as exc:  # noqa: BLE001 - a lost cluster raises whatever Ray raises
                log.debug("cluster probe failed: %s", exc)
            if was_reachable and not self.reachable:
                log.error("%s", self.problem())
            elif not was_reachable and self.reachable:
                log.warning("the Ray cluster at %s answers again", self.address)
            was_reachable = self.reachable

    def close(self) -> None:
        self._stop.set()
        if self.reachable:
            try:
                self.ray.shutdown()
            except Exception as exc:  # noqa: BLE001 - leaving a cluster must not stop a shutdown
                log.warning("leaving the Ray cluster: %s", exc)


def _client_server_did_not_start(exc: BaseException) -> bool:
    """True when Ray Client's proxier on the head failed to start this client's server
    process: a failure of that one start, worth another try, unlike an unreachable head."""
    return any(marker in str(exc) for marker in CLIENT_SERVER_START_FAILURES)

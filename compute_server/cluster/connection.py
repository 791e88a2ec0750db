"""Joining a Ray cluster as the front, and knowing whether it is still there.

Why a watcher thread: every Ray call that needs the cluster's control service (GCS)
blocks while that service is gone, and ``server.info`` must answer at once. A daemon
thread asks the cluster for its nodes every couple of seconds; everything else reads its
last answer. When the answers stop, the cluster is reported unreachable.

Why ``RAY_gcs_rpc_server_reconnect_timeout_s`` is raised: by default a Ray driver whose
GCS has been gone for 60 s ends its own process, and the front is a driver; the front
must instead stay up and say that the cluster is gone.
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


@dataclass
class ClusterSnapshot:
    """The cluster as last seen: alive nodes, their CPUs and GPUs (totals and free)."""

    nodes: list[dict] = field(default_factory=list)
    cpus: float = 0.0
    gpus: float = 0.0
    free_cpus: float = 0.0
    free_gpus: float = 0.0
    seen_at: float = 0.0


def import_ray():
    """``ray``, or a UserError that says how to install it."""
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(GCS_RECONNECT_TIMEOUT_S))
    try:
        import ray
    except ModuleNotFoundError:
        raise UserError("unavailable", "--cluster needs Ray on the front and on every worker: "
                                       "pip install 'headsplat[cluster]'") from None
    return ray


class ClusterConnection:
    """The front's membership in a cluster (see the module docstring). ``address``: what
    was asked for (``auto`` or ``HOST:PORT`` of the head; this machine must be a node of
    the cluster, as every Ray driver)."""

    def __init__(self, address: str):
        self.address = address
        self.ray = import_ray()
        try:
            self.ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                          logging_level=logging.WARNING, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError("unavailable", f"cannot join the Ray cluster at {address!r}: {exc}. Start it first "
                                           "(`ray start --head` on the head node; see docs/cluster.md)") from None
        self.snapshot = ClusterSnapshot()
        self._probe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="headsplat-cluster-watch", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ health

    @property
    def reachable(self) -> bool:
        return time.time() - self.snapshot.seen_at < UNREACHABLE_AFTER_S

    def problem(self) -> str | None:
        """A sentence when the cluster cannot run jobs, else None."""
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

"""The front's pool of job-worker actors: which are free, who they are.

One actor per GPU of the cluster (each with ``num_gpus=1``, or the fraction
``--worker-gpus`` asks for), or, on a cluster without GPUs, one per CPU (``num_cpus=1``
and one torch thread each, so workers sharing a machine do not fight over its cores).
Actors are restarted by Ray when their process dies (``max_restarts=-1``); the front
re-runs the lost work itself (dispatch.py), so it can tell the user.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from compute_server.errors import UserError

from .connection import ClusterConnection
from .worker import JobWorker

log = logging.getLogger(__name__)

ACTOR_CONCURRENCY = 4    # one thread runs the job, the others answer events/cancel/identity
START_TIMEOUT_S = 180.0  # actors import torch and load the head model before they answer
RESTART_GIVE_UP_S = 600.0  # a worker not back this long after its process died is left out
RELEASE_WAIT_S = 5.0  # how long close() waits for the workers to remove their folders


@dataclass
class PooledWorker:
    """One actor as the front sees it. ``identity``: its last answer to ``identity()``."""

    handle: object
    name: str
    identity: dict = field(default_factory=dict)
    job: str | None = None          # the front job it works for now
    lost_at: float | None = None    # when its process died (Ray restarts it)
    identity_ref: object = None     # a pending identity() call after a restart

    def describe(self) -> dict:
        return {"name": self.name, "pid": self.identity.get("pid"), "node": self.identity.get("node"),
                "device": self.identity.get("device"), "job": self.job,
                "jobs_done": self.identity.get("jobs_done", 0), "restarting": self.lost_at is not None,
                "root": self.identity.get("root")}


class WorkerPool:
    """See the module docstring."""

    def __init__(self, connection: ClusterConnection, config, *, workers: int | None = None,
                 worker_gpus: float | None = None):
        self.connection = connection
        ray = connection.ray
        snapshot = connection.snapshot
        gpus = worker_gpus if worker_gpus is not None else (1.0 if snapshot.gpus >= 1 else 0.0)
        if workers is None:
            workers = int(snapshot.gpus // gpus) if gpus > 0 else int(snapshot.cpus)
        if workers < 1:
            raise UserError("unavailable", f"the Ray cluster at {connection.address} has no room for a worker "
                                           f"({snapshot.cpus:g} CPUs, {snapshot.gpus:g} GPUs)")
        self.resources = {"num_cpus": 0 if gpus > 0 else 1, "num_gpus": gpus}
        actor_class = ray.remote(JobWorker).options(
            max_restarts=-1, max_task_retries=0, max_concurrency=ACTOR_CONCURRENCY, **self.resources)
        self._cond = threading.Condition()
        self.workers: list[PooledWorker] = []
        for i in range(workers):
            name = f"w{i}"
            handle = actor_class.remote(config, name, 1 if gpus == 0 else 4)
            self.workers.append(PooledWorker(handle, name))
        pending = {w.handle.identity.remote(): w for w in self.workers}
        try:
            for ref, worker in pending.items():
                worker.identity = ray.get(ref, timeout=START_TIMEOUT_S)
        except Exception as exc:
            self.close()
            raise UserError("unavailable", f"the cluster's job workers did not start ({type(exc).__name__}: "
                                           f"{str(exc)[:300]}); is HeadSplat installed on every node, and does "
                                           "the cluster have the CPUs or GPUs asked for?") from None
        self._free: list[PooledWorker] = list(self.workers)
        log.info("cluster: %d job worker(s) ready: %s", len(self.workers),
                 ", ".join(f"{w.name} (pid {w.identity.get('pid')} on {w.identity.get('node')}, "
                           f"{w.identity.get('device')})" for w in self.workers))

    # ------------------------------------------------------------------ lending

    def acquire(self, job: str, *, wait: bool = True, give_up: Callable[[], bool] = lambda: False,
                poll_s: float = 0.1) -> PooledWorker | None:
        """A free worker for ``job`` (the longest-free first); with ``wait``, blocks until
        one is free or ``give_up()`` is true (-> None)."""
        with self._cond:
            self._refresh()
            while not self._free:
                if not wait or give_up():
                    return None
                self._cond.wait(poll_s)
                self._refresh()
            worker = self._free.pop(0)
            worker.job = job
            return worker

    def release(self, worker: PooledWorker, *, lost: bool = False) -> None:
        """Give a worker back. ``lost``: its process died; Ray restarts it, and it is lent
        again once the restarted process answers."""
        with self._cond:
            worker.job = None
            if lost:
                worker.lost_at = time.time()
                worker.identity_ref = worker.handle.identity.remote()
            else:
                self._free.append(worker)
            self._cond.notify_all()

    def free_count(self) -> int:
        with self._cond:
            return len(self._free)

    def _refresh(self) -> None:
        """Lend restarted workers again once they answer (with their new pid); never
        blocks. The caller holds the lock."""
        ray = self.connection.ray
        for worker in self.workers:
            if worker.identity_ref is None:
                continue
            ready, _ = ray.wait([worker.identity_ref], timeout=0)
            if not ready:
                continue
            try:
                worker.identity = ray.get(worker.identity_ref)
            except Exception as exc:  # noqa: BLE001 - still restarting: ask again later
                log.debug("worker %s is not back yet: %s", worker.name, exc)
                if time.time() - worker.lost_at > RESTART_GIVE_UP_S:
                    worker.identity_ref = None  # gone for good: never lent again
                else:
                    worker.identity_ref = worker.handle.identity.remote()
                continue
            log.info("cluster worker %s is back (pid %s)", worker.name, worker.identity.get("pid"))
            worker.identity_ref, worker.lost_at = None, None
            self._free.append(worker)

    def describe(self) -> list[dict]:
        with self._cond:
            if self.connection.reachable:
                self._refresh()
            return [w.describe() for w in self.workers]

    def close(self) -> None:
        """Stop the actors (they would also go with the front's process), after asking each
        to remove its folder (a few seconds at most: a busy or lost worker is stopped anyway)."""
        if not self.connection.reachable:
            return
        ray = self.connection.ray
        try:
            ray.wait([w.handle.release.remote() for w in self.workers], num_returns=len(self.workers),
                     timeout=RELEASE_WAIT_S)
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.debug("asking the workers to remove their folders: %s", exc)
        for worker in self.workers:
            try:
                ray.kill(worker.handle, no_restart=True)
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                log.debug("stopping worker %s: %s", worker.name, exc)

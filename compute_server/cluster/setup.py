"""Wiring a Server to a Ray cluster: join it, start the workers, and make every job kind
run there.

``attach_cluster`` is called by the Server once its plugins have registered their job
kinds; each kind keeps its ``validate`` (on the front's network thread, as before) and
the job manager queues it with a ``run`` that sends the job to the cluster. Nothing else
of the server changes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import replace
from functools import partial

from compute_server.errors import JobCancelled, UserError

from .avatar_shipping import publish_payload, read_payload
from .connection import ClusterConnection
from .dispatch import outcome_result, run_on_worker, task_id
from .manager import ClusterJobManager
from .pool import WorkerPool
from .render_split import RenderSplit, shot_cameras
from .worker import WorkerTask

log = logging.getLogger(__name__)

SHIPPED_AVATARS_KEPT = 8  # object-store copies of avatars the front keeps for the next job


class AvatarShipper:
    """Object-store copies of the front's avatars, made once and reused by later jobs
    (the newest few are kept; Ray frees the others once no task holds them)."""

    def __init__(self, ray, store):
        self.ray, self.store = ray, store
        self._refs: OrderedDict[str, object] = OrderedDict()

    def ref(self, avatar_id: str):
        ref = self._refs.pop(avatar_id, None)
        if ref is None:
            ref = self.ray.put(read_payload(self.store, avatar_id))
        self._refs[avatar_id] = ref
        while len(self._refs) > SHIPPED_AVATARS_KEPT:
            self._refs.popitem(last=False)
        return ref


class ClusterRunner:
    """Runs the front's jobs on the pool (the ``run`` of every job kind)."""

    def __init__(self, pool: WorkerPool, jobs: ClusterJobManager, store, services):
        self.pool, self.jobs, self.store, self.services = pool, jobs, store, services
        self.shipper = AvatarShipper(pool.connection.ray, store)

    def run_for(self, kind):
        if kind.name == "render.frames":
            return lambda ctx, req: self._guarded(self.render, ctx, req)
        return lambda ctx, job_input: self._guarded(partial(self.whole, kind), ctx, job_input)

    def _guarded(self, run, ctx, job_input) -> dict:
        """``run``, with whatever Ray raised for a cluster that is gone (under Ray Client a
        ``ConnectionError`` or a bare ``Exception``) turned into the one clear error."""
        connection = self.pool.connection
        if not connection.reachable:
            raise connection.unavailable_error()
        try:
            return run(ctx, job_input)
        except (UserError, JobCancelled):
            raise
        except Exception:
            if not connection.reachable:
                raise connection.unavailable_error() from None
            raise

    def _avatars(self, ids) -> dict:
        return {avatar_id: [self.shipper.ref(avatar_id)] for avatar_id in ids}

    def _hooks(self, ctx):
        def on_worker(worker):
            if self.jobs.note_worker(ctx.job, worker.name):
                ctx.progress("starting", 0.0, f"running on cluster worker {worker.name} (pid "
                                              f"{worker.identity.get('pid')} on {worker.identity.get('node')})")

        def note_retry(message: str, fraction: float = 0.0):
            ctx.progress("retrying", fraction, message)
        return on_worker, note_retry

    def whole(self, kind, ctx, job_input) -> dict:
        """A job that runs on one worker from start to end."""
        avatars = self._avatars(kind.avatars_used(job_input) if kind.avatars_used else ())
        on_worker, note_retry = self._hooks(ctx)
        outcome = run_on_worker(self.pool, ctx, lambda: WorkerTask(task_id(ctx.job), ctx.job, kind.name, job_input,
                                                                   avatars),
                                on_worker=on_worker, note_retry=note_retry)
        result = outcome_result(outcome)
        for name, data in outcome.files.items():
            (ctx.output_dir / name).write_bytes(data)
        if outcome.avatar is not None:  # the front's data directory is the one that counts
            publish_payload(ctx.store, outcome.avatar)
        return result

    def render(self, ctx, req) -> dict:
        cameras = shot_cameras(self.store, req, self.services.head_models)
        on_worker, note_retry = self._hooks(ctx)
        return RenderSplit(self.pool, ctx, req, cameras, self._avatars([req.avatar]), on_worker=on_worker,
                           note_retry=note_retry).run()


class ClusterView:
    """What ``server.info`` shows of the cluster."""

    def __init__(self, connection: ClusterConnection, pool: WorkerPool):
        self.connection, self.pool = connection, pool

    def describe(self) -> dict:
        snap = self.connection.snapshot
        workers = self.pool.describe()
        return {"address": self.connection.address, "reachable": self.connection.reachable,
                "problem": self.connection.problem(), "nodes": snap.nodes, "cpus": snap.cpus, "gpus": snap.gpus,
                "workers": workers, "free_workers": sum(1 for w in workers if not w["job"])}

    def close(self) -> None:
        self.pool.close()
        self.connection.close()


def attach_cluster(server_ctx, jobs: ClusterJobManager) -> ClusterView:
    """Join ``server_ctx.config.cluster``, start its workers and route every job kind there."""
    config = server_ctx.config
    connection = ClusterConnection(config.cluster)
    try:
        pool = WorkerPool(connection, config, workers=config.cluster_workers, worker_gpus=config.worker_gpus)
    except BaseException:
        connection.close()
        raise
    runner = ClusterRunner(pool, jobs, server_ctx.store, getattr(server_ctx, "pipeline", None))
    jobs.cluster_kinds = {name: replace(kind, run=runner.run_for(kind))
                          for name, kind in server_ctx.registry.job_kinds.items()}
    jobs.concurrency = len(pool.workers)
    jobs.cluster_problem = connection.problem
    return ClusterView(connection, pool)

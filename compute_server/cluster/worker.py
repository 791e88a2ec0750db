"""The job worker that lives in a Ray actor: one per GPU (or CPU) of the cluster.

Why an actor and not plain tasks: an actor is a long-lived process, so the head models
and diffusion weights it loads stay warm for the next job, and the avatars it fetched
stay in its cache. It runs the same pipeline functions as the embedded server's worker
thread, found the same way (the plugins register their job kinds into a registry), with
a real JobContext whose reports are buffered here until the front collects them.

The actor runs with several threads (Ray's ``max_concurrency``): one runs the job, the
others answer ``events``, ``cancel`` and ``identity`` while it does, which is how a
cancel reaches a running job within the 0.5 s its checks allow.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compute_server.errors import JobCancelled, UserError
from compute_server.jobs.context import JobContext

from .avatar_shipping import AvatarPayload, publish_payload, read_payload

JOB_PLUGIN_MODULES = ("compute_server.pipeline.plugin",)
# Every worker's folder (its avatar cache and job outputs) lives in one folder per user,
# named "<worker>-pid<pid>-<random>", so that a worker can tell the folders of dead ones.
WORKER_ROOTS = "headsplat-workers"
_ROOT_PID = re.compile(r"-pid(\d+)-")


def worker_roots_parent() -> Path:
    """``<tmp>/headsplat-workers-<user id>``: per user, so two people's clusters on one
    machine never share (or fail to write) one folder."""
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"{WORKER_ROOTS}-{user}"


def make_worker_root(name: str, parent: Path | None = None) -> Path:
    """A fresh folder for worker ``name``, after removing those of workers that are gone.

    Why: a worker's folder caches every avatar it was sent, and Ray stops actors by killing
    them (``ray.kill``, a crash, a restart after a lost node), so no worker can be trusted
    to clean up after itself; the next worker on the machine does it instead.
    """
    parent = parent or worker_roots_parent()
    parent.mkdir(parents=True, exist_ok=True)
    remove_dead_worker_roots(parent)
    return Path(tempfile.mkdtemp(prefix=f"{name}-pid{os.getpid()}-", dir=parent))


def remove_dead_worker_roots(parent: Path) -> list[Path]:
    """Remove the folders under ``parent`` whose worker process no longer runs; returns them."""
    removed = []
    for folder in parent.iterdir():
        match = _ROOT_PID.search(folder.name)
        if match and folder.is_dir() and not _process_alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


@dataclass
class WorkerTask:
    """One piece of work for a worker.

    task_id: unique per attempt (cancel and events name it).  job: the front's job id.
    kind: the job kind's name (``render.frames``...).  job_input: what the kind's
    ``validate`` returned on the front (for a render chunk: a request for those frames).
    avatars: avatar id -> ``[ObjectRef of AvatarPayload]`` for the avatars the job reads;
    the ref sits in a list so that Ray hands it over unresolved and a worker that has the
    avatar cached never fetches it.  return_files: send back the files the job left in
    its output folder (render chunks send their frames as events instead).
    """

    task_id: str
    job: str
    kind: str
    job_input: Any
    avatars: dict[str, list] = field(default_factory=dict)
    return_files: bool = True


@dataclass
class TaskOutcome:
    """What came of a task. status: done, cancelled, user_error or failed.

    error: ``{"code", "message", "details"}`` of a user_error.  exception: what a failed
    task raised (or a RuntimeError with its text when it does not pickle).  files: name ->
    bytes from the output folder.  avatar: an avatar the task published, for the front to
    publish in its own store.
    """

    status: str
    worker: str
    result: dict | None = None
    error: dict | None = None
    exception: BaseException | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    avatar: AvatarPayload | None = None
    started_at: float = 0.0
    finished_at: float = 0.0


class _EventBuffer:
    """A running task's reports, kept until the front drains them. Reports that were
    throttled away (``send`` false) only matter for the latest stage, so only the newest
    of them is kept."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sent: list[dict] = []
        self._latest_unsent: dict | None = None

    def add(self, **report) -> None:
        with self._lock:
            if report.get("send"):
                self._sent.append(report)
                self._latest_unsent = None
            elif report.get("stage") is not None:
                self._latest_unsent = report

    def drain(self) -> list[dict]:
        with self._lock:
            out = self._sent + ([self._latest_unsent] if self._latest_unsent else [])
            self._sent, self._latest_unsent = [], None
            return out


class JobWorker:
    """See the module docstring. Wrapped with ``ray.remote`` by pool.py.

    config: the front's ServerConfig (head models, models config, test methods).
    name: how job status and server.info name this worker.  torch_threads: CPU threads
    torch may use here (1 when workers share a machine's cores).
    """

    def __init__(self, config, name: str, torch_threads: int = 1):
        import torch

        from compute_server.device import describe_device, resolve_device
        from compute_server.server.context import ServerContext
        from compute_server.server.registry import MethodRegistry
        from compute_server.storage.avatar_store import AvatarStore

        torch.set_num_threads(max(1, int(torch_threads)))
        self.name = name
        self.root = make_worker_root(name)
        self.store = AvatarStore(self.root / "avatars")  # this worker's avatar cache
        self.device = resolve_device("cuda" if _assigned_gpus() else "cpu")
        worker_config = replace(config, data_dir=self.root, curve=None, cluster=None)
        self.ctx = ServerContext(config=worker_config, store=self.store, jobs=None, events=None,
                                 registry=MethodRegistry(), device=self.device,
                                 device_description=describe_device(self.device))
        modules = JOB_PLUGIN_MODULES + tuple(config.plugins)   # the front's --plugin modules too
        for module in modules:
            importlib.import_module(module).register(self.ctx)
        services = getattr(self.ctx, "pipeline", None)
        if services is not None:  # warm: the default head model is loaded before the first job
            services.head_models.load("builtin", self.device)
        self._lock = threading.Lock()
        self._buffers: dict[str, _EventBuffer] = {}
        self._cancels: dict[str, threading.Event] = {}
        self._running: str | None = None
        self._jobs_done = 0
        self._started_at = time.time()

    # ------------------------------------------------------------------ control (any thread)

    def identity(self) -> dict:
        """Who this worker is and what it does now (server.info, job status, tests)."""
        return {"name": self.name, "pid": os.getpid(), "node": _node_address(), "device": str(self.device),
                "running": self._running, "jobs_done": self._jobs_done,
                "avatars_cached": sum(1 for _ in self.store.list()), "started_at": self._started_at,
                "root": str(self.root)}

    def release(self) -> None:
        """Remove this worker's folder (its avatar cache): the front calls it before it stops
        the actor. A worker killed without it is cleaned up by the next one on its machine."""
        shutil.rmtree(self.root, ignore_errors=True)

    def events(self, task_id: str) -> list[dict]:
        """The reports task ``task_id`` made since the last call."""
        with self._lock:
            buffer = self._buffers.get(task_id)
        return buffer.drain() if buffer is not None else []

    def cancel(self, task_id: str) -> None:
        """Stop task ``task_id`` at its next check (also when it has not started yet)."""
        with self._lock:
            self._cancels.setdefault(task_id, threading.Event()).set()

    # ------------------------------------------------------------------ work (one at a time)

    def run(self, task: WorkerTask) -> TaskOutcome:
        """Run one task to its end; never raises (the outcome says what happened)."""
        with self._lock:
            buffer = self._buffers.setdefault(task.task_id, _EventBuffer())
            cancel = self._cancels.setdefault(task.task_id, threading.Event())
            self._running = task.task_id
        output_dir = self.root / "jobs" / task.task_id
        outcome = TaskOutcome(status="done", worker=self.name, started_at=time.time())
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            self._fetch_avatars(task.avatars)
            kind = self.ctx.registry.job_kinds.get(task.kind)
            if kind is None:
                raise UserError("unavailable", f"worker {self.name} has no job kind {task.kind!r}; is the same "
                                               "HeadSplat version installed on every cluster node?")
            ctx = JobContext(task.job, output_dir=output_dir, store=self.store.for_job(task.job),
                             device=self.device, cancel_event=cancel, report=buffer.add)
            ctx.check()
            outcome.result = kind.run(ctx, task.job_input)
            if task.return_files:  # a whole job: its files, and the avatar it made, if any
                outcome.files = {p.name: p.read_bytes() for p in output_dir.iterdir() if p.is_file()}
                published = self.store.published_by([task.job])
                if task.job in published:
                    outcome.avatar = read_payload(self.store, published[task.job].avatar)
        except JobCancelled:
            outcome.status = "cancelled"
        except UserError as exc:
            outcome.status, outcome.error = "user_error", {"code": exc.code, "message": exc.message,
                                                           "details": dict(exc.details)}
        except BaseException as exc:  # noqa: BLE001 - the front decides what a failure means
            outcome.status, outcome.exception = "failed", _portable(exc)
        finally:
            shutil.rmtree(output_dir, ignore_errors=True)
            with self._lock:
                self._running = None
                self._cancels.pop(task.task_id, None)
            self._jobs_done += 1
        outcome.finished_at = time.time()
        return outcome

    def forget_events(self, task_id: str) -> None:
        """The front has every report of ``task_id``: drop its buffer."""
        with self._lock:
            self._buffers.pop(task_id, None)

    def _fetch_avatars(self, avatars: dict[str, list]) -> None:
        """Publish into this worker's cache every avatar it does not have yet."""
        import ray

        for avatar_id, refs in avatars.items():
            if not self.store.exists(avatar_id):
                payload = ray.get(refs[0])
                publish_payload(self.store, payload)


def _assigned_gpus() -> list:
    import ray

    try:
        return list(ray.get_gpu_ids())
    except Exception:  # not inside Ray (tests that use the class directly)
        return []


def _node_address() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return socket.gethostname()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (so the front classifies it as the embedded server
    would: out of memory, a full disk...), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")

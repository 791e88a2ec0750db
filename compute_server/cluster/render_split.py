"""render.frames on a cluster: the shot split into chunks of frames over the free workers,
frames sent to the client in order as they arrive.

Why the front resolves the cameras: a turntable's cameras depend on the whole shot (the
angle of frame i is 360 i / n), so each chunk gets its own cameras explicitly and the
worker runs the unchanged ``render_frames.run`` on a request for just those frames. The
frames come back as the progress events the job sends anyway; the front writes them to
the job's folder (the one source of truth for ``job.result``) and relays them in order.

A chunk whose worker dies is started again from its first frame that had not arrived,
so every frame reaches the client exactly once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np
import torch

from compute_server.errors import JobCancelled, UserError
from compute_server.pipeline import render_frames
from compute_server.pipeline.avatar_files import avatar_head_model
from compute_server.pipeline.frame_encoding import FORMATS
from shared.camera import Camera

from .dispatch import MAX_ATTEMPTS, POLL_S, RunningTask, WorkerLost, acquire, outcome_result, task_id
from .pool import WorkerPool
from .worker import TaskOutcome, WorkerTask

log = logging.getLogger(__name__)

CHUNKS_PER_WORKER = 3   # small chunks: frames stream early, and a late worker still finds work
MAX_CHUNK_FRAMES = 16


def chunk_size(n_frames: int, n_workers: int) -> int:
    return max(1, min(MAX_CHUNK_FRAMES, math.ceil(n_frames / (CHUNKS_PER_WORKER * max(1, n_workers)))))


def shot_cameras(store, req, catalog) -> list[Camera]:
    """The camera of every frame, as render_frames would choose them (on the CPU: only
    the rest head is posed, for a turntable's centre)."""
    if req.cameras is not None:
        avatar = None
    else:
        metadata, arrays, _ = store.get(req.avatar, ["rig.npz"])
        camera = metadata.get("portrait_camera")
        avatar = SimpleNamespace(
            portrait_camera=Camera.from_wire(camera) if camera else None,
            head_model=avatar_head_model(catalog, metadata, arrays["rig"], torch.device("cpu")),
            shape=torch.as_tensor(np.array(arrays["rig"]["shape"]), dtype=torch.float32)[None])
    return render_frames._cameras(req, avatar)


def chunk_request(req, cameras: list[Camera], start: int, stop: int):
    """The request for frames [start, stop) of ``req``, with their cameras spelled out."""
    return replace(req, params={k: v[start:stop] for k, v in req.params.items()}, cameras=cameras[start:stop],
                   camera_preset=None, n_frames=stop - start, first_frame=req.first_frame + start)


@dataclass
class _Chunk:
    start: int
    stop: int
    attempt: int = 1


@dataclass
class _Running:
    task: RunningTask
    chunk: _Chunk
    received: int = 0


class RenderSplit:
    """One render job's chunks (see the module docstring). ``avatars``: the WorkerTask
    avatars map. ``on_worker(worker)``, ``note_retry(message)``: as in dispatch."""

    def __init__(self, pool: WorkerPool, ctx, req, cameras: list[Camera], avatars: dict, *, on_worker, note_retry):
        self.pool, self.ctx, self.req, self.cameras, self.avatars = pool, ctx, req, cameras, avatars
        self.on_worker, self.note_retry = on_worker, note_retry
        self.ray = pool.connection.ray
        n = req.n_frames
        size = chunk_size(n, len(pool.workers))
        self.pending = [_Chunk(s, min(n, s + size)) for s in range(0, n, size)]
        self.running: dict[object, _Running] = {}
        self.arrived: dict[int, dict] = {}   # frame index -> its report, until earlier frames are sent
        self.next_frame = 0
        self.files: list[str] = []
        self.failure: TaskOutcome | None = None

    def run(self) -> dict:
        try:
            while self.pending or self.running:
                self._start_chunks()
                if not self.pool.connection.reachable:
                    raise self.pool.connection.unavailable_error()
                if not self.running:
                    continue
                ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
                for ref in list(self.running):
                    self._collect(ref, ref in ready)
                self._send_in_order()
        finally:
            for entry in self.running.values():  # an error above: stop what still runs
                entry.task.cancel()
                self.pool.release(entry.task.worker)
        if self.failure is not None:
            outcome_result(self.failure)
        if self.ctx.cancel_requested:
            raise JobCancelled(self.ctx.job)
        if self.next_frame != self.req.n_frames:  # every chunk ended, yet a frame never came
            raise RuntimeError(f"frame {self.next_frame} of the shot never arrived from the cluster workers")
        first = self.cameras[0]
        return {"frames": self.req.n_frames, "width": first.width, "height": first.height, "format": self.req.fmt,
                "files": self.files, "first_frame": self.req.first_frame, "depth": self.req.depth}

    def _stopping(self) -> bool:
        return self.ctx.cancel_requested or self.failure is not None

    def _start_chunks(self) -> None:
        if self._stopping():
            self.pending.clear()
            for entry in self.running.values():
                entry.task.cancel()
            return
        while self.pending:
            worker = acquire(self.pool, self.ctx, wait=not self.running,
                             fraction=self.next_frame / self.req.n_frames)
            if worker is None:
                return
            chunk = self.pending.pop(0)
            task = WorkerTask(task_id(self.ctx.job), self.ctx.job, "render.frames",
                              chunk_request(self.req, self.cameras, chunk.start, chunk.stop), self.avatars,
                              return_files=False)
            running = RunningTask(self.pool, worker, task)
            self.running[running.ref] = _Running(running, chunk)
            self.on_worker(worker)

    def _collect(self, ref, finished: bool) -> None:
        entry = self.running[ref]
        try:
            events, outcome = entry.task.drain(finished)
        except WorkerLost as exc:
            del self.running[ref]
            self.pool.release(entry.task.worker, lost=True)
            self._rerun(entry, exc)
            return
        for report in events:
            extra = report.get("extra") or {}
            if "frame_index" in extra:
                self.arrived[entry.chunk.start + int(extra["frame_index"])] = report
                entry.received += 1
        if outcome is not None:
            del self.running[ref]
            self.pool.release(entry.task.worker)
            if outcome.status in ("user_error", "failed") and self.failure is None:
                self.failure = outcome

    def _rerun(self, entry: _Running, exc: WorkerLost) -> None:
        if not self.pool.connection.reachable:
            raise self.pool.connection.unavailable_error()
        chunk = entry.chunk
        if chunk.attempt >= MAX_ATTEMPTS:
            raise UserError("worker_lost", f"cluster workers died {MAX_ATTEMPTS} times while rendering frames "
                                           f"{chunk.start}..{chunk.stop - 1} (last: {exc}); see the cluster's Ray logs")
        rest = _Chunk(chunk.start + entry.received, chunk.stop, chunk.attempt + 1)
        log.warning("%s during job %s; frames %d..%d run again", exc, self.ctx.job, rest.start, rest.stop - 1,
                    extra={"job": self.ctx.job})
        if rest.start < rest.stop:
            self.pending.insert(0, rest)
            self.pending.sort(key=lambda c: c.start)
        self.note_retry(f"{exc}; frames {rest.start + 1} to {rest.stop} are rendered again on another worker",
                        self.next_frame / self.req.n_frames)

    def _send_in_order(self) -> None:
        """Write and relay every frame whose predecessors have all been sent."""
        n = self.req.n_frames
        while self.next_frame in self.arrived:
            i = self.next_frame
            extra = dict(self.arrived.pop(i)["extra"])
            number = self.req.first_frame + i
            frame = extra["frame"]
            name = f"frame_{number:06d}{FORMATS[frame['format']]}"
            (self.ctx.output_dir / name).write_bytes(bytes(frame["data"]))
            if extra.get("depth") is not None:
                np.save(self.ctx.output_dir / f"depth_{number:06d}.npy", np.asarray(extra["depth"]))
            self.files.append(name)
            extra.update(frame_index=i, frame_number=number)
            self.ctx.relay(stage="render", fraction=(i + 1) / n, message=f"frame {i + 1} of {n}", eta_s=None,
                           preview=None, extra=extra, send=True)
            self.next_frame += 1

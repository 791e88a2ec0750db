"""What a job kind is, and what a running job gets to report progress and see cancels.

A method that does heavy work (``avatar.create``, ``motion.track``, ``render.frames``) is a
``JobKind``: ``validate`` runs on the server's network thread and must be quick (check
types, sizes and limits, raise ``UserError``); ``run`` runs later on the worker thread with
a ``JobContext``, and returns the result map sent in ``job.done``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_server.errors import JobCancelled

PROGRESS_MIN_INTERVAL_S = 0.1  # progress events are throttled to about 10 per second


@dataclass(frozen=True)
class JobKind:
    """A kind of job, registered under its method name.

    validate(params, server_ctx) -> job_input: quick checks on the network thread; raise
        UserError (e.g. bad_request, too_large, not_found) to refuse the request.
    run(job_ctx, job_input) -> dict: the work, on the worker thread; call
        ``job_ctx.progress``/``job_ctx.check`` at least every 0.5 s.
    summarize(job_input) -> dict: optional small JSON-safe description kept in the job
        record (default: a summary of the request params).
    avatars_used(job_input) -> ids: optional avatars the job reads; they cannot be
        deleted while the job is queued or running.
    result_part(output_dir, result, params) -> dict: optional; ``job.result`` with extra
        params (e.g. render.frames' ``frames: [start, stop]``) merges what it returns
        (files the job kept in its output folder) into the result.
    disk_bytes(job_input) -> int: optional estimate of what the job writes to the data
        directory (bytes); a submission is refused with ``no_space`` when the disk has
        less than this plus ``Limits.min_free_bytes`` free.
    """

    name: str
    validate: Callable[[dict, Any], Any]
    run: Callable[["JobContext", Any], dict]
    summarize: Callable[[Any], dict] | None = None
    avatars_used: Callable[[Any], Iterable[str]] | None = None
    result_part: Callable[[Path, dict, dict], dict] | None = None
    disk_bytes: Callable[[Any], int] | None = None


class JobContext:
    """Handed to a running job.

    job: the job id.  output_dir: a folder for this job's files (rendered frames...).
    store: the AvatarStore.  device: the torch device to compute on.
    """

    def __init__(self, job: str, *, output_dir: Path, store, device, cancel_event: threading.Event,
                 report: Callable[..., None]):
        self.job = job
        self.output_dir = output_dir
        self.store = store
        self.device = device
        self._cancel_event = cancel_event
        self._report = report
        self._last_emit_at = 0.0
        self._last_stage: str | None = None

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_event.is_set()

    def check(self) -> None:
        """Raise JobCancelled if a cancel was requested (call this in long loops)."""
        if self._cancel_event.is_set():
            raise JobCancelled(self.job)

    def progress(self, stage: str, fraction: float, message: str = "", *, eta_s: float | None = None,
                 preview_png: bytes | None = None, preview_jpeg: bytes | None = None, **extra) -> None:
        """Report progress (also checks for cancel).

        stage: short name of the current stage (e.g. "fitting"). fraction: overall
        progress in [0, 1]. message: a sentence for people. eta_s: seconds left, if known.
        preview_png / preview_jpeg: a small encoded preview image (keep it under ~100 kB).
        extra: more event fields (e.g. ``frame_index``, ``frame``); events with extra
        fields or a preview are never throttled away, plain ones at most ~10/s.
        """
        self.check()
        fraction = min(1.0, max(0.0, float(fraction)))
        now = time.monotonic()
        preview = None
        if preview_png is not None:
            preview = {"format": "png", "data": preview_png}
        elif preview_jpeg is not None:
            preview = {"format": "jpeg", "data": preview_jpeg}
        must_send = bool(extra) or preview is not None or stage != self._last_stage or fraction >= 1.0
        send = must_send or now - self._last_emit_at >= PROGRESS_MIN_INTERVAL_S
        if send:
            self._last_emit_at = now
            self._last_stage = stage
        self._report(stage=stage, fraction=fraction, message=message, eta_s=eta_s, preview=preview,
                     extra=extra, send=send)

    def emit(self, **fields) -> None:
        """Send a progress event with ``fields`` now, keeping the current stage/fraction
        (e.g. ``ctx.emit(frame_index=i, frame=png_bytes)``)."""
        self.check()
        self._report(stage=None, fraction=None, message=None, eta_s=None, preview=None, extra=fields, send=True)

    def relay(self, **report) -> None:
        """Pass on a report this job made elsewhere (a cluster worker's own JobContext
        buffered it: stage, fraction, message, eta_s, preview, extra, send), unthrottled."""
        self._report(**report)

"""The ``motion.track`` job: a driving video -> per-frame head parameters (a motion .npz).

Landmarks on every frame (MediaPipe, tracking mode), then the VHAP-style tracker
(identity on keyframes, then all frames jointly with temporal smoothness).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from shared import VIDEO_SUFFIXES

from ..face.video_landmarks import track_video_landmarks
from ..storage.avatar_store import check_avatar_id
from ..tracking.video_track import track_landmarks
from ..validation import require_int, require_str, require_video


@dataclass
class TrackRequest:
    name: str
    data: bytes
    head_model: str
    max_frames: int | None
    frame_limit: int | None = None  # the server's max_video_frames when the client set no max_frames


def validate(params: dict, ctx, services) -> TrackRequest:
    name, data = require_video(params)
    if os.path.splitext(name)[1].lower() not in VIDEO_SUFFIXES:
        name = name + ".mp4"
    head_model = require_str(params, "head_model", default="builtin", max_chars=200)
    if params.get("avatar") is not None:
        avatar = check_avatar_id(require_str(params, "avatar", max_chars=64))
        head_model = ctx.store.metadata(avatar).get("head_model", {}).get("name", head_model)
    services.head_models.check(head_model)
    limit = ctx.limits.max_video_frames
    max_frames = require_int(params, "max_frames", default=None, min_value=1, max_value=limit)
    return TrackRequest(name=name, data=data, head_model=head_model, max_frames=max_frames or limit,
                        frame_limit=limit if max_frames is None else None)


def disk_bytes(req: TrackRequest) -> int:
    """The upload is kept while the job runs; the motion file is small."""
    return len(req.data) + 2**20


def summarize(req: TrackRequest) -> dict:
    return {"video": req.name, "bytes": len(req.data), "head_model": req.head_model, "max_frames": req.max_frames}


def run(ctx, req: TrackRequest, services) -> dict:
    model = services.head_models.load(req.head_model, ctx.device)
    # keep the user's file name (made safe) so every message names the file they sent
    path = ctx.output_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", req.name).lstrip(".") or "video.mp4")
    path.write_bytes(req.data)
    landmarks = track_video_landmarks(str(path), max_frames=req.max_frames, check_cancel=ctx.check,
                                      progress=lambda f, m: ctx.progress("landmarks", 0.4 * f, m))
    result = track_landmarks(model, landmarks.landmarks, landmarks.found, landmarks.frame_size, landmarks.fps,
                             progress=lambda f, m: ctx.progress("tracking", 0.4 + 0.6 * f, m))
    motion_bytes = result.motion.to_npz_bytes()
    (ctx.output_dir / "motion.npz").write_bytes(motion_bytes)
    path.unlink(missing_ok=True)  # the upload is not needed any more
    errors = result.frame_error_px[np.isfinite(result.frame_error_px)]
    warnings = list(landmarks.warnings)
    if req.frame_limit is not None and len(landmarks.found) >= req.frame_limit:
        warnings.append(f"{req.name}: only the first {req.frame_limit} frames were tracked (the server's "
                        "max_video_frames limit); split longer videos")
    return {"motion": motion_bytes, "frames": result.motion.n_frames, "fps": result.motion.fps,
            "missing_frames": result.missing_frames,
            "median_error_px": float(np.median(errors)) if errors.size else None,
            "warnings": warnings}

"""Per-frame 478-point landmarks of the main face in a video.

Why: the motion tracker fits head parameters to every frame of a driving video; it needs
dense landmarks, a mask of frames where the face was really seen, and a way to fill the
rest. FaceMesh's tracking mode keeps the landmarks temporally consistent and fast; frames
where it loses the face fall back to the still-image search (``FaceLandmarker``), and frames
where even that finds nothing are reported, not guessed -- ``fill_missing`` interpolates
them for whoever needs a dense array.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from compute_server.errors import UserError

from . import landmark_indices as idx
from .landmarker import FaceLandmarker
from .video import iter_video_frames, probe_video

DEFAULT_TRACK_MAX_SIDE = 1280  # frames are tracked at most this large; landmarks are reported at full size
PROGRESS_INTERVAL_S = 0.25

ProgressCallback = Callable[[float, str], None]


@dataclass
class VideoLandmarks:
    """Landmarks of the main (largest) face, one row per decoded frame (N frames).

    landmarks: (N, 478, 3) float32 in upright full-frame pixels (x, y, depth z like x);
        NaN on frames without a face. found: (N,) bool. visibility: (N, 478) float32 in
        [0, 1] (0 where not found). scores: (N,) float32 detector confidence (0 where not
        found). times_s: (N,) float64 presentation times. fps: the video's average rate.
    frame_size: (width, height) upright. name: file name. warnings: sentences for the user.
    """

    landmarks: np.ndarray
    found: np.ndarray
    visibility: np.ndarray
    scores: np.ndarray
    times_s: np.ndarray
    fps: float
    frame_size: tuple[int, int]
    name: str
    warnings: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.found.shape[0])

    def missing_ranges(self) -> list[tuple[int, int]]:
        """Runs of frames without a face as (first, last) inclusive indices."""
        return missing_ranges(self.found)

    def filled(self) -> np.ndarray:
        """(N, 478, 3) float32 with missing frames interpolated (see ``fill_missing``)."""
        return fill_missing(self.landmarks, self.found, self.times_s)


def missing_ranges(found: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) inclusive index runs where ``found`` (N,) bool is False."""
    ranges: list[tuple[int, int]] = []
    start = None
    for i, ok in enumerate(np.asarray(found, dtype=bool)):
        if not ok and start is None:
            start = i
        elif ok and start is not None:
            ranges.append((start, i - 1))
            start = None
    if start is not None:
        ranges.append((start, len(found) - 1))
    return ranges


def fill_missing(landmarks: np.ndarray, found: np.ndarray, times_s: np.ndarray | None = None) -> np.ndarray:
    """Linearly interpolate landmarks over frames where ``found`` is False.

    landmarks: (N, K, D) float (values on missing frames are ignored, may be NaN).
    found: (N,) bool. times_s: optional (N,) increasing times to interpolate over (frame
    index otherwise). Frames before the first / after the last found frame take the
    nearest found frame's values. Returns (N, K, D) float32. Raises ValueError when no
    frame was found.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    found = np.asarray(found, dtype=bool)
    if landmarks.ndim < 2 or found.shape != (landmarks.shape[0],):
        raise ValueError(f"landmarks (N, ...) and found (N,) must agree, got {landmarks.shape} and {found.shape}")
    if not found.any():
        raise ValueError("no frame has landmarks to interpolate from")
    t = np.arange(len(found), dtype=np.float64) if times_s is None else np.asarray(times_s, dtype=np.float64)
    flat = landmarks.reshape(len(found), -1)
    known_t, known = t[found], flat[found]
    out = np.empty_like(flat)
    for column in range(flat.shape[1]):  # np.interp holds the end values outside the known range
        out[:, column] = np.interp(t, known_t, known[:, column])
    out[found] = flat[found]
    return out.reshape(landmarks.shape).astype(np.float32)


def _missing_warning(name: str, found: np.ndarray) -> str | None:
    ranges = missing_ranges(found)
    if not ranges:
        return None
    shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:6]) + (", ..." if len(ranges) > 6 else "")
    n_missing = int((~found).sum())
    return (f"{name}: no face in {n_missing} of {len(found)} frames (frames {shown}); those frames are filled by "
            "interpolation.")


def track_video_landmarks(path: str, *, progress: ProgressCallback | None = None,
                          check_cancel: Callable[[], None] | None = None, max_frames: int | None = None,
                          max_side: int | None = DEFAULT_TRACK_MAX_SIDE) -> VideoLandmarks:
    """Landmarks of the largest face on every frame of a video file.

    progress(fraction in [0, 1], message) is called at most every 0.25 s and at the end;
    check_cancel() is called before every frame (it raises to stop, e.g. JobCancelled).
    max_frames: only the first frames. max_side: track on frames shrunk to this size.
    Raises UserError "bad_file" (unreadable video) or "no_face" (no face on any frame).
    """
    name = os.path.basename(path)
    info = probe_video(path)
    expected = info.n_frames if max_frames is None else min(info.n_frames, max_frames)
    rows: list[np.ndarray | None] = []
    visibility: list[np.ndarray | None] = []
    scores: list[float] = []
    times: list[float] = []
    last_report = 0.0
    with FaceLandmarker(static_image_mode=False, max_faces=1) as landmarker:
        for frame in iter_video_frames(path, max_frames=max_frames, max_side=max_side):
            if check_cancel is not None:
                check_cancel()
            faces = landmarker.detect(frame.image)
            scale = info.width / frame.image.shape[1]
            rows.append(faces[0].landmarks * np.float32(scale) if faces else None)
            visibility.append(faces[0].visibility if faces else None)
            scores.append(faces[0].score if faces else 0.0)
            times.append(frame.time_s)
            now = time.monotonic()
            if progress is not None and now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                progress(min(1.0, len(rows) / max(expected, 1)), f"tracking face landmarks: frame {len(rows)} of ~{expected}")
    found = np.array([r is not None for r in rows], dtype=bool)
    if not found.any():
        raise UserError("no_face", f"No face found in any frame of {name}. Use a video where the face is clearly "
                                   "visible, frontal or up to ~60 degrees turned, and at least ~80 px wide.", name=name)
    n = len(rows)
    landmarks = np.full((n, idx.N_LANDMARKS, 3), np.nan, dtype=np.float32)
    visible = np.zeros((n, idx.N_LANDMARKS), dtype=np.float32)
    for i, (row, vis) in enumerate(zip(rows, visibility)):
        if row is not None:
            landmarks[i], visible[i] = row, vis
    if progress is not None:
        progress(1.0, f"tracked face landmarks on {int(found.sum())} of {n} frames")
    warning = _missing_warning(name, found)
    return VideoLandmarks(landmarks=landmarks, found=found, visibility=visible, scores=np.array(scores, np.float32),
                          times_s=np.array(times, np.float64), fps=info.fps, frame_size=(info.width, info.height),
                          name=name, warnings=[warning] if warning else [])

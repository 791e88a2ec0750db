"""Frame timing and keyframe arrays: the plain maths between motions and animation curves.

Why here and not in the add-on: turning a motion sampled at its own frame rate into keys
on a scene's frames, and a scene's frames back into a motion, is arithmetic that must
agree both ways and is easier to trust when it is tested without Blender. Blender's
frame rate is ``fps / fps_base`` (e.g. 30000/1001 for 29.97); scene frame numbers are
integers starting at ``frame_start``.
"""

from __future__ import annotations

import numpy as np

from .motion import Motion


def scene_fps(fps: int, fps_base: float = 1.0) -> float:
    """Blender's effective frame rate (frames per second) from ``render.fps`` / ``render.fps_base``."""
    if fps <= 0 or fps_base <= 0:
        raise ValueError(f"frame rate must be positive, got fps={fps}, fps_base={fps_base}")
    return float(fps) / float(fps_base)


def frame_numbers(frame_start: int, frame_end: int, frame_step: int = 1) -> np.ndarray:
    """(T,) int64 scene frames from start to end inclusive (Blender's frame range)."""
    if frame_end < frame_start:
        raise ValueError(f"the frame range is empty ({frame_start}..{frame_end})")
    if frame_step < 1:
        raise ValueError(f"frame step must be at least 1, got {frame_step}")
    return np.arange(int(frame_start), int(frame_end) + 1, int(frame_step), dtype=np.int64)


def motion_on_scene_frames(motion: Motion, fps: float, first_frame: int) -> tuple[np.ndarray, Motion]:
    """Resample a motion to the scene's frame rate and place it from ``first_frame`` on.

    Returns scene frame numbers (T',) int64 and the resampled motion (T' rows): frame
    ``first_frame + i`` shows the motion at time ``i / fps`` seconds. Joint rotations are
    slerped, coefficients and translation interpolated linearly (``Motion.resample``).
    """
    resampled = motion if abs(motion.fps - fps) < 1e-9 else motion.resample(fps)
    return first_frame + np.arange(resampled.n_frames, dtype=np.int64), resampled


def keyframe_coordinates(frames: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Interleaved (frame, value) pairs for ``fcurve.keyframe_points.foreach_set("co", ...)``.

    frames: (T,) scene frames; values: (T,) or (T, C) values. Returns (T * 2,) float32
    for one curve, or (C, T * 2) for C curves (one row per channel).
    """
    frames = np.asarray(frames, dtype=np.float64).reshape(-1)
    values = np.asarray(values, dtype=np.float64)
    squeeze = values.ndim == 1
    values = values.reshape(len(frames), -1)
    co = np.empty((values.shape[1], len(frames), 2), dtype=np.float32)
    co[..., 0] = frames[None, :]
    co[..., 1] = values.T
    co = co.reshape(values.shape[1], -1)
    return co[0] if squeeze else co


def rows_constant(values: np.ndarray, atol: float = 1e-9) -> bool:
    """True when every row of (T, ...) ``values`` equals the first (e.g. a camera that
    does not move over a shot, which then travels once instead of T times)."""
    values = np.asarray(values)
    return bool(len(values) <= 1 or np.all(np.abs(values - values[:1]) <= atol))


def motion_from_samples(fps: float, expr: np.ndarray, pose: dict[str, np.ndarray], *,
                        expr_names: list[str] | None = None, head_model: str = "") -> Motion:
    """A Motion from per-frame samples of a rig (the inverse of keying a motion).

    expr: (T, E) expression coefficients; pose: rotation, neck_pose, jaw_pose (T, 3),
    eyes_pose (T, 6), translation (T, 3) (missing keys are zeros).
    """
    n_frames = int(np.asarray(expr).shape[0])
    zeros = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}
    arrays = {key: np.asarray(pose[key]) if key in pose else np.zeros((n_frames, w), np.float32)
              for key, w in zeros.items()}
    return Motion(fps=fps, expr=expr, **arrays, expr_names=list(expr_names or []), head_model=head_model)

"""A short expression clip made from the head model's named components, so the demo needs
no driving video: blink, smile, jaw open, brows up, a glance and a small head turn, each
eased in and out."""

from __future__ import annotations

import numpy as np

from shared.motion import Motion


def _bump(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 outside [start, end], a smooth hump (sin^2) inside; t in seconds."""
    x = np.clip((t - start) / (end - start), 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def demo_motion(expression_names: list[str], *, fps: float = 24.0, seconds: float = 4.0,
                head_model: str = "") -> Motion:
    """The clip for a head model with these expression components (unknown names, e.g. a
    FLAME model's PCA components, are simply left at zero: jaw and pose still move)."""
    n = int(round(fps * seconds))
    t = np.arange(n) / fps
    motion = Motion.neutral(n, len(expression_names), fps=fps, expr_names=list(expression_names),
                            head_model=head_model)

    def key(name: str, curve: np.ndarray) -> None:
        if name in expression_names:
            motion.expr[:, expression_names.index(name)] = curve.astype(np.float32)

    key("smile_left", 0.9 * _bump(t, 0.2, 1.6))
    key("smile_right", 0.9 * _bump(t, 0.2, 1.6))
    key("brow_raise_inner", 0.9 * _bump(t, 2.4, 3.6))
    key("brow_raise_outer_left", 0.8 * _bump(t, 2.4, 3.6))
    key("brow_raise_outer_right", 0.8 * _bump(t, 2.4, 3.6))
    blink = _bump(t, 1.9, 2.15) + _bump(t, 3.65, 3.9)
    key("blink_left", blink)
    key("blink_right", blink)
    motion.jaw_pose[:, 0] = (0.32 * _bump(t, 1.3, 2.6)).astype(np.float32)
    glance = 0.25 * (_bump(t, 0.4, 1.2) - _bump(t, 2.6, 3.4))
    motion.eyes_pose[:, 1] = glance.astype(np.float32)
    motion.eyes_pose[:, 4] = glance.astype(np.float32)
    motion.rotation[:, 1] = (0.22 * np.sin(2 * np.pi * t / seconds)).astype(np.float32)
    motion.rotation[:, 0] = (0.05 * _bump(t, 1.3, 2.6)).astype(np.float32)
    return motion

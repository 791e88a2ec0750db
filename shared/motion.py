"""Head motion: per-frame head-model parameters, as files and as wire data.

The layout follows VHAP / GaussianAvatars' tracked ``flame_param`` files so motions move
between tools: ``expr`` (T, E), ``rotation`` (T, 3), ``neck_pose`` (T, 3), ``jaw_pose``
(T, 3), ``eyes_pose`` (T, 6: left then right), ``translation`` (T, 3), optional ``shape``
(S,). HeadSplat adds ``fps``, ``frame_valid`` (T,) (False where the tracker found no face
and the values were interpolated), ``expr_names`` and ``head_model`` (which model the
coefficients belong to). Rotations are axis-angle in radians, translation in metres.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import numpy as np

from .rotations import axis_angle_to_quat, quat_slerp, quat_to_axis_angle

POSE_KEYS = ("rotation", "neck_pose", "jaw_pose", "eyes_pose")
FRAME_KEYS = ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")
_WIDTHS = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}
MAX_MOTION_FRAMES = 100_000


class MotionFormatError(ValueError):
    """A motion file or message that does not follow the layout above."""


@dataclass
class Motion:
    """Per-frame head parameters; every frame array has T rows (float32)."""

    fps: float
    expr: np.ndarray
    rotation: np.ndarray
    neck_pose: np.ndarray
    jaw_pose: np.ndarray
    eyes_pose: np.ndarray
    translation: np.ndarray
    shape: np.ndarray | None = None
    frame_valid: np.ndarray | None = None
    expr_names: list[str] = field(default_factory=list)
    head_model: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and np.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise MotionFormatError(f"motion fps must be in (0, 1000], got {self.fps!r}")
        self.fps = float(self.fps)
        n = None
        for key in FRAME_KEYS:
            value = np.asarray(getattr(self, key), dtype=np.float32)
            if value.ndim == 1 and key == "expr":
                value = value[:, None]
            if value.ndim != 2:
                raise MotionFormatError(f"motion '{key}' must be a 2-D array (frames x values), got shape {value.shape}")
            width = _WIDTHS.get(key)
            if width is not None and value.shape[1] != width:
                raise MotionFormatError(f"motion '{key}' must have {width} columns, got {value.shape[1]}")
            if not np.all(np.isfinite(value)):
                raise MotionFormatError(f"motion '{key}' contains NaN or infinite values")
            if n is None:
                n = value.shape[0]
            elif value.shape[0] != n:
                raise MotionFormatError(f"motion '{key}' has {value.shape[0]} frames but 'expr' has {n}")
            setattr(self, key, value)
        if n == 0:
            raise MotionFormatError("motion has no frames")
        if n > MAX_MOTION_FRAMES:
            raise MotionFormatError(f"motion has {n} frames; the limit is {MAX_MOTION_FRAMES}")
        if self.shape is not None:
            self.shape = np.asarray(self.shape, dtype=np.float32).reshape(-1)
        if self.frame_valid is None:
            self.frame_valid = np.ones(n, dtype=bool)
        else:
            self.frame_valid = np.asarray(self.frame_valid, dtype=bool).reshape(-1)
            if self.frame_valid.shape[0] != n:
                raise MotionFormatError("motion 'frame_valid' must have one entry per frame")
        self.expr_names = [str(x) for x in self.expr_names]
        if self.expr_names and len(self.expr_names) != self.expr.shape[1]:
            raise MotionFormatError(
                f"motion has {len(self.expr_names)} expression names for {self.expr.shape[1]} coefficients")

    @property
    def n_frames(self) -> int:
        return int(self.expr.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    @classmethod
    def neutral(cls, n_frames: int, n_expr: int, fps: float = 25.0, **kw) -> "Motion":
        z = lambda w: np.zeros((n_frames, w), np.float32)  # noqa: E731
        return cls(fps, z(n_expr), z(3), z(3), z(3), z(6), z(3), **kw)

    def frame_arrays(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in FRAME_KEYS}

    # ---- files -------------------------------------------------------------------------
    def to_npz_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays = dict(self.frame_arrays())
        arrays["fps"] = np.array(self.fps, dtype=np.float64)
        arrays["frame_valid"] = self.frame_valid
        if self.shape is not None:
            arrays["shape"] = self.shape
        if self.expr_names:
            arrays["expr_names"] = np.array(self.expr_names)
        if self.head_model:
            arrays["head_model"] = np.array(self.head_model)
        np.savez(buf, **arrays)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a crash never leaves a half-written motion file behind."""
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(self.to_npz_bytes())
        os.replace(tmp, path)

    @classmethod
    def from_npz(cls, source, *, default_fps: float = 25.0) -> "Motion":
        """Read a motion .npz (path, file object or bytes). GaussianAvatars files without
        ``fps`` get ``default_fps``; a missing pose key is read as zeros."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        try:
            data = np.load(source, allow_pickle=False)
        except Exception as exc:  # numpy raises several types for a bad file
            raise MotionFormatError(f"not a readable .npz motion file ({exc})") from None
        with data:
            if "expr" not in data:
                raise MotionFormatError("motion file has no 'expr' array")
            expr = data["expr"]
            n = expr.shape[0] if expr.ndim >= 1 else 0
            arrays = {}
            for key in FRAME_KEYS[1:]:
                arrays[key] = data[key] if key in data else np.zeros((n, _WIDTHS[key]), np.float32)
                if arrays[key].ndim == 2 and arrays[key].shape[0] == 1 and n > 1:
                    arrays[key] = np.repeat(arrays[key], n, axis=0)  # static per-sequence values
            fps = float(data["fps"]) if "fps" in data else default_fps
            return cls(
                fps=fps, expr=expr, **arrays,
                shape=data["shape"] if "shape" in data else None,
                frame_valid=data["frame_valid"] if "frame_valid" in data else None,
                expr_names=[str(x) for x in data["expr_names"]] if "expr_names" in data else [],
                head_model=str(data["head_model"]) if "head_model" in data else "",
            )

    @classmethod
    def load(cls, path: str | os.PathLike, **kw) -> "Motion":
        if not os.path.isfile(path):
            raise MotionFormatError(f"motion file not found: {path}")
        with open(path, "rb") as f:
            return cls.from_npz(f.read(), **kw)

    # ---- resampling --------------------------------------------------------------------
    def resample(self, fps: float, n_frames: int | None = None) -> "Motion":
        """The motion at another frame rate: linear for coefficients and translation,
        slerp for every joint rotation. Frame i of the result is at time i / fps; times past
        the last source frame hold the last value."""
        if not (fps > 0):
            raise MotionFormatError("target fps must be positive")
        if n_frames is None:
            n_frames = max(1, int(round((self.n_frames - 1) * fps / self.fps)) + 1)
        t_src = np.arange(n_frames) * (self.fps / fps)
        t_src = np.clip(t_src, 0, self.n_frames - 1)
        i0 = np.floor(t_src).astype(int)
        i1 = np.minimum(i0 + 1, self.n_frames - 1)
        w = (t_src - i0).astype(np.float64)

        def lerp(a):
            return ((1 - w)[:, None] * a[i0] + w[:, None] * a[i1]).astype(np.float32)

        def slerp_aa(a):
            parts = []
            for j in range(a.shape[1] // 3):
                q = axis_angle_to_quat(a[:, 3 * j:3 * j + 3])
                parts.append(quat_to_axis_angle(quat_slerp(q[i0], q[i1], w)))
            return np.concatenate(parts, axis=1).astype(np.float32)

        valid = self.frame_valid[i0] & self.frame_valid[i1]
        return Motion(
            fps=fps, expr=lerp(self.expr), translation=lerp(self.translation),
            **{key: slerp_aa(getattr(self, key)) for key in POSE_KEYS},
            shape=self.shape, frame_valid=valid, expr_names=list(self.expr_names), head_model=self.head_model)

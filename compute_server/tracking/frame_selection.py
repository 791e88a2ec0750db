"""Which frames of a tracked clip an avatar learns from, and which it is tested on.

Why: a selfie clip has hundreds of frames, some useless (no face, the tracker off by many
pixels, the face small because the actor leaned back, motion blur). Training on every
frame costs memory and gains little over a few hundred good ones spread over the clip,
so the usable frames are cut into ``cap`` equal runs and each run gives its best frame:
the expressions and head turns of the whole clip are kept, near-duplicates are not.

Pure numpy: the gates run on tracking results; sharpness is measured later, on the
training-size crops, and picks the frame within each stretch (face.clip_crops).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_ERROR_PX_AT_512 = 6.0        # a frame whose median landmark error exceeds this (per 512 px of face crop) is off
ERROR_OVER_MEDIAN = 2.5          # ... or exceeds this many times the clip's median error
MIN_FACE_OVER_MEDIAN = 0.6       # a face smaller than this share of the clip's median face size is dropped
MIN_FACE_PX = 40.0               # and any face below this many source pixels


@dataclass
class FrameQuality:
    """Per-frame tracking quality of a clip of N frames.

    found: (N,) bool, a face was detected. error_px: (N,) median landmark error in source
    pixels (NaN where not found). face_px: (N,) face size in source pixels (the larger side
    of the landmarks' box; NaN where not found).
    """

    found: np.ndarray
    error_px: np.ndarray
    face_px: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(np.asarray(self.found).shape[0])


@dataclass
class FrameSelection:
    """bins: one array of candidate frame indices per stretch of the clip (non-empty);
    usable: (N,) bool, frames that passed the gates; train_stop: frames at and after this
    index are held out; dropped: reason -> count, for the report."""

    bins: list[np.ndarray]
    usable: np.ndarray
    train_stop: int
    dropped: dict[str, int] = field(default_factory=dict)


def holdout_stop(n_frames: int, holdout: float) -> int:
    """First held-out frame index when the last ``holdout`` fraction (0 <= holdout < 1) of
    ``n_frames`` is kept for testing: training uses frames [0, stop), testing [stop, N).
    At least one frame stays on each side when holdout > 0 and N >= 2."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    if holdout == 0.0 or n_frames < 2:
        return n_frames
    return int(min(max(round(n_frames * (1.0 - holdout)), 1), n_frames - 1))


def select_frames(quality: FrameQuality, cap: int, *, holdout: float = 0.0) -> FrameSelection:
    """Gate frames on tracking quality and cut the training part into at most ``cap`` stretches.

    A frame is usable when a face was found, its landmark error is below both an absolute
    limit (scaled by the face size) and ERROR_OVER_MEDIAN x the clip's median, and its face
    is at least MIN_FACE_OVER_MEDIAN x the median size. The usable frames before the
    held-out part are cut, in clip order, into ``min(cap, count)`` runs of equal count, so
    the cap is spread over the clip and a long stretch without a face costs no share of it.
    """
    if cap < 1:
        raise ValueError("cap must be >= 1")
    found = np.asarray(quality.found, dtype=bool)
    n = found.shape[0]
    error = np.where(found, np.asarray(quality.error_px, dtype=np.float64), np.nan)
    face = np.where(found, np.asarray(quality.face_px, dtype=np.float64), np.nan)
    dropped = {"no_face": int((~found).sum())}
    if not found.any():
        return FrameSelection(bins=[], usable=found.copy(), train_stop=holdout_stop(n, holdout), dropped=dropped)
    median_face = float(np.nanmedian(face))
    small = found & ((face < MIN_FACE_OVER_MEDIAN * median_face) | (face < MIN_FACE_PX))
    finite = found & np.isfinite(error)
    median_error = float(np.median(error[finite])) if finite.any() else 0.0
    error_limit = np.minimum(MAX_ERROR_PX_AT_512 * np.nan_to_num(face, nan=0.0) / 512.0 * 2.0,
                             max(ERROR_OVER_MEDIAN * median_error, 1e-6))
    off = found & ~small & (~finite | (error > np.maximum(error_limit, 0.5)))
    usable = found & ~small & ~off
    dropped.update(small_face=int(small.sum()), tracking_error=int(off.sum()))
    stop = holdout_stop(n, holdout)
    train = np.flatnonzero(usable[:stop])
    bins = [b for b in np.array_split(train, min(cap, train.size)) if b.size] if train.size else []
    return FrameSelection(bins=bins, usable=usable, train_stop=stop, dropped=dropped)

"""Foreground (person) matte of the aligned crop.

Why: the matte is the avatar's silhouette in the one real view we have, so it must include
the hair and follow the image's edges. MediaPipe's selfie segmentation (general model,
256x256 input) gives a reliable but coarse person mask; a guided filter (He et al. 2010)
with the crop as guide snaps its soft edge to the actual hair/skin boundaries. A user's own
cut-out (an RGBA file with real transparency) is better than any segmentation and replaces
it. Padding outside the source photo is never foreground.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import mediapipe_runtime as mp_runtime

# Guided filter settings, relative to the crop size so 256 and 1024 crops behave alike.
GUIDED_RADIUS_FRACTION = 1.0 / 64.0
GUIDED_EPS = 1e-3  # colour variance below which the guide counts as flat (guide in [0, 1])


@dataclass
class MatteResult:
    """matte: (S, S) float32 in [0, 1]. source: "alpha" (the file's transparency) or
    "segmentation". coarse: (S, S) float32, the unrefined segmentation (None for alpha)."""

    matte: np.ndarray
    source: str
    coarse: np.ndarray | None


def refine_matte(coarse: np.ndarray, guide_rgb: np.ndarray, *, radius_px: int, eps: float = GUIDED_EPS) -> np.ndarray:
    """Edge-aware refinement of a soft mask.

    coarse: (S, S) float32 in [0, 1]. guide_rgb: (S, S, 3) uint8 or float32 in [0, 1].
    Returns (S, S) float32 in [0, 1].
    """
    guide = guide_rgb.astype(np.float32) / 255.0 if guide_rgb.dtype == np.uint8 else guide_rgb.astype(np.float32)
    refined = cv2.ximgproc.guidedFilter(guide=guide, src=coarse.astype(np.float32), radius=int(radius_px), eps=eps)
    return np.clip(refined, 0.0, 1.0).astype(np.float32)


def segment_person(crop_rgb: np.ndarray, segmenter: mp_runtime.Solution) -> np.ndarray:
    """(S, S) float32 in [0, 1] person probability for an (S, S, 3) uint8 crop."""
    mask = segmenter.process(crop_rgb).segmentation_mask
    if mask is None:
        return np.zeros(crop_rgb.shape[:2], np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != crop_rgb.shape[:2]:
        mask = cv2.resize(mask, (crop_rgb.shape[1], crop_rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(mask, 0.0, 1.0)


def portrait_matte(crop_rgb: np.ndarray, valid: np.ndarray, segmenter: mp_runtime.Solution, *,
                   alpha_crop: np.ndarray | None = None) -> MatteResult:
    """The crop's foreground matte.

    crop_rgb: (S, S, 3) uint8. valid: (S, S) float32 in [0, 1], 0 on padding.
    alpha_crop: (S, S) float32 in [0, 1], the file's own transparency warped to the crop,
    used instead of the segmentation when given.
    """
    if alpha_crop is not None:
        return MatteResult(matte=(np.clip(alpha_crop, 0.0, 1.0) * valid).astype(np.float32), source="alpha", coarse=None)
    coarse = segment_person(crop_rgb, segmenter)
    radius = max(2, int(round(crop_rgb.shape[0] * GUIDED_RADIUS_FRACTION)))
    refined = refine_matte(coarse, crop_rgb, radius_px=radius)
    return MatteResult(matte=(refined * valid).astype(np.float32), source="segmentation", coarse=coarse)

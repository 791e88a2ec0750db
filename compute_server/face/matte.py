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
# Foreground colour estimation: a wide pass for the colours, a narrow one for the detail
# (Forte and Pitie's two-pass schedule, 90 and 6 px at 1080p, relative to the crop here).
FOREGROUND_RADII_FRACTION = (90.0 / 1080.0, 6.0 / 1080.0)


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


def foreground_colours(image: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """The person's own colours where the matte is soft (hair strands, the edge of the
    cheek): (S, S, 3) float32 in [0, 1] from the crop ``image`` (S, S, 3) float in [0, 1]
    and its ``matte`` (S, S).

    Why: a pixel at a soft edge is a mix, alpha * person + (1 - alpha) * background. Trained
    on the mix, the avatar wears a fringe of the photo's background (a green halo round the
    hair of a green-screen portrait, carried to every side view and into the hair texture
    of the back). This solves the compositing equation for the person's colour with
    "blur-fusion" (Forte and Pitie, Approximate Fast Foreground Colour Estimation, ICIP
    2021): local means of foreground and background weighted by the matte, then the
    residual of the equation put back into the foreground; two passes, wide then narrow.
    Where the matte is 0 or 1 the image is unchanged."""
    img = np.asarray(image, np.float32)
    alpha = np.clip(np.asarray(matte, np.float32), 0.0, 1.0)[..., None]
    size = max(img.shape[:2])
    fg, bg = img, img
    for fraction in FOREGROUND_RADII_FRACTION:
        k = 2 * max(1, int(round(fraction * size))) + 1
        blur = lambda a: cv2.blur(a, (k, k), borderType=cv2.BORDER_REFLECT)  # noqa: E731
        a_blur = blur(alpha[..., 0])[..., None]
        fg_mean = blur(fg * alpha) / (a_blur + 1e-5)
        bg_mean = blur(bg * (1.0 - alpha)) / ((1.0 - a_blur) + 1e-5)
        fg = np.clip(fg_mean + alpha * (img - alpha * fg_mean - (1.0 - alpha) * bg_mean), 0.0, 1.0)
        bg = bg_mean
    soft = (alpha > 0.0) & (alpha < 1.0)
    return np.where(soft, fg, img).astype(np.float32)

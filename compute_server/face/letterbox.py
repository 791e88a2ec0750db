"""The picture inside black letterbox or pillarbox bars.

Why: a clip exported with black bars (or a photo scanned with a black border) has rows or
columns of pure black at its edges that are not part of the scene. Our matting calls the
bar under a person's shoulders part of the person, so the avatar learned a black collar
under its neck (visible from every side), and a bar above a head would read as a frame that
cuts the hair. The bars are treated like the padding beyond a photo's frame: nothing is
known there (``warp.crop_validity``'s ``picture``).

A bar is a run of rows (columns) from an edge in which nearly every pixel is near black,
no wider than MAX_BAR_FRACTION of the image, ending at a picture that is clearly not: a
dark scene whose edge fades to black is not cut off.
"""

from __future__ import annotations

import numpy as np

BAR_LEVEL = 24              # 8-bit: a bar's pixels are at most this bright (video black is 16)
BAR_QUANTILE = 0.995        # ... all but this share of them (noise, compression)
MAX_BAR_FRACTION = 0.25     # a bar is at most this part of the image's height (width)
MIN_BAR_PX = 2              # thinner dark edges are not bars
PICTURE_MEAN = 1.5 * BAR_LEVEL   # the picture's first line beside a bar is brighter than this on average


def picture_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the picture of an (H, W, C) or (H, W) uint8 image without its black
    bars, in pixels (x1, y1 exclusive); the whole image where it has none."""
    h, w = image.shape[:2]
    level = np.asarray(image) if image.ndim == 2 else np.asarray(image).max(axis=2)
    top = _bar(level, from_end=False)
    bottom = _bar(level, from_end=True)
    left = _bar(level.T, from_end=False)
    right = _bar(level.T, from_end=True)
    return left, top, w - right, h - bottom


def _bar(level: np.ndarray, from_end: bool) -> int:
    """Rows of a bar along axis 0 of ``level`` (H, W), from the start or the end; 0 if none."""
    n = level.shape[0]
    depth = int(MAX_BAR_FRACTION * n)
    band = level[::-1][:depth + 1] if from_end else level[:depth + 1]
    dark = np.quantile(band, BAR_QUANTILE, axis=1) <= BAR_LEVEL
    rows = int(np.argmin(dark)) if not dark.all() else depth + 1
    if rows < MIN_BAR_PX or rows > depth:
        return 0
    return rows if float(band[rows].mean()) > PICTURE_MEAN else 0

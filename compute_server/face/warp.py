"""Similarity warps between a source image and a square crop, with proper resampling.

Why a module of its own: the portrait crop, the landmarker's face regions and the matte all
resample through the same 3x3 ``crop_to_source`` matrix, and getting the pixel-centre
convention and the antialiasing right once keeps them consistent.

Conventions
- Continuous pixel coordinates: pixel (i, j) covers [i, i+1) x [j, j+1), its centre is at
  (i + 0.5, j + 0.5) (the same as ``shared.camera`` and MediaPipe's normalized * size).
- ``crop_to_source`` (3, 3) maps homogeneous crop coordinates to source coordinates; it is
  a similarity (rotation, uniform scale, translation) with last row (0, 0, 1).
- Downscaling (more than one source pixel per crop pixel) first shrinks the needed source
  region with area averaging (``cv2.INTER_AREA``), then warps the rest with bicubic
  interpolation, so fine texture (hair, eyelashes) does not alias.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def similarity_matrix(scale: float, angle_rad: float, translation_xy: tuple[float, float]) -> np.ndarray:
    """(3, 3) float64: p -> scale * R(angle) p + t; R rotates +x towards +y (image clockwise)."""
    c, s = math.cos(angle_rad) * scale, math.sin(angle_rad) * scale
    return np.array([[c, -s, translation_xy[0]], [s, c, translation_xy[1]], [0.0, 0.0, 1.0]])


def similarity_scale(matrix: np.ndarray) -> float:
    """Uniform scale of a (3, 3) similarity (source px per crop px for ``crop_to_source``)."""
    return float(math.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:2, :2]))))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map points through a (3, 3) similarity.

    points: (..., 2) or (..., 3); a third column (MediaPipe-style depth in pixels) is
    scaled by the similarity's scale and not translated. Returns the same shape and dtype.
    """
    points = np.asarray(points)
    matrix = np.asarray(matrix, dtype=np.float64)
    xy = points[..., :2].astype(np.float64) @ matrix[:2, :2].T + matrix[:2, 2]
    if points.shape[-1] == 2:
        return xy.astype(points.dtype)
    depth = points[..., 2:3].astype(np.float64) * similarity_scale(matrix)
    return np.concatenate([xy, depth, points[..., 3:]], axis=-1).astype(points.dtype)


def _to_cv_matrix(crop_to_source: np.ndarray) -> np.ndarray:
    """(2, 3) for cv2.warpAffine(..., WARP_INVERSE_MAP): integer-centred pixel indices."""
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    return (unshift @ np.asarray(crop_to_source, dtype=np.float64) @ shift)[:2]


def _needed_source_box(crop_to_source: np.ndarray, size: int, width: int, height: int,
                       pad: int) -> tuple[int, int, int, int] | None:
    """Integer source box (x0, y0, x1, y1) that the crop samples, clamped; None if empty."""
    corners = np.array([[0.0, 0.0], [size, 0.0], [0.0, size], [size, size]])
    mapped = transform_points(corners, crop_to_source)
    x0 = max(0, int(math.floor(mapped[:, 0].min())) - pad)
    y0 = max(0, int(math.floor(mapped[:, 1].min())) - pad)
    x1 = min(width, int(math.ceil(mapped[:, 0].max())) + pad)
    y1 = min(height, int(math.ceil(mapped[:, 1].max())) + pad)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return x0, y0, x1, y1


def warp_to_crop(image: np.ndarray, crop_to_source: np.ndarray, size: int, *,
                 border: str = "replicate") -> np.ndarray:
    """Resample a (size, size) crop from ``image`` through ``crop_to_source``.

    image: (H, W) or (H, W, C), uint8 or float32. border: "replicate" (repeat the edge
    pixels; good input for networks) or "constant" (zeros). Returns the crop with the
    image's dtype and channel layout; float output is clipped to the input's range
    [min(0, lo), max(1, hi)] so bicubic overshoot does not leave it.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    border_mode = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}[border]
    matrix = np.asarray(crop_to_source, dtype=np.float64)
    scale = similarity_scale(matrix)
    pad = int(math.ceil(2 * max(scale, 1.0))) + 2
    box = _needed_source_box(matrix, size, width, height, pad)
    if box is None:  # the crop lies wholly outside the source
        if border == "constant":
            return np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
        box = (0, 0, width, height)  # replicate the nearest edge
    x0, y0, x1, y1 = box
    region = image[y0:y1, x0:x1]
    region_to_source = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    if scale > 1.0:  # shrink by area averaging first: the warp below then samples ~1:1
        new_w = max(1, int(round(region.shape[1] / scale)))
        new_h = max(1, int(round(region.shape[0] / scale)))
        factor_x, factor_y = region.shape[1] / new_w, region.shape[0] / new_h
        region = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
        region_to_source = region_to_source @ np.diag([factor_x, factor_y, 1.0])
    crop_to_region = np.linalg.inv(region_to_source) @ matrix
    out = cv2.warpAffine(np.ascontiguousarray(region), _to_cv_matrix(crop_to_region), (size, size),
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=border_mode, borderValue=0)
    if out.ndim == 2 and image.ndim == 3:  # cv2 drops a single channel axis
        out = out[:, :, None]
    if np.issubdtype(out.dtype, np.floating):
        lo, hi = float(min(0.0, image.min(initial=0.0))), float(max(1.0, image.max(initial=1.0)))
        np.clip(out, lo, hi, out=out)
    return out


def crop_validity(source_size: tuple[int, int], crop_to_source: np.ndarray, size: int,
                  picture: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the fraction of each crop pixel that lies inside the source.

    Computed analytically from the mapped pixel centres (a pixel's footprint is taken as a
    square of the similarity's scale), so it costs nothing for huge sources and has soft,
    antialiased edges where the crop leaves the image. source_size: (width, height);
    picture: (x0, y0, x1, y1) the part of the source that is the scene (inside black bars,
    ``letterbox.picture_box``), the whole source by default.
    """
    width, height = source_size
    x0, y0, x1, y1 = picture if picture is not None else (0.0, 0.0, width, height)
    matrix = np.asarray(crop_to_source, dtype=np.float64)
    footprint = max(similarity_scale(matrix), 1e-6)
    centres = np.arange(size, dtype=np.float64) + 0.5
    grid_x, grid_y = np.meshgrid(centres, centres)
    source_x = matrix[0, 0] * grid_x + matrix[0, 1] * grid_y + matrix[0, 2]
    source_y = matrix[1, 0] * grid_x + matrix[1, 1] * grid_y + matrix[1, 2]
    inside_x = np.clip(np.minimum(source_x - x0, x1 - source_x) / footprint + 0.5, 0.0, 1.0)
    inside_y = np.clip(np.minimum(source_y - y0, y1 - source_y) / footprint + 0.5, 0.0, 1.0)
    return (inside_x * inside_y).astype(np.float32)

"""Face boxes at every scale: BlazeFace over a pyramid of overlapping tiles.

Why: BlazeFace sees the whole image through a 128 px (short range) or 192 px (full range)
input, so it misses faces smaller than about 5-8 % of the image side -- an 80 px face in a
4000 px photo, or the second, smaller person in a wide shot. We run it on the whole image,
then on tiles half as large (overlapping by half, so any face up to half a tile fits wholly
in one), and so on, until the faces we still could miss are smaller than ``min_face_px`` or
than ``relative_min`` of the largest face verified so far (the caller verifies candidates
by fitting a face mesh, so a false alarm cannot end the search early). Each level is first
shrunk by area averaging so a tile reaches the detector at about ``TILE_PX`` pixels (no
aliasing from MediaPipe's own bilinear resize of a huge image).

The detectors are passed in as callables, so the tiling logic is testable without MediaPipe.
"""

from __future__ import annotations

from typing import Callable, Iterator

import cv2
import numpy as np

Box = tuple[float, float, float, float]
# image (H, W, 3) uint8 -> [(box in that image's pixels, score)]
Detector = Callable[[np.ndarray], list[tuple[Box, float]]]

TILE_PX = 384
# The full-range detector finds faces down to ~8 % of its input side reliably.
DETECTABLE_FRACTION = 0.08
MIN_FACE_PX = 60.0  # the no-face message promises faces from ~80 px; this leaves room
RELATIVE_MIN = 0.3
NMS_IOU = 0.3


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_boxes(boxes: list[tuple[Box, float]], iou: float = NMS_IOU) -> list[tuple[Box, float]]:
    """Greedy non-maximum suppression: highest score first, drop boxes overlapping a kept one."""
    kept: list[tuple[Box, float]] = []
    for box, score in sorted(boxes, key=lambda item: -item[1]):
        if all(box_iou(box, other) < iou for other, _ in kept):
            kept.append((box, score))
    return kept


def tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering [0, length) with stride tile/2; the
    last tile is flush with the end. A single 0 when one tile covers everything."""
    if length <= tile:
        return [0]
    stride = max(1, tile // 2)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def pyramid_tiles(width: int, height: int, tile_side_px: float) -> Iterator[tuple[int, int, int, int]]:
    """Tiles (x0, y0, x1, y1) in source pixels, side ``tile_side_px``, overlapping by half."""
    side = max(1, int(round(tile_side_px)))
    for y0 in tile_starts(height, side):
        for x0 in tile_starts(width, side):
            yield x0, y0, min(width, x0 + side), min(height, y0 + side)


class TiledFaceSearch:
    """Yields candidate face boxes level by level, coarse to fine.

    The caller verifies the candidates (fits a face mesh) and reports each verified face
    through ``add_verified(box)``; the search stops once the faces it could still miss are
    smaller than ``min_face_px`` or than ``relative_min`` of the largest verified face --
    so an unverified false alarm never stops it early.
    """

    def __init__(self, image_rgb: np.ndarray, whole_image_detectors: list[Detector], tile_detector: Detector, *,
                 min_face_px: float = MIN_FACE_PX, relative_min: float = RELATIVE_MIN):
        self.image_rgb = image_rgb
        self.whole_image_detectors = whole_image_detectors
        self.tile_detector = tile_detector
        self.min_face_px = min_face_px
        self.relative_min = relative_min
        self.largest_verified_px = 0.0
        self._yielded: list[Box] = []

    def add_verified(self, box: Box) -> None:
        """Report a verified face (its detector box, source pixels)."""
        self.largest_verified_px = max(self.largest_verified_px, box[2] - box[0], box[3] - box[1])

    def levels(self) -> Iterator[list[tuple[Box, float]]]:
        """Each level's new boxes (x0, y0, x1, y1 source pixels, score), best score first."""
        height, width = self.image_rgb.shape[:2]
        found: list[tuple[Box, float]] = []
        for detector in self.whole_image_detectors:
            found += detector(self.image_rgb)
        tile_side = float(max(width, height))
        while True:
            yield self._new(merge_boxes(found))
            covered_down_to = DETECTABLE_FRACTION * tile_side
            if covered_down_to <= max(self.min_face_px, self.relative_min * self.largest_verified_px):
                return
            tile_side /= 2.0
            found = _detect_level(self.image_rgb, tile_side, self.tile_detector)

    def _new(self, boxes: list[tuple[Box, float]]) -> list[tuple[Box, float]]:
        """Drop boxes (nearly) identical to ones an earlier level already offered."""
        fresh = [(b, s) for b, s in boxes if all(box_iou(b, old) < 0.7 for old in self._yielded)]
        self._yielded += [b for b, _ in fresh]
        return fresh


def _detect_level(image_rgb: np.ndarray, tile_side: float, detector: Detector) -> list[tuple[Box, float]]:
    """Run ``detector`` on all tiles of one level; boxes in source pixels."""
    height, width = image_rgb.shape[:2]
    scale = min(1.0, TILE_PX / tile_side)  # shrunk px per source px
    if scale < 1.0:
        shrunk = cv2.resize(image_rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                            interpolation=cv2.INTER_AREA)
    else:
        shrunk = image_rgb
    sx, sy = shrunk.shape[1] / width, shrunk.shape[0] / height
    boxes = []
    for x0, y0, x1, y1 in pyramid_tiles(shrunk.shape[1], shrunk.shape[0], tile_side * scale):
        tile = np.ascontiguousarray(shrunk[y0:y1, x0:x1])
        for (bx0, by0, bx1, by1), score in detector(tile):
            boxes.append((((bx0 + x0) / sx, (by0 + y0) / sy, (bx1 + x0) / sx, (by1 + y0) / sy), score))
    return boxes


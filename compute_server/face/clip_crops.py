"""Training-size crops of the chosen frames of a clip, decoded in one pass.

Why: a 10-second 1080p clip is 300 x 6 MB of pixels; the trainer needs 256 px crops of
~150 of them. One decode pass crops each candidate at once (axis-aligned, so the crop is
a change of intrinsics only: no roll folded into the camera) and keeps, per stretch of
the clip, only the sharpest crop seen so far; nothing full-size outlives its frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .align import DEFAULT_MARGIN, crop_to_source_transform
from .video import iter_video_frames
from .letterbox import picture_box
from .warp import crop_validity, similarity_scale, warp_to_crop

DECODE_MAX_SIDE = 1920  # 4K frames are shrunk before cropping (a 512 px crop never needs more)


@dataclass
class ClipCrop:
    """One frame's crop. S = crop size.

    index: frame index in the clip. image: (S, S, 3) uint8 RGB. valid: (S, S) float32 in
    [0, 1], the part of each pixel inside the frame. crop_to_source: (3, 3) axis-aligned
    similarity, crop pixels -> full-frame pixels (the landmarks' and the camera's units).
    sharpness: variance of the Laplacian of the grey crop (see ``sharpness``).
    """

    index: int
    image: np.ndarray
    valid: np.ndarray
    crop_to_source: np.ndarray
    sharpness: float


def axis_aligned_crop(landmarks_px: np.ndarray, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(3, 3) crop_to_source with the portrait crop's centre and scale but no roll.

    landmarks_px: (478, 3) full-frame pixels. The single-photo crop (align.py) turns the
    eye line level; here the camera keeps the frame's axes so that a crop changes only the
    principal point and focal length."""
    similarity = crop_to_source_transform(landmarks_px, size, margin=margin)
    scale = similarity_scale(similarity)
    centre = similarity @ np.array([size / 2.0, size / 2.0, 1.0])
    return np.array([[scale, 0.0, centre[0] - scale * size / 2.0],
                     [0.0, scale, centre[1] - scale * size / 2.0],
                     [0.0, 0.0, 1.0]])


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a (H, W) float image in [0, 1]: low for motion blur and
    defocus (compare frames of one clip at one crop size only)."""
    g = np.asarray(gray, dtype=np.float32)
    lap = -4.0 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def crop_clip_frames(path: str, bins: Sequence[np.ndarray], landmarks_px: np.ndarray, frame_size: tuple[int, int],
                     size: int, *, max_frames: int | None = None, check_cancel: Callable[[], None] | None = None,
                     progress: Callable[[float, str], None] | None = None) -> list[ClipCrop]:
    """Decode ``path`` once and return the sharpest crop of each bin of frame indices, in
    clip order.

    bins: arrays of candidate frame indices (see tracking.frame_selection). landmarks_px:
    (N, 478, 3) full-frame pixels (finite on every candidate). frame_size: (width, height)
    the landmarks refer to. size: crop side in pixels.
    """
    bin_of = {int(i): b for b, members in enumerate(bins) for i in members}
    best: dict[int, ClipCrop] = {}
    last = max(bin_of) if bin_of else -1
    width = frame_size[0]
    for frame in iter_video_frames(path, max_frames=max_frames, max_side=DECODE_MAX_SIDE):
        if check_cancel is not None:
            check_cancel()
        if frame.index > last:
            break
        b = bin_of.get(frame.index)
        if b is None:
            continue
        crop_to_source = axis_aligned_crop(landmarks_px[frame.index], size)
        shrink = frame.image.shape[1] / width
        to_decoded = np.diag([shrink, shrink, 1.0]) @ crop_to_source
        image = warp_to_crop(frame.image, to_decoded, size, border="replicate")
        score = sharpness(image.mean(axis=2) / 255.0)
        if b not in best or score > best[b].sharpness:
            valid = crop_validity((frame.image.shape[1], frame.image.shape[0]), to_decoded, size,
                                  picture_box(frame.image))
            best[b] = ClipCrop(index=frame.index, image=image, valid=valid, crop_to_source=crop_to_source,
                               sharpness=score)
        if progress is not None and frame.index % 10 == 0:
            progress(min(1.0, (frame.index + 1) / (last + 1)), f"cropping frame {frame.index + 1} of {last + 1}")
    return sorted(best.values(), key=lambda c: c.index)

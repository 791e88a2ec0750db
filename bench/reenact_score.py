"""Scoring one driven frame of the self-reenactment benchmark (``bench/reenact.py``).

What is compared: the real frame's crop matted by our matting (``face.matte``, MediaPipe
selfie segmentation refined by a guided filter) and the render's own alpha, both limited
to the same head region (the tracked mesh's silhouette grown by the hair margin, above
its neck cut: ``reenact_clip.head_region_mask``) and to the part of the crop inside the
video frame's picture (black letterbox bars excluded), then composited on the same white
background. PSNR and SSIM over the union of the two head masks (silhouette errors count),
PSNR also over their shared interior (``bench.metrics``); AKD between MediaPipe's 468
face-mesh points found on the two composited images; identity distance (dlib descriptor,
``bench.identity``) of the render to the source frame composited the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.metrics import composite, evaluation_mask, interior_mask, masked_psnr, masked_ssim
from bench.reenact_protocol import FrameScore

BACKGROUND = (1.0, 1.0, 1.0)
AKD_POINTS = 468                    # MediaPipe's face mesh without the 10 iris points


@dataclass
class HeadPair:
    """A real crop and its render, each (S, S, 3) float in [0, 1] on BACKGROUND, with the
    head masks they were composited with, (S, S) float in [0, 1]."""

    real: np.ndarray
    render: np.ndarray
    real_alpha: np.ndarray
    render_alpha: np.ndarray

    @property
    def union(self) -> np.ndarray:
        return evaluation_mask(self.real_alpha, self.render_alpha)

    @property
    def interior(self) -> np.ndarray:
        return interior_mask(self.real_alpha, self.render_alpha)


def real_matte(crop_rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(S, S) float: our portrait matting of a (S, S, 3) uint8 crop (0 outside the frame)."""
    from compute_server.face import thread_cache
    from compute_server.face.matte import portrait_matte

    return portrait_matte(crop_rgb, valid, thread_cache.portrait_segmenter()).matte


def head_pair(crop_rgb: np.ndarray, matte: np.ndarray, valid: np.ndarray, region: np.ndarray,
              render_rgba: np.ndarray) -> HeadPair:
    """Both images matted to the head and composited on BACKGROUND.

    crop_rgb: (S, S, 3) uint8 real crop; matte, valid, region: (S, S) float in [0, 1];
    render_rgba: (S, S, 4) float straight-alpha render at the same crop.
    """
    keep = np.asarray(valid, np.float64) * np.asarray(region, np.float64)
    real_alpha = np.asarray(matte, np.float64) * keep
    render_alpha = np.asarray(render_rgba, np.float64)[..., 3] * keep
    real = composite(np.dstack([np.asarray(crop_rgb, np.float64) / 255.0, real_alpha]), BACKGROUND)
    render = composite(np.dstack([np.asarray(render_rgba, np.float64)[..., :3], render_alpha]), BACKGROUND)
    return HeadPair(real, render, real_alpha, render_alpha)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def keypoint_distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Mean distance (px) between two (478, >=2) MediaPipe landmark sets over the 468
    face-mesh points; None when either is missing."""
    if a is None or b is None:
        return None
    return float(np.linalg.norm(np.asarray(a)[:AKD_POINTS, :2] - np.asarray(b)[:AKD_POINTS, :2], axis=1).mean())


class FrameScorer:
    """Scores HeadPairs against one source frame. Holds a still-image landmarker (close it,
    or use as a context manager). lpips_fn: bench.metrics LPIPS or None."""

    def __init__(self, source_image: np.ndarray, lpips_fn=None):
        from bench.identity import face_descriptor
        from compute_server.face.landmarker import FaceLandmarker

        self.lpips_fn = lpips_fn
        self.landmarker = FaceLandmarker(static_image_mode=True, max_faces=1)
        self.source_descriptor = face_descriptor(to_uint8(source_image))

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        faces = self.landmarker.detect(to_uint8(image))
        return faces[0].landmarks if faces else None

    def identity(self, image: np.ndarray) -> float | None:
        from bench.identity import face_descriptor, identity_distance

        if self.source_descriptor is None:
            return None
        found = face_descriptor(to_uint8(image))
        return None if found is None else identity_distance(found, self.source_descriptor)

    def score(self, frame: int, yaw_diff_deg: float, jaw_open_rad: float, pair: HeadPair) -> FrameScore:
        union = pair.union
        return FrameScore(
            frame=int(frame), yaw_diff_deg=float(yaw_diff_deg), jaw_open_rad=float(jaw_open_rad),
            psnr=masked_psnr(pair.render, pair.real, union),
            psnr_interior=masked_psnr(pair.render, pair.real, pair.interior),
            ssim=masked_ssim(pair.render, pair.real, union),
            lpips=self.lpips_fn(pair.render, pair.real, union) if self.lpips_fn and union.any() else None,
            akd_px=keypoint_distance(self.landmarks(pair.real), self.landmarks(pair.render)),
            identity_distance=self.identity(pair.render))

    def close(self) -> None:
        self.landmarker.close()

    def __enter__(self) -> "FrameScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

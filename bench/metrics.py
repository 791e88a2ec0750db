"""Image metrics of the quality benchmarks, on a foreground mask.

Images are (H, W, 3) float in [0, 1] (numpy), masks (H, W) bool. SSIM is the pipeline's
own (``compute_server.splats.losses.ssim_map``: Gaussian window 11 / sigma 1.5, Wang et al.
2004) averaged over the mask, so benchmark and training report the same quantity. LPIPS
(AlexNet) is computed only when the ``lpips`` package and both of its weight files are
already on this machine; nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from compute_server.splats.losses import ssim_map

ALPHA_THRESHOLD = 0.5


def composite(rgba: np.ndarray, background: tuple[float, float, float]) -> np.ndarray:
    """(H, W, 4) straight-alpha RGBA (uint8 or float in [0, 1]) -> (H, W, 3) float over a
    flat ``background`` colour."""
    rgba = np.asarray(rgba)
    rgba = rgba.astype(np.float64) / 255.0 if rgba.dtype == np.uint8 else rgba.astype(np.float64)
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + np.asarray(background, dtype=np.float64) * (1.0 - alpha)


def evaluation_mask(gt_alpha: np.ndarray, render_alpha: np.ndarray) -> np.ndarray:
    """(H, W) bool: where either image has foreground (alpha > 0.5), so missing and extra
    silhouette both count."""
    return (np.asarray(gt_alpha) > ALPHA_THRESHOLD) | (np.asarray(render_alpha) > ALPHA_THRESHOLD)


def interior_mask(gt_alpha: np.ndarray, render_alpha: np.ndarray, erode_px: int = 2) -> np.ndarray:
    """(H, W) bool: where both images are foreground, shrunk by ``erode_px`` so antialiased
    edges are left out: the pixels that measure appearance, not silhouette."""
    from scipy import ndimage

    both = (np.asarray(gt_alpha) > ALPHA_THRESHOLD) & (np.asarray(render_alpha) > ALPHA_THRESHOLD)
    return ndimage.binary_erosion(both, iterations=erode_px) if erode_px else both


def silhouette_iou(gt_alpha: np.ndarray, render_alpha: np.ndarray) -> float:
    """Intersection over union of the two foregrounds (alpha > 0.5); NaN if both are empty."""
    a, b = np.asarray(gt_alpha) > ALPHA_THRESHOLD, np.asarray(render_alpha) > ALPHA_THRESHOLD
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def masked_psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of (H, W, 3) images in [0, 1] over the (H, W) mask; inf if identical
    there, NaN for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return float("nan")
    mse = float(np.mean((np.asarray(image, np.float64)[mask] - np.asarray(reference, np.float64)[mask]) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def masked_ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the (H, W) mask of (H, W, 3) images in [0, 1] (statistics over the
    whole image, so edges see their real neighbourhood); NaN for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return float("nan")
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))[None]  # noqa: E731
    with torch.no_grad():
        per_pixel = ssim_map(t(image), t(reference))[0].numpy()
    return float(per_pixel[mask].mean())


def mask_bbox(mask: np.ndarray, margin: int = 8) -> tuple[slice, slice]:
    """Row and column slices of the mask's bounding box grown by ``margin`` pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)),
            slice(max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)))


# ----------------------------------------------------------------------------- LPIPS

@dataclass
class LpipsStatus:
    """fn: (image, reference, mask) -> float, or None with ``reason`` why it is unavailable."""

    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None
    reason: str


def _local_file(path: str) -> bool:
    return os.path.isfile(path) and os.path.getsize(path) > 0


def load_lpips() -> LpipsStatus:
    """LPIPS-Alex if ``lpips`` and its weights (its linear layers, torchvision's AlexNet in
    the torch hub cache) are on disk; never downloads."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return LpipsStatus(None, "the lpips package is not installed")
    linear = os.path.join(list(spec.submodule_search_locations)[0], "weights", "v0.1", "alex.pth")
    backbone = os.path.join(torch.hub.get_dir(), "checkpoints", "alexnet-owt-7be5be79.pth")
    missing = [p for p in (linear, backbone) if not _local_file(p)]
    if missing:
        return LpipsStatus(None, "LPIPS weights not on this machine: " + ", ".join(missing))
    import lpips

    net = lpips.LPIPS(net="alex", verbose=False).eval()

    def score(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
        """LPIPS on the mask's bounding box (both images already share one background)."""
        rows, cols = mask_bbox(np.asarray(mask, dtype=bool))

        def t(a):  # (H, W, 3) in [0, 1] -> (1, 3, h, w) in [-1, 1], cropped
            return torch.as_tensor(np.asarray(a, np.float32)[rows, cols]).permute(2, 0, 1)[None] * 2 - 1

        with torch.no_grad():
            return float(net(t(image), t(reference)).item())

    return LpipsStatus(score, "LPIPS-Alex (local weights)")

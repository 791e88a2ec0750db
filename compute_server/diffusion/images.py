"""Moving views between the camera's resolution (numpy, channels last) and a model's
(torch, channels first), and blending kept pixels back in.

Why: the training views are at the portrait crop's size (e.g. 512 or 768 px), a model
works at its own resolution with sides that are multiples of its latent grid; every
backend resizes the same way, and the photo's own pixels are composited back at full
resolution so diffusion never blurs what the camera actually saw.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def model_size(width: int, height: int, resolution: int, multiple: int) -> tuple[int, int]:
    """(w, h) with the long side about ``resolution`` and both sides multiples of
    ``multiple`` (the VAE factor times the UNet's downsampling), keeping the aspect."""
    scale = resolution / max(width, height)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


def to_model(images: np.ndarray, size: tuple[int, int], device, dtype=torch.float32) -> torch.Tensor:
    """(K, H, W, C) or (K, H, W) numpy -> (K, C, h, w) tensor resized to size = (w, h)
    (bilinear, antialiased when shrinking)."""
    x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
    if x.dim() == 3:
        x = x[..., None]
    x = x.permute(0, 3, 1, 2)
    w, h = size
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.to(device=device, dtype=dtype)


def from_model(x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(K, C, h, w) tensor -> (K, H, W, C) float32 numpy at size = (W, H)."""
    w, h = size
    x = x.detach().float()
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)


def latent_keep_mask(known: np.ndarray, size: tuple[int, int], device) -> torch.Tensor:
    """(K, H, W) known-pixel mask -> (K, 1, h, w) latent cells that are entirely known
    (area average of 1), so latent blending never pins a cell that straddles the
    boundary of what the photo saw."""
    x = torch.as_tensor(np.ascontiguousarray(known), dtype=torch.float32)[:, None]
    w, h = size
    x = F.interpolate(x, size=(h, w), mode="area")
    return (x >= 0.999).float().to(device)


def feathered(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """(K, H, W) binary-ish mask shrunk by ``radius_px`` and softened over the same width:
    1 well inside, falling to 0 at the original edge (for pasting photo pixels back)."""
    if radius_px <= 0:
        return np.clip(mask, 0.0, 1.0).astype(np.float32)
    x = torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)[:, None]
    k = 2 * radius_px + 1
    eroded = -F.max_pool2d(-x, k, stride=1, padding=radius_px)
    soft = F.avg_pool2d(eroded, k, stride=1, padding=radius_px, count_include_pad=False)
    return torch.minimum(soft, x)[:, 0].numpy().astype(np.float32)


def over_background(images: np.ndarray, masks: np.ndarray, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(K, H, W, 3) colours meaningful where masks (K, H, W) > 0 -> composited over a
    plain background (what the models saw in training: a subject on a plain backdrop)."""
    m = np.clip(masks, 0.0, 1.0)[..., None]
    return (images * m + np.asarray(background, dtype=np.float32) * (1.0 - m)).astype(np.float32)

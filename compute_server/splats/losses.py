"""Image losses and Gaussian regularizers of the avatar optimization (pure torch).

Images are (B, H, W, C) in [0, 1]; masks (B, H, W) in [0, 1].
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float, channels: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(dtype)
    window = (g[:, None] @ g[None, :])[None, None].repeat(channels, 1, 1, 1)
    return window.to(device)


def ssim_map(img1: torch.Tensor, img2: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (B, H, W) of (B, H, W, C) images, averaged over channels.

    Gaussian-weighted statistics as in Wang et al. 2004 (and 3DGS's training loss), with
    zero padding at the borders.
    """
    x = img1.permute(0, 3, 1, 2)
    y = img2.permute(0, 3, 1, 2)
    c = x.shape[1]
    w = _gaussian_window(window_size, sigma, c, str(x.device), x.dtype)
    pad = window_size // 2
    mu_x = F.conv2d(x, w, padding=pad, groups=c)
    mu_y = F.conv2d(y, w, padding=pad, groups=c)
    sxx = F.conv2d(x * x, w, padding=pad, groups=c) - mu_x ** 2
    syy = F.conv2d(y * y, w, padding=pad, groups=c) - mu_y ** 2
    sxy = F.conv2d(x * y, w, padding=pad, groups=c) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean(1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, H, W[, C]) values weighted by a (B, H, W) mask (plain mean if None)."""
    if mask is None:
        return values.mean()
    if values.dim() == mask.dim() + 1:
        mask = mask[..., None].expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1e-8)


def photometric_loss(render: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None,
                     ssim_weight: float = 0.2) -> torch.Tensor:
    """(1 - w) L1 + w D-SSIM, as 3DGS / GaussianAvatars; ``weight_map`` (B, H, W) restricts
    both terms (e.g. to the foreground plus a margin, or to what a view is trusted for)."""
    l1 = masked_mean((render - target).abs(), weight_map)
    dssim = masked_mean(1.0 - ssim_map(render, target), weight_map)
    return (1 - ssim_weight) * l1 + ssim_weight * dssim


def position_regularizer(means_local: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """GaussianAvatars' L_pos: penalize local offsets beyond ``threshold`` triangle scales."""
    return F.relu(torch.linalg.norm(means_local, dim=-1) - threshold).mean()


def scale_regularizer(log_scales_local: torch.Tensor, threshold: float = 0.6) -> torch.Tensor:
    """GaussianAvatars' L_scale: penalize local scales above ``threshold`` (large Gaussians jitter
    when their triangle rotates slightly)."""
    return F.relu(torch.exp(log_scales_local) - threshold).mean()


def normal_consistency_loss(rendered_normals: torch.Tensor, target_normals: torch.Tensor,
                            mask: torch.Tensor) -> torch.Tensor:
    """GeoDiff4D's normal regularization: 1 - |cos| between rendered Gaussian normals and
    target normals (mesh normal map or diffusion normals), over ``mask`` (B, H, W).

    The absolute cosine makes it indifferent to the sign of a Gaussian's shortest axis.
    """
    n1 = F.normalize(rendered_normals, dim=-1, eps=1e-6)
    n2 = F.normalize(target_normals, dim=-1, eps=1e-6)
    cos = (n1 * n2).sum(-1).abs()
    return masked_mean(1.0 - cos, mask)


def psnr(render: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB over ``mask`` (all pixels if None), images in [0, 1]."""
    mse = masked_mean((render - target) ** 2, mask)
    return float(-10.0 * torch.log10(mse.clamp(min=1e-12)))

"""Cameras as torch tensors, batched the way gsplat takes them (viewmats, Ks).

``shared.camera.Camera`` is the record that travels; this module turns lists of them
into ``(C, 4, 4)`` / ``(C, 3, 3)`` tensors and projects points with them, differentiably,
for the tracker and the optimizer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from shared.camera import Camera


def stack_cameras(cameras: Sequence[Camera], device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """List of C cameras -> viewmats (C, 4, 4), Ks (C, 3, 3)."""
    viewmats = torch.as_tensor(np.stack([c.world_to_camera for c in cameras]), dtype=dtype, device=device)
    Ks = torch.as_tensor(np.stack([c.K for c in cameras]), dtype=dtype, device=device)
    return viewmats, Ks


def transform_points(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply (B, 4, 4) rigid transforms to (B, N, 3) points."""
    return points @ matrix[:, :3, :3].transpose(1, 2) + matrix[:, None, :3, 3]


def project_points(points_world: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
                   min_depth: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection.

    points_world: (B, N, 3) head space; viewmats: (B, 4, 4); Ks: (B, 3, 3).
    Returns pixels (B, N, 2) (pixel centres at +0.5, like every image here) and camera
    depths (B, N). Depth is clamped to ``min_depth`` in the division so points behind the
    camera give large but finite pixels rather than NaNs.
    """
    cam = transform_points(points_world, viewmats)
    z = cam[..., 2]
    inv_z = 1.0 / z.clamp(min=min_depth)
    x = cam[..., 0] * inv_z
    y = cam[..., 1] * inv_z
    u = Ks[:, None, 0, 0] * x + Ks[:, None, 0, 1] * y + Ks[:, None, 0, 2]
    v = Ks[:, None, 1, 1] * y + Ks[:, None, 1, 2]
    return torch.stack([u, v], dim=-1), z


def camera_centers(viewmats: torch.Tensor) -> torch.Tensor:
    """(C, 4, 4) world_to_camera -> (C, 3) camera centres in world space."""
    rot = viewmats[:, :3, :3]
    return -(rot.transpose(1, 2) @ viewmats[:, :3, 3:4])[..., 0]

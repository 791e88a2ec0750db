"""Per-splat normals and how to render them as extra colour channels.

Why: GeoDiff4D regularizes rendered normals against predicted ones (its eq. 2, following
GaussianShader): a flattened Gaussian's normal is its shortest axis. The rasterizers
composite any feature channels, so normals ride along with RGB.

Recipe (camera-space normal map, OpenCV axes, for a loss against predicted normals):

    n_world = orient_towards(splat_normals_world(quats, scales), means, camera_centers)
    n_cam = normals_to_camera(n_world, viewmats)                          # (C, N, 3)
    feats = torch.cat([rgb.expand(C, N, 3), n_cam], -1)                   # (C, N, 6)
    bg = torch.cat([rgb_background, torch.zeros(C, 3)], -1)               # zero for normals
    out, alpha, _ = rasterize_splats(..., feats, ..., backgrounds=bg)
    normals, valid = normalize_rendered_normals(out[..., 3:6], alpha)

The composited normal is an alpha-weighted sum, so it shrinks where coverage is partial;
dividing by alpha (only where alpha is large enough to be meaningful) and renormalizing
gives unit normals, and ``valid`` marks where they may be compared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .raster_torch import quat_to_rotmat


def splat_normals_world(quats: Tensor, scales: Tensor) -> Tensor:
    """Unit normal of each Gaussian: its smallest-scale axis, rotated to world (head) space.

    quats (N, 4) wxyz (any length), scales (N, 3) linear. Returns (N, 3), sign arbitrary
    (see ``orient_towards``). Differentiable with respect to quats; the choice of axis is not.
    """
    rot = quat_to_rotmat(quats)  # (N, 3, 3), columns = local axes in world space
    axis = torch.argmin(scales.detach(), dim=-1)  # (N,)
    index = axis.view(-1, 1, 1).expand(-1, 3, 1)
    return torch.gather(rot, 2, index).squeeze(-1)


def orient_towards(normals: Tensor, means: Tensor, camera_centers: Tensor) -> Tensor:
    """Flip normals so they face the camera(s).

    normals (N, 3), means (N, 3) head space; camera_centers (3,) -> returns (N, 3), or
    (C, 3) -> returns (C, N, 3). A normal perpendicular to the view ray is left as is.
    """
    if camera_centers.dim() == 1:
        to_camera = camera_centers[None, :] - means
        sign = torch.where((normals * to_camera).sum(-1, keepdim=True) < 0, -1.0, 1.0)
        return normals * sign.to(normals.dtype)
    to_camera = camera_centers[:, None, :] - means[None, :, :]  # (C, N, 3)
    sign = torch.where((normals[None] * to_camera).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return normals[None] * sign.to(normals.dtype)


def camera_centers_from_viewmats(viewmats: Tensor) -> Tensor:
    """(C, 4, 4) world_to_camera -> (C, 3) camera centres in world space."""
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(rot.transpose(1, 2) @ trans.unsqueeze(-1)).squeeze(-1)


def normals_to_camera(normals_world: Tensor, viewmats: Tensor) -> Tensor:
    """Rotate world normals into each camera's OpenCV frame (+X right, +Y down, +Z forward).

    normals_world (N, 3) or (C, N, 3); viewmats (C, 4, 4). Returns (C, N, 3).
    """
    rot = viewmats[:, :3, :3]
    if normals_world.dim() == 2:
        return torch.einsum("cij,nj->cni", rot, normals_world)
    return torch.einsum("cij,cnj->cni", rot, normals_world)


def normalize_rendered_normals(rendered: Tensor, alphas: Tensor, *,
                               min_alpha: float = 0.5) -> tuple[Tensor, Tensor]:
    """Turn composited normal channels into unit normals where coverage is meaningful.

    rendered (..., H, W, 3) composited with a zero background; alphas (..., H, W, 1).
    Returns normals (..., H, W, 3) (unit where valid, 0 elsewhere) and valid (..., H, W)
    bool = alpha > min_alpha and a non-degenerate sum.
    """
    norm = rendered.norm(dim=-1)
    valid = (alphas[..., 0] > min_alpha) & (norm > 1e-6 * alphas[..., 0].clamp_min(1e-12))
    normals = F.normalize(rendered / alphas.clamp_min(min_alpha), dim=-1)
    return normals * valid[..., None].to(normals.dtype), valid

"""Triangle frames and posing of triangle-bound Gaussians, batched in torch.

The math is documented in ``shared.splat_format`` (the numpy reference); this is the
differentiable version the optimizer and renderer use, and ``tests/test_splat_binding.py``
keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def triangle_frames(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-triangle local frames.

    vertices: (B, V, 3); faces: (F, 3) long.
    Returns rotations (B, F, 3, 3) with columns (tangent, bitangent, normal), centroids
    (B, F, 3) and scales k (B, F) = mean of the first edge's length and the height over it.
    """
    # index_select, not vertices[:, faces]: its backward (index_add) is deterministic on the
    # CPU, while advanced indexing's (index_put with accumulate) varies run to run with threads
    tri = vertices.index_select(1, faces.reshape(-1)).reshape(*vertices.shape[:1], *faces.shape, 3)  # (B, F, 3, 3)
    e0 = tri[:, :, 1] - tri[:, :, 0]
    e1 = tri[:, :, 2] - tri[:, :, 0]
    len0 = torch.linalg.norm(e0, dim=-1).clamp(min=1e-12)
    tangent = e0 / len0[..., None]
    cross = torch.cross(e0, e1, dim=-1)
    double_area = torch.linalg.norm(cross, dim=-1).clamp(min=1e-12)
    normal = cross / double_area[..., None]
    bitangent = torch.cross(normal, tangent, dim=-1)
    rotations = torch.stack([tangent, bitangent, normal], dim=-1)
    centroids = tri.mean(dim=2)
    scales = 0.5 * (len0 + double_area / len0)
    return rotations, centroids, scales


def rotmat_to_quat(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (w, x, y, z), differentiable.

    Shepperd's method: the candidate with the largest pivot is used per matrix, so it is
    stable for every rotation (the frames of a head mesh take all orientations).
    """
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    pivots = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    candidates = torch.stack([
        torch.stack([pivots[..., 0], d21, d02, d10], -1),
        torch.stack([d21, pivots[..., 1], s01, s02], -1),
        torch.stack([d02, s01, pivots[..., 2], s12], -1),
        torch.stack([d10, s02, s12, pivots[..., 3]], -1),
    ], -2)
    best = pivots.argmax(dim=-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (..., 4) (w, x, y, z) quaternions: rotation b first, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], -1)


@dataclass
class PosedSplats:
    """Gaussians in head space for B frames (activated values)."""

    means: torch.Tensor      # (B, N, 3)
    quats: torch.Tensor      # (B, N, 4) unit
    scales: torch.Tensor     # (B, N, 3)


def pose_splats(means_local: torch.Tensor, quats_local: torch.Tensor, log_scales_local: torch.Tensor,
                binding: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor) -> PosedSplats:
    """Local Gaussians -> head space for each of B posed meshes.

    means_local (N, 3), quats_local (N, 4) (normalized here), log_scales_local (N, 3),
    binding (N,) long face index, vertices (B, V, 3), faces (F, 3).
    """
    rotations, centroids, scales = triangle_frames(vertices, faces)
    rot_b = rotations.index_select(1, binding)    # (B, N, 3, 3); index_select for reproducible gradients
    k_b = scales.index_select(1, binding)         # (B, N)
    means = torch.einsum("bnij,nj->bni", rot_b, means_local) * k_b[..., None] + centroids.index_select(1, binding)
    frame_q = rotmat_to_quat(rot_b)
    quats = F.normalize(quat_multiply(frame_q, F.normalize(quats_local, dim=-1)[None].expand_as(frame_q)), dim=-1)
    world_scales = torch.exp(log_scales_local)[None] * k_b[..., None]
    return PosedSplats(means=means, quats=quats, scales=world_scales)

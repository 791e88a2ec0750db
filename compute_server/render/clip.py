"""Clipping camera-space triangles against the near plane.

Why: a vertex at or behind the camera projects to nonsense (division by z <= 0), so a
triangle crossing the near plane must be cut, not dropped, or a camera close to the head
(or inside the mouth) would see holes. Only the visible part matters for visibility
decisions; barycentrics and depth are later recomputed against the parent face by ray
intersection, so the pieces only need their parent's index.

The cut points on an edge are always computed from its behind vertex towards its front
vertex, so two triangles sharing an edge produce bit-identical points (no cracks), and a
cyclic rotation of each triangle's vertices preserves its winding.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _rolled(tris: Tensor, first: Tensor) -> Tensor:
    """(T, 3, 3) triangles with vertex ``first[t]`` moved to slot 0, cyclic order kept."""
    idx = (first[:, None] + torch.arange(3, device=tris.device)[None, :]) % 3  # (T, 3)
    return torch.gather(tris, 1, idx[:, :, None].expand(-1, -1, 3))


def _cut(behind: Tensor, front: Tensor, near: float) -> Tensor:
    """Point on segment behind -> front (both (T, 3)) where z == near."""
    t = (near - behind[:, 2:3]) / (front[:, 2:3] - behind[:, 2:3])
    return behind + t * (front - behind)


def clip_triangles_near(tris_cam: Tensor, near: float) -> tuple[Tensor, Tensor]:
    """Cut (T, 3, 3) camera-space triangles (OpenCV, z forward) to the half-space z >= near.

    Returns (T', 3, 3) triangles and (T',) int64 index of each piece's source triangle.
    Fully visible triangles come first, unchanged and in order; fully clipped ones vanish;
    one vertex behind -> two pieces; two behind -> one piece.
    """
    behind = tris_cam[..., 2] < near  # (T, 3)
    n_behind = behind.sum(-1)
    ids = torch.arange(tris_cam.shape[0], device=tris_cam.device)
    pieces, parents = [tris_cam[n_behind == 0]], [ids[n_behind == 0]]
    one = torch.nonzero(n_behind == 1).squeeze(1)
    if one.numel():
        a, b, c = _rolled(tris_cam[one], torch.argmax(behind[one].to(torch.int8), dim=1)).unbind(1)
        ab, ac = _cut(a, b, near), _cut(a, c, near)
        pieces += [torch.stack([ab, b, c], 1), torch.stack([ab, c, ac], 1)]
        parents += [one, one]
    two = torch.nonzero(n_behind == 2).squeeze(1)
    if two.numel():
        a, b, c = _rolled(tris_cam[two], torch.argmin(behind[two].to(torch.int8), dim=1)).unbind(1)
        pieces.append(torch.stack([a, _cut(b, a, near), _cut(c, a, near)], 1))
        parents.append(two)
    return torch.cat(pieces), torch.cat(parents)

"""Interpolating per-vertex attributes over a mesh raster.

Why separate: the raster (which face, where on it) is computed once per view and reused
for every attribute a stage needs: normals for diffusion conditioning, UVs, positions for
splat initialization, colours for previews.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .mesh_raster import MeshRaster


def interpolate(raster: MeshRaster, vertex_attrs: Tensor, faces: Tensor) -> Tensor:
    """Barycentric interpolation of vertex attributes at every pixel centre.

    raster: from ``rasterize_mesh`` (C cameras, H x W).
    vertex_attrs: (V, A) shared by all cameras, or (C, V, A) per camera.
    faces: (F, 3) the faces the raster was made with.
    Returns (C, H, W, A), 0 on background. Differentiable with respect to vertex_attrs and,
    through ``raster.bary``, to the vertex positions the raster was computed from.
    """
    n_cams, height, width = raster.face_ids.shape
    if vertex_attrs.dim() == 2:
        vertex_attrs = vertex_attrs.unsqueeze(0).expand(n_cams, -1, -1)
    if vertex_attrs.dim() != 3 or vertex_attrs.shape[0] != n_cams:
        raise ValueError(f"vertex_attrs must be (V, A) or ({n_cams}, V, A), got {tuple(vertex_attrs.shape)}")
    n_verts, n_attrs = vertex_attrs.shape[1:]
    flat_ids = raster.face_ids.reshape(-1)
    covered = torch.nonzero(flat_ids >= 0).squeeze(1)
    camera = torch.div(covered, height * width, rounding_mode="floor")
    corner = faces.long()[flat_ids[covered]] + (camera * n_verts)[:, None]  # (M, 3)
    attrs_flat = vertex_attrs.reshape(-1, n_attrs)
    bary = raster.bary.reshape(-1, 3)[covered].to(attrs_flat.dtype)
    values = sum(bary[:, k:k + 1] * attrs_flat[corner[:, k]] for k in range(3))
    out = attrs_flat.new_zeros(flat_ids.numel(), n_attrs).index_put((covered,), values)
    return out.view(n_cams, height, width, n_attrs)

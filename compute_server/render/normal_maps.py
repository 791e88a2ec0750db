"""Normal maps of the head mesh, for diffusion conditioning and normal losses.

Why: GAF conditions its multi-view prior on normal maps rendered from the tracked FLAME
mesh, GeoDiff4D renders "head pose maps" the same way (vertex normals rasterized at the
target camera) and supervises splat normals. All of them need smooth (vertex-normal)
shading in the camera frame.

Conventions: ``render_normal_map`` returns normals in the OpenCV camera frame
(+X right, +Y down, +Z forward, away from the viewer) or in head space.
``normal_map_to_rgb`` encodes them as images. Renderers' normal passes use
RGB = n * 0.5 + 0.5 in a camera frame with +X right, +Y up, +Z towards the viewer
("opengl": a surface facing the camera is (0.5, 0.5, 1), light blue; one facing
image-right is reddish, one facing up is greenish). "opencv" writes the OpenCV-frame
components unchanged. Estimators differ: ControlNet 1.1's normal model learned BAE's
colours, with red for image *left*; the diffusion backends encode with
``diffusion.normal_encoding`` (default "normalbae"), not with this function.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .attributes import interpolate
from .mesh_raster import rasterize_mesh


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals (counter-clockwise faces point outwards).

    vertices: (B, V, 3) or (V, 3); faces: (F, 3). Returns the same leading shape as
    vertices. Each face adds its unnormalized cross product (|n| = 2 area); vertices with
    no (or only degenerate) faces get 0.
    """
    batched = vertices if vertices.dim() == 3 else vertices.unsqueeze(0)
    f = faces.long()
    v0, v1, v2 = batched[:, f[:, 0]], batched[:, f[:, 1]], batched[:, f[:, 2]]
    face_normals = torch.cross(v1 - v0, v2 - v0, dim=-1)  # (B, F, 3)
    sums = torch.zeros_like(batched)
    for k in range(3):
        sums = sums.index_add(1, f[:, k], face_normals)
    normals = F.normalize(sums, dim=-1, eps=1e-20)
    return normals if vertices.dim() == 3 else normals[0]


def render_normal_map(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                      height: int, *, space: Literal["camera", "world"] = "camera",
                      near: float = 0.01, cull_backfaces: bool = False) -> tuple[Tensor, Tensor]:
    """Smooth-shaded normals of the visible surface at every pixel.

    vertices: (V, 3) or (C, V, 3) head space; faces (F, 3); viewmats (C, 4, 4); Ks (C, 3, 3).
    space: "camera" (OpenCV frame of each camera) or "world" (head space).
    Returns normals (C, H, W, 3), unit on the mesh and 0 on background, and mask (C, H, W).
    """
    if space not in ("camera", "world"):
        raise ValueError(f"space must be 'camera' or 'world', got {space!r}")
    n_cams = viewmats.shape[0]
    raster = rasterize_mesh(vertices, faces, viewmats, Ks, width, height, near=near,
                            cull_backfaces=cull_backfaces)
    verts = vertices if vertices.dim() == 3 else vertices.unsqueeze(0).expand(n_cams, -1, -1)
    normals = vertex_normals(verts, faces)  # (C, V, 3)
    if space == "camera":
        normals = torch.einsum("cij,cvj->cvi", viewmats[:, :3, :3].to(normals.dtype), normals)
    image = F.normalize(interpolate(raster, normals, faces), dim=-1)
    return image * raster.mask[..., None].to(image.dtype), raster.mask


def normal_map_to_rgb(normals: Tensor, mask: Tensor, convention: Literal["opengl", "opencv"] = "opengl",
                      *, background=(0.0, 0.0, 0.0)) -> Tensor:
    """Encode OpenCV-camera-frame normals (C, H, W, 3) as RGB in [0, 1].

    mask (C, H, W) selects the surface; elsewhere the pixel gets ``background``.
    "opengl": (x, -y, -z) * 0.5 + 0.5 (+X right, +Y up, +Z to the viewer; renderers'
    normal passes). "opencv": (x, y, z) * 0.5 + 0.5.
    """
    if convention == "opengl":
        normals = normals * normals.new_tensor([1.0, -1.0, -1.0])
    elif convention != "opencv":
        raise ValueError(f"convention must be 'opengl' or 'opencv', got {convention!r}")
    rgb = (normals * 0.5 + 0.5).clamp(0.0, 1.0)
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device).expand_as(rgb)
    return torch.where(mask[..., None] > 0.5, rgb, bg)

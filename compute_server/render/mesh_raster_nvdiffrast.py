"""Optional CUDA visibility pass with nvdiffrast (used only when it is importable).

Why: nvdiffrast's hardware-style rasterizer finds the visible face per pixel much faster
than the torch pass on large images. It is not a dependency (HeadSplat does not install
it); when absent, ``rasterize_mesh`` runs its torch code on CUDA tensors instead.

Only the face ids come from nvdiffrast: barycentrics and depth are then computed by the
same differentiable ray intersection as the torch backend
(``mesh_raster.raster_from_face_ids``), so both backends give identical attributes and
gradients. nvdiffrast clips at the near plane in clip space, samples at pixel centres and
puts clip-space y = -1 at row 0, so with the projection below row 0 is the image top
(OpenCV). Images are padded to multiples of 8 and cropped back.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .mesh_raster import MeshRaster, camera_space, raster_from_face_ids

_FAR = 1000.0  # metres; nothing of a head scene lies beyond
_contexts: dict = {}


def nvdiffrast_available() -> bool:
    """True when ``nvdiffrast.torch`` imports (it is optional and never installed by us)."""
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception:
        return False
    return True


def _context(device: torch.device):
    import nvdiffrast.torch as dr
    if device not in _contexts:
        _contexts[device] = dr.RasterizeCudaContext(device=device)
    return _contexts[device]


def _clip_space(v_cam: Tensor, Ks: Tensor, width: int, height: int, near: float) -> Tensor:
    """(C, V, 3) OpenCV camera space -> (C, V, 4) clip space for a (height, width) target."""
    x, y, z = v_cam.unbind(-1)
    fx, fy, cx, cy = (Ks[:, i, j, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    clip_x = (2.0 * fx / width) * x + (2.0 * cx / width - 1.0) * z
    clip_y = (2.0 * fy / height) * y + (2.0 * cy / height - 1.0) * z
    clip_z = (_FAR + near) / (_FAR - near) * z - 2.0 * _FAR * near / (_FAR - near)
    return torch.stack([clip_x, clip_y, clip_z, z], -1).float().contiguous()


@torch.no_grad()
def visible_faces_nvdiffrast(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                             height: int, *, near: float = 0.01, cull_backfaces: bool = False) -> Tensor:
    """(C, H, W) int64 visible face per pixel (-1 = background), like ``visible_faces``."""
    import nvdiffrast.torch as dr
    n_cams = viewmats.shape[0]
    pad_w, pad_h = -(-width // 8) * 8, -(-height // 8) * 8
    v_cam = camera_space(vertices.detach(), viewmats.detach())
    clip = _clip_space(v_cam, Ks.detach(), pad_w, pad_h, near)
    tri = faces.to(device=clip.device, dtype=torch.int32).contiguous()
    glctx = _context(clip.device)
    if not cull_backfaces:
        rast, _ = dr.rasterize(glctx, clip, tri, resolution=[pad_h, pad_w])
        ids = rast[..., 3].round().long() - 1
        return ids[:, :height, :width].contiguous()
    out = []
    for cam in range(n_cams):  # a different face subset per camera
        t = v_cam[cam][faces.long()]
        normal = torch.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1)
        keep = torch.nonzero((normal * t[:, 0]).sum(-1) < 0).squeeze(1)
        rast, _ = dr.rasterize(glctx, clip[cam:cam + 1], tri[keep].contiguous(), resolution=[pad_h, pad_w])
        local = rast[0, :height, :width, 3].round().long() - 1
        out.append(torch.where(local >= 0, keep[local.clamp_min(0)], torch.full_like(local, -1)))
    return torch.stack(out)


def rasterize_mesh_nvdiffrast(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                              height: int, *, near: float = 0.01, cull_backfaces: bool = False) -> MeshRaster:
    """``rasterize_mesh`` with the visibility pass on nvdiffrast. vertices (C, V, 3) CUDA."""
    face_ids = visible_faces_nvdiffrast(vertices, faces, viewmats, Ks, width, height, near=near,
                                        cull_backfaces=cull_backfaces)
    return raster_from_face_ids(vertices, faces, viewmats, Ks, face_ids)

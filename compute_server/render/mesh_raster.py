"""Pure-torch z-buffered triangle rasterizer: face ids, barycentrics, depth and mask.

Why: GAF conditions its diffusion prior on normal maps of the tracked FLAME mesh and
GeoDiff4D regularizes rendered normals, so the server must rasterize the posed head mesh
at any camera, on CPU-only machines too. Conventions: OpenCV cameras (``viewmats``
world_to_camera, ``Ks`` in pixels), pixel centres at integer + 0.5, images (C, H, W).

How (two passes):

1. Visibility, no autograd, float64. Triangles go to camera space, are clipped against
   ``z = near`` (``clip.py``: crossing triangles are cut, not dropped), optionally
   back-face culled, projected, and each enumerates the pixels of its bounding box in
   memory-bounded chunks. A pixel centre is inside when its three edge functions agree in
   sign (edges shared by two triangles are evaluated from the same canonical endpoint, so
   the test is watertight; a centre exactly on a shared edge belongs to both and the depth
   test picks one). Depth comes from the screen-space-linear 1/z; the z-buffer is an
   atomic min (``scatter_reduce(..., "amin")``) over int64 keys
   ``float32_bits(z) << 32 | piece id`` (positive floats order like their bit patterns),
   so the nearest piece wins and ties go to the earlier piece (face order), deterministically.
2. Attributes, differentiable: for every covered pixel, the pixel's ray is intersected
   with its winning *original* face (Moller-Trumbore), giving perspective-correct
   barycentrics and camera-space depth as smooth functions of the vertex positions.
   Gradients therefore flow to vertices through barycentrics and depth, not through
   visibility changes (like nvdiffrast without antialiasing).

CUDA: ``rasterize_mesh`` uses nvdiffrast when it is importable and the tensors are on
CUDA (``backend="auto"``); otherwise this same torch code runs on CUDA tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .clip import clip_triangles_near

DEFAULT_MAX_MEMORY_BYTES = 256 * 2**20
BYTES_PER_PAIR = 200  # peak working bytes per (pixel, triangle) candidate in a chunk
_NO_HIT = torch.iinfo(torch.int64).max


@dataclass
class MeshRaster:
    """What covers each pixel centre.

    face_ids: (C, H, W) int64 index into ``faces`` of the visible triangle, -1 = background.
    bary: (C, H, W, 3) perspective-correct barycentrics of the pixel centre on that face
        (weights of faces[f, 0], faces[f, 1], faces[f, 2]); 0 on background.
    depth: (C, H, W) camera-space z in metres; 0 on background.
    mask: (C, H, W) float, 1 where a triangle covers the pixel centre.
    """

    face_ids: Tensor
    bary: Tensor
    depth: Tensor
    mask: Tensor


def rasterize_mesh(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                   height: int, *, near: float = 0.01, cull_backfaces: bool = False,
                   backend: str = "auto", max_memory_bytes: int | None = None) -> MeshRaster:
    """Rasterize a triangle mesh into C cameras.

    vertices: (V, 3) or (C, V, 3) head-space positions in metres (one pose per camera).
    faces: (F, 3) int vertex indices; counter-clockwise seen from outside is front-facing.
    viewmats: (C, 4, 4) world_to_camera (OpenCV); Ks: (C, 3, 3) intrinsics in pixels.
    near: clip distance in metres. cull_backfaces: drop triangles facing away.
    backend: "auto" (nvdiffrast for CUDA tensors when importable, else torch), "torch",
        or "nvdiffrast". max_memory_bytes: working-set budget of the torch visibility pass.
    """
    verts = _check_inputs(vertices, faces, viewmats, Ks, width, height, near)
    if _use_nvdiffrast(backend, verts):
        from .mesh_raster_nvdiffrast import rasterize_mesh_nvdiffrast
        return rasterize_mesh_nvdiffrast(verts, faces, viewmats, Ks, width, height, near=near,
                                         cull_backfaces=cull_backfaces)
    face_ids = visible_faces(verts.detach(), faces, viewmats.detach(), Ks.detach(), width, height,
                             near=near, cull_backfaces=cull_backfaces,
                             max_memory_bytes=max_memory_bytes or DEFAULT_MAX_MEMORY_BYTES)
    return raster_from_face_ids(verts, faces, viewmats, Ks, face_ids)


def _check_inputs(vertices, faces, viewmats, Ks, width, height, near) -> Tensor:
    """Validate shapes; return vertices as (C, V, 3)."""
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be (C, 4, 4), got {tuple(viewmats.shape)}")
    n_cams = viewmats.shape[0]
    if tuple(Ks.shape) != (n_cams, 3, 3):
        raise ValueError(f"Ks must be ({n_cams}, 3, 3), got {tuple(Ks.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3 or faces.dtype.is_floating_point:
        raise ValueError(f"faces must be an integer (F, 3) tensor, got {tuple(faces.shape)} {faces.dtype}")
    if vertices.dim() == 2:
        vertices = vertices.unsqueeze(0).expand(n_cams, -1, -1)
    if vertices.dim() != 3 or vertices.shape[0] != n_cams or vertices.shape[2] != 3:
        raise ValueError(f"vertices must be (V, 3) or ({n_cams}, V, 3), got {tuple(vertices.shape)}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
        raise ValueError(f"faces index vertices outside 0..{vertices.shape[1] - 1}")
    if not (int(width) > 0 and int(height) > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not near > 0:
        raise ValueError(f"near must be positive, got {near}")
    return vertices


def _use_nvdiffrast(backend: str, vertices: Tensor) -> bool:
    if backend not in ("auto", "torch", "nvdiffrast"):
        raise ValueError(f"unknown mesh rasterizer backend {backend!r}; use 'auto', 'torch' or 'nvdiffrast'")
    if backend == "torch" or (backend == "auto" and not vertices.is_cuda):
        return False
    from .mesh_raster_nvdiffrast import nvdiffrast_available
    if backend == "nvdiffrast":
        if not vertices.is_cuda:
            raise ValueError("backend='nvdiffrast' needs CUDA tensors")
        return True
    return nvdiffrast_available()


def camera_space(vertices: Tensor, viewmats: Tensor) -> Tensor:
    """(C, V, 3) head space -> (C, V, 3) OpenCV camera space."""
    return torch.einsum("cij,cvj->cvi", viewmats[:, :3, :3], vertices) + viewmats[:, None, :3, 3]


@dataclass
class _Pieces:
    """Screen-space triangle pieces ready for pixel enumeration (float64)."""

    edge_coef: Tensor  # (T, 3, 3) per edge k (opposite vertex k): A, B, C with E = A x + B y + C >= 0 inside
    inv_z_weight: Tensor  # (T, 3) 1 / (z_k * |2 area|): 1/z = sum_k E_k * weight_k
    box: Tensor  # (T, 4) int64 x0, y0, box width, box height (pixels)
    pixel_base: Tensor  # (T,) camera * H * W
    face: Tensor  # (T,) face index in ``faces``


@torch.no_grad()
def _screen_pieces(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                   height: int, near: float, cull_backfaces: bool) -> _Pieces:
    n_cams, n_faces = vertices.shape[0], faces.shape[0]
    v_cam = camera_space(vertices.double(), viewmats.double())
    tris = v_cam[:, faces.long()].reshape(-1, 3, 3)  # (C*F, 3, 3)
    source = torch.arange(tris.shape[0], device=tris.device)
    if cull_backfaces:
        normal = torch.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0], dim=-1)
        facing = (normal * tris[:, 0]).sum(-1) < 0  # normal points back towards the camera centre
        tris, source = tris[facing], source[facing]
    tris, parent = clip_triangles_near(tris, near)
    source = source[parent]
    camera = torch.div(source, n_faces, rounding_mode="floor")
    K = Ks.double()[camera]  # (T, 3, 3)
    z = tris[..., 2]
    xy = torch.stack([K[:, None, 0, 0] * tris[..., 0] / z + K[:, None, 0, 2],
                      K[:, None, 1, 1] * tris[..., 1] / z + K[:, None, 1, 2]], -1)  # (T, 3, 2)
    coef = _edge_coefficients(xy)
    area2 = coef[:, 0, 0] * xy[:, 0, 0] + coef[:, 0, 1] * xy[:, 0, 1] + coef[:, 0, 2]  # E_0 at vertex 0
    sign = torch.sign(area2)
    keep = sign != 0
    coef = coef * sign[:, None, None]
    lo = torch.ceil(xy.amin(1) - 0.5).clamp_min(0)
    hi = torch.minimum(torch.floor(xy.amax(1) - 0.5), xy.new_tensor([width - 1.0, height - 1.0]))
    extent = hi - lo + 1
    keep &= (extent > 0).all(-1)
    box = torch.cat([lo, extent.clamp_min(0)], -1).to(torch.int64)
    inv_z_weight = 1.0 / (z * area2.abs()[:, None])
    return _Pieces(edge_coef=coef[keep], inv_z_weight=inv_z_weight[keep], box=box[keep],
                   pixel_base=(camera * (height * width))[keep], face=(source % n_faces)[keep])


def _edge_coefficients(xy: Tensor) -> Tensor:
    """(T, 3, 2) screen vertices -> (T, 3, 3) A, B, C of the edge opposite each vertex.

    E_k(x, y) = cross(p_j - p_i, (x, y) - p_i) for edge i -> j = (k+1, k+2). Each edge is
    formed from its lexicographically smaller endpoint and negated when traversed the
    other way, so neighbouring triangles get exactly opposite coefficients (watertight).
    """
    p_i, p_j = xy.roll(-1, dims=1), xy.roll(-2, dims=1)  # vertex k+1 and k+2 for k = 0, 1, 2
    swap = (p_i[..., 0] > p_j[..., 0]) | ((p_i[..., 0] == p_j[..., 0]) & (p_i[..., 1] > p_j[..., 1]))
    lo = torch.where(swap[..., None], p_j, p_i)
    hi = torch.where(swap[..., None], p_i, p_j)
    a = -(hi[..., 1] - lo[..., 1])
    b = hi[..., 0] - lo[..., 0]
    c = -(a * lo[..., 0] + b * lo[..., 1])
    direction = torch.where(swap, -1.0, 1.0).to(xy.dtype)
    return torch.stack([a, b, c], -1) * direction[..., None]


@torch.no_grad()
def visible_faces(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                  height: int, *, near: float = 0.01, cull_backfaces: bool = False,
                  max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES) -> Tensor:
    """The z-buffer pass: (C, H, W) int64 face index per pixel, -1 where empty.

    vertices (C, V, 3); other arguments as in ``rasterize_mesh``.
    """
    pieces = _screen_pieces(vertices, faces, viewmats, Ks, width, height, near, cull_backfaces)
    n_pix = viewmats.shape[0] * height * width
    zbuffer = torch.full((n_pix,), _NO_HIT, dtype=torch.int64, device=vertices.device)
    counts = pieces.box[:, 2] * pieces.box[:, 3]
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    max_pairs = max(1, max_memory_bytes // BYTES_PER_PAIR)
    # Chunks are ranges of the global (piece, box pixel) index: a huge triangle is split
    # across chunks, so the working set never exceeds the budget (the z-buffer is an
    # order-independent min).
    for first in range(0, total, max_pairs):
        _zbuffer_chunk(pieces, counts, ends, first, min(total, first + max_pairs), width, zbuffer)
    hit = zbuffer != _NO_HIT
    if pieces.face.numel() == 0:
        return torch.full((viewmats.shape[0], height, width), -1, dtype=torch.int64, device=vertices.device)
    piece = torch.where(hit, zbuffer & 0xFFFFFFFF, torch.zeros_like(zbuffer))
    face_ids = torch.where(hit, pieces.face[piece], torch.full_like(zbuffer, -1))
    return face_ids.view(viewmats.shape[0], height, width)


def _zbuffer_chunk(pieces: _Pieces, counts: Tensor, ends: Tensor, first: int, last: int, width: int,
                   zbuffer: Tensor) -> None:
    """Test box pixels [first, last) of the global pair index; atomic-min hits into zbuffer."""
    lo = int(torch.searchsorted(ends, first, right=True))
    hi = int(torch.searchsorted(ends, last - 1, right=True)) + 1
    starts = ends[lo:hi] - counts[lo:hi]
    begin = starts.clamp_min(first)
    in_range = ends[lo:hi].clamp_max(last) - begin  # pixels of each piece inside the range
    n_pairs = last - first
    device = counts.device
    slot = torch.repeat_interleave(torch.arange(hi - lo, device=device), in_range, output_size=n_pairs)
    local = torch.arange(n_pairs, device=device) - (torch.cumsum(in_range, 0) - in_range - (begin - starts)
                                                    ).index_select(0, slot)
    box = pieces.box[lo:hi]
    box_w = box[:, 2].index_select(0, slot)
    row = torch.div(local, box_w, rounding_mode="floor")
    px = box[:, 0].index_select(0, slot) + (local - row * box_w)
    py = box[:, 1].index_select(0, slot) + row
    x, y = px.double() + 0.5, py.double() + 0.5
    inside = torch.ones(n_pairs, dtype=torch.bool, device=device)
    inv_z = torch.zeros(n_pairs, dtype=torch.float64, device=device)
    for k in range(3):
        a, b, c = (pieces.edge_coef[lo:hi, k, j].index_select(0, slot) for j in range(3))
        edge = a * x + b * y + c
        inside &= edge >= 0
        inv_z += edge * pieces.inv_z_weight[lo:hi, k].index_select(0, slot)
    idx = torch.nonzero(inside).squeeze(1)
    depth = (1.0 / inv_z.index_select(0, idx)).float()
    key = (depth.view(torch.int32).to(torch.int64) << 32) | (slot.index_select(0, idx) + lo)
    pixel = pieces.pixel_base[lo:hi].index_select(0, slot.index_select(0, idx)) \
        + py.index_select(0, idx) * width + px.index_select(0, idx)
    zbuffer.scatter_reduce_(0, pixel, key, reduce="amin")


def raster_from_face_ids(vertices: Tensor, faces: Tensor, viewmats: Tensor, Ks: Tensor,
                         face_ids: Tensor, *, max_pixels_per_chunk: int = 1 << 20) -> MeshRaster:
    """Differentiable barycentrics and depth of the given visible faces.

    vertices (C, V, 3) head space; face_ids (C, H, W) int64, -1 = background. Each covered
    pixel's ray (through its centre) is intersected with the plane of its face, in chunks
    of ``max_pixels_per_chunk`` pixels.
    """
    n_cams, height, width = face_ids.shape
    flat_ids = face_ids.reshape(-1)
    covered = torch.nonzero(flat_ids >= 0).squeeze(1)
    v_cam = camera_space(vertices, viewmats).reshape(-1, 3)
    bary_parts, depth_parts = [], []
    for start in range(0, covered.numel(), max_pixels_per_chunk):
        pixel = covered[start:start + max_pixels_per_chunk]
        bary, depth = _ray_face_hits(v_cam, vertices.shape[1], faces, Ks, flat_ids[pixel], pixel,
                                     width, height)
        bary_parts.append(bary)
        depth_parts.append(depth)
    dtype = v_cam.dtype
    bary_hit = torch.cat(bary_parts) if bary_parts else v_cam.new_zeros(0, 3)
    depth_hit = torch.cat(depth_parts) if depth_parts else v_cam.new_zeros(0)
    n_pix = flat_ids.numel()
    bary = v_cam.new_zeros(n_pix, 3).index_put((covered,), bary_hit)
    depth = v_cam.new_zeros(n_pix).index_put((covered,), depth_hit)
    mask = (flat_ids >= 0).to(dtype)
    return MeshRaster(face_ids=face_ids, bary=bary.view(n_cams, height, width, 3),
                      depth=depth.view(n_cams, height, width), mask=mask.view(n_cams, height, width))


def _ray_face_hits(v_cam_flat: Tensor, n_verts: int, faces: Tensor, Ks: Tensor, face: Tensor,
                   pixel: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Moller-Trumbore for pixel rays from the camera centre: (M, 3) barycentrics, (M,) z."""
    camera = torch.div(pixel, height * width, rounding_mode="floor")
    local = pixel - camera * (height * width)
    row = torch.div(local, width, rounding_mode="floor")
    col = local - row * width
    K = Ks[camera].to(v_cam_flat.dtype)
    ray = torch.stack([(col.to(K.dtype) + 0.5 - K[:, 0, 2]) / K[:, 0, 0],
                       (row.to(K.dtype) + 0.5 - K[:, 1, 2]) / K[:, 1, 1],
                       torch.ones_like(K[:, 0, 0])], -1)  # z = 1, so the hit distance t is the depth
    corner = faces.long()[face] + (camera * n_verts)[:, None]
    v0, v1, v2 = (v_cam_flat[corner[:, k]] for k in range(3))
    edge1, edge2 = v1 - v0, v2 - v0
    p = torch.cross(ray, edge2, dim=-1)
    det = (edge1 * p).sum(-1)
    det = torch.where(det.abs() > 1e-30, det, torch.full_like(det, 1e-30))
    to_origin = -v0
    b1 = (to_origin * p).sum(-1) / det
    q = torch.cross(to_origin, edge1, dim=-1)
    b2 = (ray * q).sum(-1) / det
    depth = (edge2 * q).sum(-1) / det
    return torch.stack([1.0 - b1 - b2, b1, b2], -1), depth

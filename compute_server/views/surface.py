"""What a camera sees of the head mesh: per-pixel surface points, normals and depth.

A thin layer over ``render.mesh_raster`` shared by colour completion, reprojection and
normal-map conditioning, so every stage asks the same question the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shared.camera import Camera

from ..camera_torch import stack_cameras
from ..render.attributes import interpolate
from ..render.mesh_raster import rasterize_mesh
from ..render.normal_maps import vertex_normals


@dataclass
class SurfaceView:
    """The visible surface in one camera (numpy, H x W).

    points: (H, W, 3) head-space surface points; normals_world: (H, W, 3) unit;
    normals_camera: (H, W, 3) unit, OpenCV camera axes; depth: (H, W) metres;
    mask: (H, W) bool; face_ids: (H, W) int (-1 = background);
    attrs: (H, W, A) extra vertex attributes interpolated, when asked for (else None).
    """

    points: np.ndarray
    normals_world: np.ndarray
    normals_camera: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    face_ids: np.ndarray
    attrs: np.ndarray | None = None


@torch.no_grad()
def render_surface(vertices: np.ndarray, faces: np.ndarray, cameras: list[Camera],
                   vertex_attrs: np.ndarray | None = None) -> list[SurfaceView]:
    """Surface views of one posed mesh (V, 3) in several cameras (all the same size),
    optionally interpolating extra per-vertex attributes (V, A)."""
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(faces, dtype=torch.long)
    viewmats, Ks = stack_cameras(cameras)
    raster = rasterize_mesh(v, f, viewmats, Ks, cameras[0].width, cameras[0].height)
    normals = vertex_normals(v[None], f)[0]
    stacked = [v, normals]
    if vertex_attrs is not None:
        stacked.append(torch.as_tensor(vertex_attrs, dtype=torch.float32).reshape(len(v), -1))
    attrs = interpolate(raster, torch.cat(stacked, dim=1), f)
    out = []
    for c, cam in enumerate(cameras):
        pts = attrs[c, ..., :3].numpy()
        n_world = attrs[c, ..., 3:6].numpy()
        extra = attrs[c, ..., 6:].numpy() if vertex_attrs is not None else None
        n_world = n_world / np.maximum(np.linalg.norm(n_world, axis=-1, keepdims=True), 1e-9)
        n_cam = n_world @ cam.world_to_camera[:3, :3].T
        mask = raster.mask[c].numpy() > 0.5
        out.append(SurfaceView(points=pts, normals_world=n_world * mask[..., None], normals_camera=n_cam * mask[..., None],
                               depth=raster.depth[c].numpy(), mask=mask, face_ids=raster.face_ids[c].numpy(),
                               attrs=extra))
    return out


def bilinear_sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample (H, W, C) at (..., 2) continuous pixel coordinates (pixel centres at +0.5),
    clamped at the borders -> (..., C)."""
    h, w = image.shape[:2]
    x = np.clip(xy[..., 0] - 0.5, 0, w - 1)
    y = np.clip(xy[..., 1] - 0.5, 0, h - 1)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    img = image if image.ndim == 3 else image[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    out = top * (1 - fy) + bottom * fy
    return out if image.ndim == 3 else out[..., 0]


def visible_in(points: np.ndarray, normals: np.ndarray, camera: Camera, surface: SurfaceView, *,
               depth_tolerance_m: float = 0.004, min_facing: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Which head-space points (N, 3) with normals (N, 3) a camera sees unoccluded.

    Returns (visible (N,) bool, pixels (N, 2)). ``surface`` is that camera's own
    SurfaceView (its depth map is the occlusion test); points must face the camera by at
    least ``min_facing`` (cosine), which also rejects grazing, badly sampled views.
    """
    proj = camera.project(points)
    px, z = proj[:, :2], proj[:, 2]
    inside = (px[:, 0] >= 0) & (px[:, 0] < camera.width) & (px[:, 1] >= 0) & (px[:, 1] < camera.height) & (z > 0)
    ix = np.clip(px[:, 0].astype(np.int64), 0, camera.width - 1)
    iy = np.clip(px[:, 1].astype(np.int64), 0, camera.height - 1)
    depth = surface.depth[iy, ix]
    covered = surface.mask[iy, ix]
    unoccluded = covered & (z <= depth + depth_tolerance_m)
    to_camera = camera.position[None] - points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-9)
    facing = np.sum(to_camera * normals, axis=1) > min_facing
    return inside & unoccluded & facing, px

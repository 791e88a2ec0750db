"""Holes in an avatar: pixels where the head mesh is but the Gaussians are not.

A turntable of the avatar in its rest pose, and the same cameras' coverage of the posed
head mesh: a hole is a pixel inside the mesh's silhouette (shrunk by ``EDGE_PX`` so the
anti-aliased rim, where a pixel is only partly covered by either, does not count) where
the avatar's alpha is below 0.5. An avatar must have none at any yaw: a white spot near
the ear at 90 degrees is what an animator sees first when the head turns.

One part of the mesh is meant to be clear: where a view's ray through the mesh never
enters the photo's silhouette cone (``views.masks.novel_view_masks``: the average skull
is taller than a flat or close-cropped head). Given the photo's silhouette (what the avatar
kept of it: the preview's alpha at the portrait camera, ``stored_photo_silhouette``), those
pixels are found with the same rule and are not counted.

    python -m bench.coverage AVATAR_ID [--data DIR] [--views 36] [--size 256]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from compute_server.camera_torch import stack_cameras
from compute_server.head.model import HeadParams
from compute_server.render.mesh_raster import rasterize_mesh
from compute_server.splats.render_avatar import render_avatar
from compute_server.views.sampling import head_centre, orbit_like

EDGE_PX = 1


@dataclass
class CoverageReport:
    """Per view of a turntable: yaw (degrees), mesh pixels, hole pixels, lowest alpha
    inside the mesh; plus where the worst view's holes are (a (H, W) bool map)."""

    yaws_deg: list[float]
    mesh_pixels: list[int]
    hole_pixels: list[int]
    min_alpha: list[float]
    worst_holes: np.ndarray

    @property
    def total_holes(self) -> int:
        return int(sum(self.hole_pixels))


@torch.no_grad()
def turntable_coverage(avatar, *, views: int = 36, size: int = 256, elevation_deg: float = 0.0,
                       photo_silhouette: tuple | None = None) -> CoverageReport:
    """Render ``views`` yaws of a LoadedAvatar (``pipeline.avatar_files``) at ``size`` px
    and compare its alpha with the posed mesh's silhouette (see the module docstring).
    photo_silhouette: (camera, (H, W) alpha) of the photo; pixels outside its visual hull
    are not counted."""
    from compute_server.views.masks import head_depth, novel_view_masks

    head_model = avatar.head_model
    params = HeadParams.zeros(head_model, 1, device=avatar.shape.device)
    params.shape = avatar.shape
    vertices = head_model(params).vertices[0]
    reference = avatar.portrait_camera.reframed(size, size)
    centre = head_centre(vertices.cpu().numpy())
    yaws = [360.0 * i / views for i in range(views)]
    report = CoverageReport(yaws, [], [], [], np.zeros((size, size), bool))
    worst = -1
    for yaw in yaws:
        camera = orbit_like(reference, centre, yaw, elevation_deg)
        viewmats, Ks = stack_cameras([camera], device=vertices.device)
        alpha = render_avatar(avatar.splats, vertices, head_model.faces, viewmats, Ks, size, size).alpha[0].cpu().numpy()
        raster = rasterize_mesh(vertices, head_model.faces, viewmats, Ks, size, size)
        mesh = raster.mask[0].cpu().numpy() > 0.5
        if photo_silhouette is not None:
            ys, xs = np.nonzero(mesh)
            ids = raster.face_ids[0].cpu().numpy()[ys, xs]
            bary = raster.bary[0].cpu().numpy()[ys, xs]
            verts = vertices.cpu().numpy().astype(np.float64)
            points = np.einsum("nk,nkc->nc", bary, verts[head_model.faces.cpu().numpy()[ids]])
            head, _, _ = novel_view_masks(mesh, ys, xs, points, camera, *photo_silhouette, head_depth(verts))
            mesh = head > 0.5
        inside = ndimage.binary_erosion(mesh, iterations=EDGE_PX)
        holes = inside & (alpha < 0.5)
        report.mesh_pixels.append(int(inside.sum()))
        report.hole_pixels.append(int(holes.sum()))
        report.min_alpha.append(float(alpha[inside].min()) if inside.any() else 1.0)
        if holes.sum() > worst:
            worst, report.worst_holes = int(holes.sum()), holes
    return report


def stored_photo_silhouette(data_dir: str, avatar) -> tuple:
    """(camera, (H, W) alpha): the photo's silhouette as the avatar kept it (its preview,
    rendered at the portrait camera when it was made, reproduces the photo's matte)."""
    import io

    from PIL import Image

    from compute_server.storage.avatar_store import AvatarStore
    from compute_server.storage.data_dir import DataDir

    store = AvatarStore(DataDir(Path(data_dir).resolve()).avatars)
    _, _, files = store.get(avatar.avatar_id, ["preview.png"])
    alpha = np.asarray(Image.open(io.BytesIO(files["preview.png"])).convert("RGBA"))[..., 3].astype(np.float32) / 255.0
    return avatar.portrait_camera.resized(alpha.shape[1], alpha.shape[0]), alpha


def load_stored_avatar(data_dir: str, avatar_id: str, device: str = "cpu"):
    """A LoadedAvatar straight from a server's data directory (built-in head models only)."""
    from compute_server.pipeline.avatar_files import load_avatar
    from compute_server.pipeline.head_models import HeadModelCatalog
    from compute_server.storage.avatar_store import AvatarStore
    from compute_server.storage.data_dir import DataDir

    store = AvatarStore(DataDir(Path(data_dir).resolve()).avatars)
    return load_avatar(store, avatar_id, HeadModelCatalog(), torch.device(device))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("avatar")
    parser.add_argument("--data", required=True, help="the server's data directory")
    parser.add_argument("--views", type=int, default=36)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    avatar = load_stored_avatar(args.data, args.avatar)
    report = turntable_coverage(avatar, views=args.views, size=args.size,
                                photo_silhouette=stored_photo_silhouette(args.data, avatar))
    print("| yaw | mesh px | holes | min alpha |\n|---:|---:|---:|---:|")
    for row in zip(report.yaws_deg, report.mesh_pixels, report.hole_pixels, report.min_alpha):
        print(f"| {row[0]:.0f} | {row[1]} | {row[2]} | {row[3]:.3f} |")
    print(f"holes in all views: {report.total_holes}")
    return 0 if report.total_holes == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

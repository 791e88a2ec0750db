"""What the avatar should cover in each training view: the head, not the shoulders, and
room for hair that stands off the bald mesh.

A portrait's matte covers the person: hair, head, neck and shoulders. The avatar is a
head on a cut neck, so if every matte pixel had to be reproduced, Gaussians of the neck
would stretch to cover a sweater (and smear across every other view). A photo's alpha
target is therefore its matte limited to the head region: the mesh's own silhouette grown
by a margin, above the line where the mesh's neck is cut; everywhere else the avatar must
be transparent.

Novel views made from the mesh know where the head is but not where the hair ends, so
they leave a band around the mesh silhouette unsupervised (hair may or may not be there)
and ask for transparency beyond it, which keeps floaters out of views the photo never saw.

They also must not claim more head than the photo allows. The built-in mesh is an average
skull: on a flat or close-cropped head its crown stands above the real hair. The photo
says that part is background, the novel views said it was scalp, and the Gaussians there,
seen edge-on from the front and face-on from the sides, became thin dark arcs above every
head. Every point of a head projects inside the photo's silhouette, seen or hidden (the
photo's silhouette cone holds the whole head), so a mesh point that projects onto the
photo's background is not head in any view (``outside_photo_silhouette``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from shared.camera import Camera

HAIR_MARGIN_FRACTION = 0.09   # of the image size: how far hair may stand off the mesh silhouette
SILHOUETTE_TOLERANCE_FRACTION = 0.01   # of the photo's size: the matte is grown this much before
                                       # carving, so a fit a pixel or two off never cuts the head


def _grown(mask: np.ndarray, margin_fraction: float) -> np.ndarray:
    h, w = mask.shape
    radius = max(1, int(round(margin_fraction * max(h, w))))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return ndimage.binary_dilation(mask, structure=xx ** 2 + yy ** 2 <= radius ** 2)


def head_region(mesh_mask: np.ndarray, camera: Camera, vertices: np.ndarray, faces: np.ndarray,
                face_region: np.ndarray, region_names: list[str],
                margin_fraction: float = HAIR_MARGIN_FRACTION) -> np.ndarray:
    """(H, W) float: 1 where a photo's matte counts as the avatar's (multiply the matte by it).

    mesh_mask: (H, W) bool coverage of the posed mesh (V, 3) with faces (F, 3) in ``camera``.
    """
    region = _grown(mesh_mask, margin_fraction)
    region[_rows_below_neck_cut(camera, vertices, faces, face_region, region_names, mesh_mask.shape[0]):] = False
    return region.astype(np.float32)


def novel_view_loss_mask(mesh_mask: np.ndarray, margin_fraction: float = HAIR_MARGIN_FRACTION) -> np.ndarray:
    """(H, W) float: 0 in the hair band just outside the mesh silhouette, 1 elsewhere."""
    band = _grown(mesh_mask, margin_fraction) & ~mesh_mask
    return (~band).astype(np.float32)


def _rows_below_neck_cut(camera: Camera, vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray,
                         region_names: list[str], height: int) -> int:
    """First image row below the neck cut (the lowest-projecting neck-base vertex)."""
    if "neck_base" in region_names:
        cut = np.unique(faces[face_region == region_names.index("neck_base")])
    else:  # models without a neck cap (FLAME): the lowest few percent of the mesh
        y = vertices[:, 1]
        cut = np.flatnonzero(y <= np.quantile(y, 0.03))
    rows = camera.project(vertices[cut])[:, 1]
    return int(np.clip(np.ceil(rows.max()), 0, height))


def outside_photo_silhouette(points: np.ndarray, photo_camera: Camera, photo_matte: np.ndarray,
                             tolerance_fraction: float = SILHOUETTE_TOLERANCE_FRACTION) -> np.ndarray:
    """(N,) bool: head-space points (N, 3) that land inside the photo's frame on its
    background (``photo_matte`` (H, W) below 0.5 even after growing it by
    ``tolerance_fraction`` of the image). A point outside the frame or behind the camera
    is unknown and never counts (a head cut by the photo's border keeps its crown)."""
    h, w = photo_matte.shape
    radius = max(1, int(round(tolerance_fraction * max(h, w))))
    grown = ndimage.maximum_filter(np.asarray(photo_matte, np.float32), size=2 * radius + 1)
    px = photo_camera.project(np.asarray(points, np.float64))
    inside = (px[:, 2] > 0) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    out = np.zeros(len(points), bool)
    ix = np.clip(px[inside, 0].astype(np.int64), 0, w - 1)
    iy = np.clip(px[inside, 1].astype(np.int64), 0, h - 1)
    out[inside] = grown[iy, ix] < 0.5
    return out

"""Where a photo may supervise the avatar: the head, not the shoulders.

A portrait's matte covers the person: hair, head, neck and shoulders. The avatar is a
head on a cut neck, so Gaussians of the neck would stretch to cover a sweater if every
matte pixel had to be reproduced. The photo's loss is therefore limited to the head
region: the mesh's own silhouette grown by a margin (hair stands off the bald mesh), and
nothing below the line where the mesh's neck is cut.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from shared.camera import Camera

HAIR_MARGIN_FRACTION = 0.09   # of the image size: how far hair may stand off the mesh silhouette


def head_loss_mask(mesh_mask: np.ndarray, camera: Camera, vertices: np.ndarray, faces: np.ndarray,
                   face_region: np.ndarray, region_names: list[str],
                   margin_fraction: float = HAIR_MARGIN_FRACTION) -> np.ndarray:
    """(H, W) float mask of the pixels a photo may supervise.

    mesh_mask: (H, W) bool coverage of the posed mesh (V, 3) with faces (F, 3) in ``camera``.
    """
    h, w = mesh_mask.shape
    radius = max(1, int(round(margin_fraction * max(h, w))))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disk = xx ** 2 + yy ** 2 <= radius ** 2
    grown = ndimage.binary_dilation(mesh_mask, structure=disk)
    cut_rows = _rows_below_neck_cut(camera, vertices, faces, face_region, region_names, h)
    grown[cut_rows:] = False
    return grown.astype(np.float32)


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

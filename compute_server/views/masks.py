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
photo's silhouette cone holds the whole head), so a novel view's pixel whose ray through
the mesh never enters that cone shows no head (``photo_hull``, the one-view visual hull:
a ray that grazes the crown above a flat head is cleared, supervised as background). A
ray that enters the mesh outside the cone but meets the head deeper in (a temple or the
side of a crown wider than the real one) is left unsupervised: its colour belongs to a
surface the mesh does not have, and asking the Gaussians on the mesh for it is what drew
the arcs, while asking for background would make a see-through hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from shared.camera import Camera

HAIR_MARGIN_FRACTION = 0.09   # of the image size: how far hair may stand off the mesh silhouette
SOFT_RIM = (0.05, 0.95)        # matte values of the outline's soft rim (down-weighted around the scalp)
SOFT_RIM_WEIGHT = 0.2          # its loss weight there (d0 at 300 it: 0 -> 37 hole px, 0.2 -> 9, 0.5 -> 378)
SCALP_ZONE_FRACTION = 0.03     # of the image size: how far beyond the scalp's silhouette its rim may lie
SILHOUETTE_TOLERANCE_FRACTION = 0.01   # of the photo's size: the matte is grown this much before the
                                       # hull test, so a fit a pixel or two off never clears the head
HULL_SAMPLES = 12                      # points tested along each ray through the mesh


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


def scalp_zone(mesh_mask: np.ndarray, face_ids: np.ndarray, face_region: np.ndarray, region_names: list[str],
               margin_fraction: float = SCALP_ZONE_FRACTION) -> np.ndarray:
    """(H, W) bool: the pixels where the posed mesh shows its scalp, grown by a margin (the
    hair's outline lies on or just beyond the scalp's silhouette)."""
    if "scalp" not in region_names:
        return np.zeros(np.shape(mesh_mask), bool)
    ids = np.asarray(face_ids)
    scalp = np.asarray(mesh_mask, bool) & (ids >= 0) & (face_region[np.maximum(ids, 0)] == region_names.index("scalp"))
    return _grown(scalp, margin_fraction)


def real_view_loss_mask(matte: np.ndarray, valid: np.ndarray | None,
                        scalp: np.ndarray | None = None) -> np.ndarray | None:
    """A real view's (photo's, clip frame's) loss mask, (H, W) float or None for all of it:
    its real pixels only, with the soft rim of the person's matte around the scalp weighted
    down to SOFT_RIM_WEIGHT (``scalp``: (H, W) bool, ``scalp_zone``; None: no rim).

    Beyond the photo's frame (the crop's padding) nothing is known; supervising it as
    background trained the neck and crown that a tight photo cuts off transparent, seen as
    holes from every other side. The matte's soft rim (SOFT_RIM) is where the head's outline
    is seen edge-on: the Gaussians there cover the top and sides of the hair, which other
    views see face-on, and fitting them to the rim's partial coverage made them
    see-through (a pale patch on the crown from the side); weighted down (left out
    entirely, more holes were left) the other views keep them opaque. What lies outside the
    rim is still trained as background, so the outline keeps its place. Elsewhere (the cheeks,
    ears, neck) the rim stays supervised: the photo's own soft edge is reproduced there."""
    keep = np.ones(np.shape(matte), np.float32) if valid is None else np.asarray(valid, np.float32).copy()
    if scalp is not None:
        m = np.asarray(matte)
        keep[(m > SOFT_RIM[0]) & (m < SOFT_RIM[1]) & np.asarray(scalp, bool)] *= SOFT_RIM_WEIGHT
    return None if np.all(keep >= 1.0) else keep


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


@dataclass
class PhotoHull:
    """Per ray of a view, what the photo's silhouette says (see ``photo_hull``).
    entry_outside: (N,) bool, the mesh where the ray enters lies outside the photo's
    silhouette cone; no_head: (N,) bool, the ray never meets the cone (a subset)."""

    entry_outside: np.ndarray
    no_head: np.ndarray


def photo_hull(entry_points: np.ndarray, ray_dirs: np.ndarray, depth_m: float, photo_camera: Camera,
               photo_matte: np.ndarray, tolerance_fraction: float = SILHOUETTE_TOLERANCE_FRACTION,
               photo_valid: np.ndarray | None = None) -> PhotoHull:
    """Where a view's rays meet the photo's silhouette cone (the one-view visual hull).

    entry_points: (N, 3) where each pixel's ray meets the mesh (head space); ray_dirs: (N, 3)
    unit directions away from that view's camera; depth_m: how far past the entry the
    head can reach (its diameter). A sample point is in the cone if it lands on the photo's
    foreground (``photo_matte`` (H, W) grown by ``tolerance_fraction`` of the image). A ray
    shows head if any of ``HULL_SAMPLES`` points from its entry over ``depth_m`` is in the
    cone, or if its entry lies outside the photo's frame (unknown there: a head cut by the
    border keeps its crown); samples beyond the frame say nothing, and samples beyond the
    mesh only make this keep more, never clear more. ``photo_valid`` (H, W): where the crop
    holds the photo's pixels; its padding is beyond the frame too."""
    h, w = photo_matte.shape
    radius = max(1, int(round(tolerance_fraction * max(h, w))))
    grown = ndimage.maximum_filter(np.asarray(photo_matte, np.float32), size=2 * radius + 1) >= 0.5
    no_head = np.ones(len(entry_points), bool)
    entry_outside = np.zeros(len(entry_points), bool)
    for i, t in enumerate(np.linspace(0.0, depth_m, HULL_SAMPLES)):
        px = photo_camera.project(np.asarray(entry_points, np.float64) + t * np.asarray(ray_dirs, np.float64))
        inside = (px[:, 2] > 0) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        iy, ix = np.clip(px[:, 1].astype(np.int64), 0, h - 1), np.clip(px[:, 0].astype(np.int64), 0, w - 1)
        if photo_valid is not None:
            inside &= np.asarray(photo_valid)[iy, ix] >= 0.5
        on_head = inside & grown[iy, ix]
        no_head &= ~on_head
        if i == 0:
            no_head &= inside
            entry_outside = inside & ~on_head
    return PhotoHull(entry_outside=entry_outside, no_head=no_head)


def head_depth(vertices: np.ndarray) -> float:
    """How far a ray can travel inside the head: the mesh's largest extent (V, 3)."""
    return float(np.max(np.ptp(np.asarray(vertices), axis=0)))


def novel_view_masks(mesh_mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, points: np.ndarray, view_camera: Camera,
                     photo_camera: Camera, photo_matte: np.ndarray, depth_m: float,
                     photo_valid: np.ndarray | None = None) -> tuple:
    """(mask, loss_mask, hull) of a novel view painted on the mesh: the mesh's coverage
    ``mesh_mask`` (H, W) bool less the rays that meet no head by the photo's silhouette
    (trained transparent), and a loss mask that leaves out the hair band and the rays that
    enter the mesh outside the silhouette but meet the head deeper (``photo_hull``).
    ys, xs: (N,) the mesh's pixels; points: (N, 3) where their rays meet it, head space;
    photo_valid: (H, W) the photo's own pixels in its crop (None: all of it)."""
    rays = points - view_camera.position[None]
    rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-12)
    hull = photo_hull(points, rays, depth_m, photo_camera, photo_matte, photo_valid=photo_valid)
    mask = mesh_mask.astype(np.float32)
    mask[ys[hull.no_head], xs[hull.no_head]] = 0.0
    loss_mask = novel_view_loss_mask(mesh_mask)
    deeper = hull.entry_outside & ~hull.no_head
    loss_mask[ys[deeper], xs[deeper]] = 0.0
    return mask, loss_mask, hull

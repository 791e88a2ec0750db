"""The scalp reshaped to the photo's outline: hair volume where the hair stands off the skull,
a lower crown where the average skull is taller than the person's head.

Why: the built-in head is bald and average. On most photos the hair stands well beyond its
scalp (1 to 4 cm: a bob, curls, a bun), and on a flat or close-cropped head its crown
stands above the real one. The photo's silhouette says which: painted onto the bald skull,
the hair of the front view lost its outline as soon as the head turned, and the part of
the crown the photo calls background was left unsupervised from the sides, where it
rendered as holes.

The scalp is fitted to the photo's silhouette as a shell around the head's axis (the
camera ray through the middle of the cranium): for each direction in the image plane, the
ratio of the photo's outline radius to the mesh's gives a scale, and every scalp vertex in
that direction (front, top or back alike) moves away from or towards the axis by it. The
result is the front silhouette extruded back over the head and closed at the back, so the
side and back views keep the hair's outline: the one-view visual hull in the shape of a
head, not a box. Only the scalp moves, fading to nothing over a few centimetres at its
borders (forehead, ears, neck), so the fitted face is untouched. Where the photo's frame
cuts the hair the outline is unknown: the shell only grows to the frame there. Where the
mesh's outline is not scalp (ears, cheeks, the neck), nothing is measured and the scale
comes from the neighbouring directions.

The move is returned in head space for the photo's posed mesh; the head model carries it
as its static offset (``HeadModel.with_static_offset``), so it poses, animates and reaches
Blender's rig with the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from shared.camera import Camera

from .region_weights import region_weights

SHELL_BINS = 120            # directions around the axis (3 degrees each)
MIN_SCALE, MAX_SCALE = 0.8, 1.5    # of the mesh's radius in a direction: a crown lowered, hair standing off
BORDER_FADE_M = 0.04        # the scalp's move fades to zero over this distance from its borders
SMOOTH_SIGMA_BINS = 2.0     # the scale's smoothing across directions (bins)
LOWEST_DIRECTION_DEG = 20.0  # below the horizontal, the outline is the neck and shoulders: not measured
MATTE_CLOSING_FRACTION = 0.02   # of the image: gaps in curly hair's matte closed before the outline is read
STEP_PX = 0.5


@dataclass
class HairShell:
    """The fitted shell. scale: (SHELL_BINS,) radius ratio per image direction (1 = the mesh's);
    measured: (SHELL_BINS,) bool, the directions the photo's outline fixed (others are
    interpolated); offset: (V, 3) head-space displacement of the posed mesh's vertices;
    centre_px: (2,) the axis in the photo."""

    scale: np.ndarray
    measured: np.ndarray
    offset: np.ndarray
    centre_px: np.ndarray


def scalp_weights(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                  fade_m: float = BORDER_FADE_M) -> np.ndarray:
    """(V,) in [0, 1]: how much each vertex follows the shell (``region_weights`` of the scalp)."""
    return region_weights(vertices, faces, face_region, region_names, ["scalp"], fade_m)


def _first_exit(inside: np.ndarray) -> np.ndarray:
    """(B, S) bool samples along rays from the centre -> (B,) index of the first sample
    outside (S where the ray never leaves)."""
    outside = ~inside
    return np.where(outside.any(axis=1), outside.argmax(axis=1), inside.shape[1])


def _closed(matte: np.ndarray, fraction: float) -> np.ndarray:
    radius = max(1, int(round(fraction * max(matte.shape))))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disk = xx ** 2 + yy ** 2 <= radius ** 2
    closed = ndimage.binary_closing(np.pad(matte, radius), structure=disk)[radius:-radius, radius:-radius]
    return ndimage.binary_fill_holes(closed | matte)


def _circular_fill_and_smooth(values: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    """Interpolate unknown bins from the known ones around the circle, then smooth."""
    n = len(values)
    idx = np.arange(n)
    k = np.flatnonzero(known)
    filled = np.interp(idx, np.concatenate([k - n, k, k + n]), np.tile(values[k], 3))
    return ndimage.gaussian_filter1d(filled, sigma, mode="wrap") if sigma > 0 else filled


def fit_hair_shell(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                   camera: Camera, matte: np.ndarray, mesh_mask: np.ndarray, mesh_face_ids: np.ndarray,
                   valid: np.ndarray | None = None) -> HairShell | None:
    """Fit the scalp to the photo's outline (see the module's docstring).

    vertices: (V, 3) the photo's posed mesh (head space); camera: the photo's; matte: (H, W)
    the person's matte in it; mesh_mask, mesh_face_ids: (H, W) the posed mesh's coverage and
    triangle per pixel in that camera; valid: (H, W) where the crop holds real photo pixels
    (padding beyond the photo's frame is not background). None for a model without a scalp
    or a photo whose outline shows no scalp."""
    if "scalp" not in region_names:
        return None
    vertices = np.asarray(vertices, np.float64)
    weights = scalp_weights(vertices, faces, face_region, region_names)
    if not (weights > 0).any():
        return None
    scalp_id = region_names.index("scalp")
    scalp_vertices = vertices[np.unique(faces[face_region == scalp_id])]
    centre = 0.5 * (scalp_vertices.min(axis=0) + scalp_vertices.max(axis=0))
    centre_px = camera.project(centre[None])[0, :2]

    h, w = matte.shape
    person = _closed(np.asarray(matte) >= 0.5, MATTE_CLOSING_FRACTION)
    real = np.ones((h, w), bool) if valid is None else np.asarray(valid) >= 0.5
    angles = 2.0 * np.pi * (np.arange(SHELL_BINS) + 0.5) / SHELL_BINS
    radii = np.arange(0.0, float(np.hypot(h, w)), STEP_PX)
    xs = centre_px[0] + np.cos(angles)[:, None] * radii[None]
    ys = centre_px[1] + np.sin(angles)[:, None] * radii[None]       # image y grows downwards
    in_frame = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    xi, yi = np.clip(np.round(xs).astype(int), 0, w - 1), np.clip(np.round(ys).astype(int), 0, h - 1)

    mesh_exit = _first_exit(np.asarray(mesh_mask, bool)[yi, xi] & in_frame)
    photo_exit = _first_exit(person[yi, xi] & in_frame & real[yi, xi])
    photo_cut = (photo_exit < len(radii)) & ~(in_frame & real[yi, xi])[np.arange(SHELL_BINS),
                                                                     np.minimum(photo_exit, len(radii) - 1)]
    last_in = np.clip(mesh_exit - 1, 0, len(radii) - 1)
    rim_face = np.asarray(mesh_face_ids)[yi[np.arange(SHELL_BINS), last_in], xi[np.arange(SHELL_BINS), last_in]]
    rim_scalp = (rim_face >= 0) & (face_region[np.maximum(rim_face, 0)] == scalp_id)
    upward = np.sin(angles) < np.sin(np.radians(LOWEST_DIRECTION_DEG))
    mesh_cut = ~in_frame[np.arange(SHELL_BINS), np.minimum(mesh_exit, len(radii) - 1)]   # rim beyond the frame
    measured = rim_scalp & upward & ~mesh_cut & (mesh_exit > 0) & (photo_exit > 0)
    if not measured.any():
        return None
    ratio = photo_exit / np.maximum(mesh_exit, 1)
    # cut by the frame: the hair reaches at least the frame; never shrink there
    ratio = np.where(photo_cut, np.maximum(ratio, 1.0), ratio)
    log_scale = np.log(np.clip(ratio, MIN_SCALE, MAX_SCALE))
    # straight down the outline is the neck: the shell closes onto it there, so the back of
    # the head tapers to the nape instead of ending in a ledge above the neck
    down = np.abs(angles - np.pi / 2) < np.pi / SHELL_BINS
    log_scale = np.where(down, 0.0, log_scale)
    scale = np.exp(_circular_fill_and_smooth(np.where(measured | down, log_scale, 0.0), measured | down,
                                             SMOOTH_SIGMA_BINS))

    # move each scalp vertex along its direction from the axis (the camera ray through the centre)
    w2c = camera.world_to_camera
    points_cam = vertices @ w2c[:3, :3].T + w2c[:3, 3]
    centre_cam = centre @ w2c[:3, :3].T + w2c[:3, 3]
    axis = centre_cam[None] * (points_cam[:, 2:3] / centre_cam[2])   # the axis point at each vertex's depth
    px = camera.project(vertices)[:, :2]
    direction = np.arctan2(px[:, 1] - centre_px[1], px[:, 0] - centre_px[0]) % (2.0 * np.pi)
    vertex_scale = np.interp(direction, np.concatenate([angles - 2 * np.pi, angles, angles + 2 * np.pi]),
                             np.tile(scale, 3))
    factor = 1.0 + weights * (vertex_scale - 1.0)
    moved_cam = axis + factor[:, None] * (points_cam - axis)
    moved = (moved_cam - w2c[:3, 3]) @ w2c[:3, :3]       # back to head space (rotation is orthonormal)
    offset = np.where(weights[:, None] > 0, moved - vertices, 0.0)   # exactly still off the scalp
    return HairShell(scale=scale, measured=measured, offset=offset, centre_px=centre_px)

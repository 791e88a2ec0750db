"""The neck narrowed and shortened to the photo's outline where the person's is narrower or
ends higher than the average head's.

Why: the built-in neck is an average, long cylinder. Under a slim jaw, on a slender neck or
on a bust that ends at the collar (a scan, a statue, a cut-out), the front view shows part
of it *outside* the person: the photo then trains its Gaussians transparent as background,
and from the side, where nothing else covers that part of the mesh, it renders as a hole
(a patch below and behind the ear, a strip along the bottom of the neck). The hair shell
(``views.hair_shell``) does the same job for the scalp; this is its counterpart below the
jaw, so that nothing the photo calls background stays part of the head.

The neck is taken as a stack of horizontal slices in the photo. First its length: where the
person's outline ends below the chin, with background (inside the photo's frame) all the
way down to where the mesh's neck ends, the neck is compressed upwards to end there. Then
its width: in every slice, the left and right halves are narrowed to the photo's outline
about the slice's middle, and the depth by the mean of the two, so a cross-section stays a
cross-section (the front view says nothing of the depth; a slimmer neck is slimmer all
round). Only narrowing and shortening: where the outline is wider (a collar, long hair, the
shoulders), the photo does not show the neck's edge, and nothing moves. Where the frame or a
letterbox bar cuts the outline, nothing is measured. Only the neck moves, fading to nothing
over a couple of centimetres into the face, ears and scalp, so the fitted face stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from shared.camera import Camera

from .region_weights import region_weights
from .surface import render_surface

NECK_REGIONS = ("neck", "neck_base")
MIN_WIDTH_SCALE = 0.6       # of the mesh's half-width in a slice: a slender neck, not a stalk
MIN_LENGTH_SCALE = 0.5      # of the mesh's neck length (nape to base, in the photo)
BORDER_FADE_M = 0.02        # the neck's move fades to zero over this distance into other regions
SLICE_FRACTION = 0.01       # a slice's height, of the image's height
SMOOTH_SIGMA_SLICES = 2.0
MIN_BACKGROUND_FRACTION = 0.03   # background below the neck this tall (of the image) before it is called its end
MATTE_CLOSING_FRACTION = 0.01    # gaps in the matte (a dark choker, a shadow) closed before the outline is read
EDGE_TOLERANCE_PX = 0.5     # half a pixel: an outline that close to the mesh's is the mesh's


@dataclass
class NeckFit:
    """The fitted neck. length_scale: how much of its length in the photo it kept (1 = all);
    width_scale: (S, 2) left and right half-width ratio per slice (top to bottom, after the
    shortening; 1 = the mesh's); offset: (V, 3) head-space displacement of the posed mesh's
    vertices."""

    length_scale: float
    width_scale: np.ndarray
    offset: np.ndarray


def _closed(person: np.ndarray, fraction: float) -> np.ndarray:
    radius = max(1, int(round(fraction * max(person.shape))))
    structure = ndimage.generate_binary_structure(2, 1)
    closed = ndimage.binary_closing(np.pad(person, radius), structure=structure, iterations=radius)
    return closed[radius:-radius, radius:-radius] | person


def _fill(values: np.ndarray, known: np.ndarray, default: float) -> np.ndarray:
    if not known.any():
        return np.full(len(values), default)
    idx = np.arange(len(values))
    return np.interp(idx, idx[known], values[known])


def _slice_middles(slice_ids: np.ndarray, values: np.ndarray, n_slices: int) -> tuple:
    """(S,) per slice, the middle of the range of ``values`` (N,) over the points in it
    (``slice_ids`` (N,)), filled across slices that hold none; and (S,) which slices hold any."""
    low = np.full(n_slices, np.inf)
    high = np.full(n_slices, -np.inf)
    np.minimum.at(low, slice_ids, values)
    np.maximum.at(high, slice_ids, values)
    held = np.isfinite(low)
    middle = np.zeros(n_slices)
    middle[held] = 0.5 * (low[held] + high[held])
    return _fill(middle, held, float(values.mean())), held


def _run(line: np.ndarray, start: int, real: np.ndarray) -> tuple[tuple[float, float], tuple[bool, bool]]:
    """The run of ``line`` (W,) bool through ``start``: its left and right edges (pixel
    borders), and whether each edge is known (the next pixel is real and in the row)."""
    edges, known = [], []
    for step in (-1, 1):
        x = start
        while 0 <= x + step < len(line) and line[x + step] and real[x + step]:
            x += step
        beyond = x + step
        edges.append(x + 0.5 * step)
        known.append(bool(0 <= beyond < len(line) and real[beyond]))
    return (edges[0], edges[1]), (known[0], known[1])


def _image_moved(points: np.ndarray, rows: np.ndarray, weights: np.ndarray, camera: Camera) -> np.ndarray:
    """Camera-space ``points`` moved (by ``weights``) to the image rows ``rows``, back in head space."""
    v = (rows - camera.cy) / camera.fy
    moved = points.copy()
    moved[:, 1] = points[:, 1] + weights * (v * points[:, 2] - points[:, 1])
    w2c = camera.world_to_camera
    return (moved - w2c[:3, 3]) @ w2c[:3, :3]


def fit_neck(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
             camera: Camera, matte: np.ndarray, valid: np.ndarray | None = None) -> NeckFit | None:
    """Fit the neck to the photo's outline (see the module's docstring).

    vertices: (V, 3) the photo's posed mesh (head space); camera: the photo's; matte: (H, W)
    the person's matte in it; valid: (H, W) where the image holds real photo pixels (padding
    and letterbox bars are not background). None for a model without a neck, or where the
    photo shows no neck narrower or shorter than the mesh's."""
    names = [n for n in NECK_REGIONS if n in region_names]
    if not names:
        return None
    vertices = np.asarray(vertices, np.float64)
    weights = region_weights(vertices, faces, face_region, region_names, names, BORDER_FADE_M)
    neck_ids = [region_names.index(n) for n in names]
    neck = np.unique(faces[np.isin(face_region, neck_ids)])
    if len(neck) < 8 or not (weights > 0).any():
        return None

    h, w = matte.shape
    person = _closed(np.asarray(matte) >= 0.5, MATTE_CLOSING_FRACTION)
    real = np.ones((h, w), bool) if valid is None else np.asarray(valid) >= 0.5
    w2c = camera.world_to_camera
    points = vertices @ w2c[:3, :3].T + w2c[:3, 3]
    px = camera.project(vertices)[:, :2]

    slice_px = max(1.0, SLICE_FRACTION * h)
    top, bottom = px[neck, 1].min(), px[neck, 1].max()
    n_slices = max(2, int(np.ceil((bottom - top) / slice_px)) + 1)

    def slices(rows):
        return np.clip(np.floor((rows - top) / slice_px).astype(int), 0, n_slices - 1)

    def neck_middle(rows):
        """(S,) the middle of the neck's outline per slice, and which slices hold neck vertices."""
        return _slice_middles(slices(rows[neck]), px[neck, 0], n_slices)

    # 1. the length: background below the neck, inside the frame, all the way down
    middle, _ = neck_middle(px[:, 1])
    column = np.clip(np.round(middle).astype(int), 0, w - 1)
    centres = top + (np.arange(n_slices) + 0.5) * slice_px
    slice_rows = np.clip(np.round(centres).astype(int), 0, h - 1)
    in_frame = (centres >= 0) & (centres <= h - 1) & (middle >= 0) & (middle <= w - 1)
    at_middle = person[slice_rows, column] & in_frame
    known = in_frame & real[slice_rows, column]
    length_scale = 1.0
    below = ~at_middle & known
    # the first slice from which every known slice down to the mesh's end is background
    ends = [k for k in range(1, n_slices) if at_middle[k - 1] and below[k:].sum() == known[k:].sum()
            and below[k:].any()]
    if ends and (known[ends[0]:].sum() * slice_px >= MIN_BACKGROUND_FRACTION * h):
        end_row = top + ends[0] * slice_px
        length_scale = float(np.clip((end_row - top) / max(bottom - top, 1e-6), MIN_LENGTH_SCALE, 1.0))
    rows = np.where(px[:, 1] > top, top + (px[:, 1] - top) * length_scale, px[:, 1])

    # 2. the width, slice by slice, on the shortened neck: its rendered outline against the photo's
    middle, held = neck_middle(rows)
    shortened = _image_moved(points, rows, weights, camera)
    mesh = render_surface(shortened, faces, [camera])[0].mask
    scale = np.ones((n_slices, 2))
    measured = np.zeros((n_slices, 2), bool)
    for k in np.flatnonzero(held):
        centre_row = centres[k]
        if not 0 <= centre_row <= h - 1:
            continue
        row, c = int(round(centre_row)), int(np.clip(round(middle[k]), 0, w - 1))
        if not (mesh[row, c] and person[row, c]):
            continue
        mesh_edges, _ = _run(mesh[row], c, np.ones(w, bool))
        photo_edges, photo_known = _run(person[row], c, real[row])
        middle[k] = 0.5 * (mesh_edges[0] + mesh_edges[1])
        for side in range(2):
            half = abs(mesh_edges[side] - middle[k])
            if half < 2.0 or not photo_known[side]:
                continue                            # cut by the frame or a bar: the edge is unknown
            scale[k, side] = min(1.0, (abs(photo_edges[side] - middle[k]) + EDGE_TOLERANCE_PX) / half)
            measured[k, side] = True
    for side in range(2):
        filled = _fill(np.log(np.clip(scale[:, side], MIN_WIDTH_SCALE, 1.0)), measured[:, side], 0.0)
        scale[:, side] = np.exp(np.minimum(ndimage.gaussian_filter1d(filled, SMOOTH_SIGMA_SLICES,
                                                                   mode="nearest"), 0.0))
    if length_scale >= 1.0 and np.all(scale > 0.99):
        return None

    # move: shorten in the image's vertical, then scale about each slice's axis
    z_axis, _ = _slice_middles(slices(rows)[neck], points[neck, 2], n_slices)
    position = (rows - top) / slice_px - 0.5
    grid = np.arange(n_slices)
    axis_u = (np.interp(position, grid, middle) - camera.cx) / camera.fx
    axis_z = np.interp(position, grid, z_axis)
    left = np.interp(position, grid, scale[:, 0])
    right = np.interp(position, grid, scale[:, 1])
    u = points[:, 0] / points[:, 2]
    v = (rows - camera.cy) / camera.fy
    across = np.where(u < axis_u, left, right)
    new_u = axis_u + across * (u - axis_u)
    new_z = axis_z + 0.5 * (left + right) * (points[:, 2] - axis_z)
    moved_cam = np.stack([new_u * new_z, v * new_z, new_z], axis=1)
    moved = (moved_cam - w2c[:3, 3]) @ w2c[:3, :3]
    offset = np.where(weights[:, None] > 0, weights[:, None] * (moved - vertices), 0.0)
    return NeckFit(length_scale=length_scale, width_scale=scale, offset=offset)

"""Hair texture for the part of the scalp a single photo cannot see.

Without it the unseen scalp (the back and sides of the head) gets the smooth completed
vertex colours: from behind, every avatar reads as a bald, skin-coloured mannequin. Here
the unseen scalp is tiled with pieces of the hair the photo does show (exemplar-based
texture synthesis on the surface):

- the scalp is charted by longitude and latitude around the head's centre (metres along
  the surface), and the chart is cut into square cells about a few centimetres wide;
- each cell copies a piece of the photo around one seen scalp point, chosen at random
  (seeded) among points whose whole neighbourhood the photo shows as scalp; the chart's
  "down" maps to the photo's "down", so hair that falls in the photo falls on the back;
- cells are taller than wide (hair runs down in locks), and a piece is mirrored only when
  it comes from the other side of the head than the cell it fills: hair that falls outwards
  on one side of the photo falls outwards on the same side of the back. (Mirroring cells
  at random set diagonal strands against each other in a herringbone of chevrons, and
  square cells of curls read as fish scales.)
- neighbouring cells blend over a narrow band so no cell border shows as a line.

The texture is a function of the surface point alone, so every novel view (and the views
on either side of a seam) gets the same colour for the same point: no ghosts, no seams.

At the back, hair does not stop on the mesh's scalp border in a straight line: below it,
over the nape, the texture fades into the neck's own colour over a few centimetres, by an
uneven amount along the border (``hairline_fade``), so the back does not read as a cap.
A hat is copied just the same: the texture is whatever the photo shows on the scalp,
never an assumed hair colour. A bald head (a scalp that looks like the face's skin, lit or
shaded) gets no texture: copying its lit top over the back made a pale, blotchy cap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from shared.camera import Camera

from .surface import SurfaceView, bilinear_sample

CELL_M = 0.03              # chart cell width (metres along the scalp): a few hair locks across
CELL_ASPECT = 1.4          # cell height over width where the hair allows: locks run down the head
MIN_CELL_M = 0.012         # smaller photos of the hair still give some texture, down to this
BLEND_BAND = 0.4           # fraction of a cell over which neighbouring cells cross-fade
MIN_SOURCE_FACING = 0.5    # cosine: copy only hair the photo sees well, not at grazing angles
MIN_SOURCE_PIXELS = 64     # fewer usable hair pixels than this: no texture (smooth fill stays)
MIN_HAIR_FRACTION = 0.25   # of the seen scalp unlike the skin, for the texture to copy only that part
NAPE_FADE_M = 0.03         # how far below the scalp's border at the back the hair fades out
HAIRLINE_BINS = 48         # longitude bins of the scalp's lower border


@dataclass
class ScalpTexture:
    """Colours for head-space scalp points, copied from the photo's visible scalp.

    centre: (3,) the chart's centre (head space, metres); radius_m: its sphere radius;
    cell_m: chart cell width (its height is ``cell_aspect`` times that); sources_px: (K, 2)
    photo pixels usable as cell centres; pixels_per_m: (K,) the photo's scale at each
    source; image: (H, W, 3) the photo; source_side: (K,) +-1, the side of the head each
    source lies on (+1: the head's +x side, which the photo shows at larger x).
    """

    centre: np.ndarray
    radius_m: float
    cell_m: float
    sources_px: np.ndarray
    pixels_per_m: np.ndarray
    image: np.ndarray
    seed: int = 0
    hairline: np.ndarray | None = None   # (K, 2) longitude (radians, increasing), height (m) of the scalp's border
    source_side: np.ndarray | None = None
    cell_aspect: float = 1.0

    def chart(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) head-space points -> (N, 2) chart coordinates in metres: (along the
        latitude, up along the longitude). Longitude 0 is straight behind the head, so the
        chart's one cut (longitude +-180 degrees) runs down the face, which the photo sees."""
        d = points - self.centre
        longitude = longitude_behind(points, self.centre)
        latitude = np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2]))
        return np.stack([longitude * self.radius_m, latitude * self.radius_m], axis=1)

    def colours(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) colours in [0, 1] for head-space scalp points (N, 3).

        Cells are laid like bricks (every other row shifted by half a cell) so that their
        borders do not line up into a visible grid; a cell's piece is mirrored left-right
        when it comes from the other side of the head (see the module's notes)."""
        cell = np.array([self.cell_m, self.cell_m * self.cell_aspect])
        chart = self.chart(points) / cell
        t_v = chart[:, 1] - 0.5
        row0 = np.floor(t_v).astype(np.int64)
        ramp_v = _cross_fade(t_v - row0)
        out = np.zeros((len(points), 3), np.float64)
        for d_row in (0, 1):
            row = row0 + d_row
            w_row = ramp_v if d_row else 1 - ramp_v
            t_u = chart[:, 0] - 0.5 - 0.5 * (row & 1)                # brick offset of odd rows
            col0 = np.floor(t_u).astype(np.int64)
            ramp_u = _cross_fade(t_u - col0)
            for d_col in (0, 1):
                col = col0 + d_col
                w = w_row * (ramp_u if d_col else 1 - ramp_u)
                k = self._source_of(np.stack([col, row], axis=1))
                # the cell's side: the sign of its centre's longitude (0 straight behind)
                side = np.where(col + 0.5 * (row & 1) + 0.5 >= 0, 1.0, -1.0)
                flip = side * self.source_side[k] if self.source_side is not None else np.ones(len(k))
                offset_m = np.stack([(t_u - col) * flip, t_v - row], axis=1) * cell
                # chart up is the photo's up (image -y): hair that falls in the photo falls on the back
                px = self.sources_px[k] + offset_m * np.array([1.0, -1.0]) * self.pixels_per_m[k, None]
                out += w[:, None] * bilinear_sample(self.image, px)
        return np.clip(out, 0.0, 1.0)

    def hairline_fade(self, points: np.ndarray) -> np.ndarray:
        """(N,) weight in [0, 1] of the hair texture at head-space points (N, 3) below the
        scalp's border: 1 at the border, 0 a few centimetres under it (``NAPE_FADE_M``,
        longer or shorter along the border so the hairline is uneven), and only at the back
        (fading out between 60 and 100 degrees from straight behind)."""
        if self.hairline is None or len(self.hairline) < 2:
            return np.zeros(len(points))
        longitude = longitude_behind(points, self.centre)
        border = np.interp(longitude, self.hairline[:, 0], self.hairline[:, 1], period=2 * np.pi)
        below = border - points[:, 1]
        length = NAPE_FADE_M * (1.0 + 0.35 * np.sin(23.0 * longitude + self.seed) + 0.25 * np.sin(41.0 * longitude + 1.3))
        t = np.clip(1.0 - below / length, 0.0, 1.0)
        back = np.clip((np.cos(longitude) - np.cos(np.radians(100.0))) /
                       (np.cos(np.radians(60.0)) - np.cos(np.radians(100.0))), 0.0, 1.0)
        return t * t * (3 - 2 * t) * back

    def _source_of(self, cells: np.ndarray) -> np.ndarray:
        """A deterministic pseudo-random source index (N,) per cell (N, 2)."""
        h = (cells[:, 0] * 73856093) ^ (cells[:, 1] * 19349663) ^ (self.seed * 83492791 + 0x5BD1E995)
        h = (h ^ (h >> 13)) * 0x27D4EB2D
        h ^= h >> 15
        h = np.abs(h)
        return h % len(self.sources_px)


def textured_colours(texture: ScalpTexture | None, points: np.ndarray, face_ids: np.ndarray, fill: np.ndarray,
                     scalp_faces: np.ndarray | None, nape_faces: np.ndarray | None) -> np.ndarray:
    """(N, 3) colours of surface points (N, 3) on faces (N,) that the photo cannot see:
    ``fill`` (N, 3) (the completed colours), the hair texture on ``scalp_faces`` (F,) bool,
    and on ``nape_faces`` (F,) bool the texture faded into the fill below the scalp's
    border at the back. The one rule every novel view and the Gaussians' start share."""
    out = np.array(fill, dtype=np.float64, copy=True)
    if texture is None or scalp_faces is None:
        return out
    on_scalp = scalp_faces[face_ids]
    out[on_scalp] = texture.colours(points[on_scalp])
    if nape_faces is not None:
        on_nape = nape_faces[face_ids] & ~on_scalp
        rows = np.flatnonzero(on_nape)
        weight = texture.hairline_fade(points[rows])
        rows, weight = rows[weight > 0], weight[weight > 0, None]
        out[rows] = weight * texture.colours(points[rows]) + (1 - weight) * out[rows]
    return out


def longitude_behind(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(N,) longitude in radians of head-space points (N, 3) around ``centre``: 0 straight
    behind the head, +-pi straight ahead (the chart's cut runs down the face)."""
    d = points - centre
    return np.arctan2(d[:, 0], -d[:, 2])


def _cross_fade(frac: np.ndarray) -> np.ndarray:
    """Weight of the next cell for a fractional position (N,) between two cell centres:
    0 or 1 except over a band of ``BLEND_BAND`` around the border, smooth inside it."""
    ramp = np.clip((frac - 0.5) / BLEND_BAND + 0.5, 0.0, 1.0)
    return ramp * ramp * (3 - 2 * ramp)


def scalp_texture(image: np.ndarray, matte: np.ndarray, camera: Camera, surface: SurfaceView, faces_region: np.ndarray,
                  scalp_region: int, centre: np.ndarray, radius_m: float, seed: int = 0,
                  hairline: np.ndarray | None = None) -> ScalpTexture | None:
    """The texture of the scalp seen in a photo, or None where the photo shows too little.

    image: (H, W, 3) the photo crop; matte: (H, W) its (trusted) foreground; camera and
    surface: the photo's camera and SurfaceView of the posed mesh; faces_region: (F,)
    region index per face; scalp_region: the scalp's index; centre (3,) and radius_m: the
    chart sphere (the head's centre and mean scalp radius).
    """
    usable = visible_hair(image, matte, camera, surface, faces_region, scalp_region)
    if not usable.any():
        return None
    pixels_per_m = camera.fx / np.maximum(surface.depth, 1e-6)
    scale = float(np.median(pixels_per_m[usable]))
    cell_m = CELL_M
    while cell_m >= MIN_CELL_M:
        for aspect in (CELL_ASPECT, 1.0):   # square cells where the hair is too thin for tall ones
            # a source must have usable scalp around it about as far as a cell reaches: an
            # ellipse of the cell's shape, 0.75 of its width across and of its height up
            rx, ry = max(0.75 * cell_m * scale, 1.0), max(0.75 * aspect * cell_m * scale, 1.0)
            half_w, half_h = int(np.ceil(rx)), int(np.ceil(ry))
            yy, xx = np.mgrid[-half_h:half_h + 1, -half_w:half_w + 1]
            core = ndimage.binary_erosion(usable, structure=(xx / rx) ** 2 + (yy / ry) ** 2 <= 1.0)
            if core.sum() >= MIN_SOURCE_PIXELS:
                ys, xs = np.nonzero(core)
                return ScalpTexture(centre=np.asarray(centre, np.float64), radius_m=float(radius_m), cell_m=cell_m,
                                    sources_px=np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float64),
                                    pixels_per_m=pixels_per_m[ys, xs].astype(np.float64),
                                    image=np.asarray(image, np.float32), seed=seed, hairline=hairline,
                                    source_side=_sides(xs + 0.5, camera, centre), cell_aspect=aspect)
        cell_m *= 0.7
    return None


def _sides(x_px: np.ndarray, camera: Camera, centre: np.ndarray) -> np.ndarray:
    """(K,) +-1: the side of the head (+1: its +x side) of photo pixels at columns ``x_px``,
    split at the chart centre's image column; the camera's own x axis says which way the
    head's +x shows (larger x, unless the camera looks from behind)."""
    centre_x = float(camera.project(np.asarray(centre, np.float64)[None])[0, 0])
    x_axis_sign = np.sign(camera.world_to_camera[0, 0]) or 1.0
    return np.where(x_px >= centre_x, 1.0, -1.0) * x_axis_sign


def visible_hair(image: np.ndarray, matte: np.ndarray, camera: Camera, surface: SurfaceView,
                 faces_region: np.ndarray, scalp_region: int) -> np.ndarray:
    """(H, W) bool: the photo's pixels the texture may copy: scalp the photo sees well,
    in the matte, and (where there is enough of it) unlike the skin."""
    face_ids = surface.face_ids
    on_scalp = surface.mask & (face_ids >= 0) & (faces_region[np.maximum(face_ids, 0)] == scalp_region)
    to_camera = camera.position[None, None] - surface.points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=-1, keepdims=True), 1e-9)
    well_seen = surface.mask & (matte > 0.5) & (np.sum(to_camera * surface.normals_world, axis=-1) > MIN_SOURCE_FACING)
    return _unlike_skin(image, on_scalp & well_seen, well_seen & ~on_scalp)


def _unlike_skin(image: np.ndarray, scalp: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """The part of the seen scalp (H, W) bool whose colour is unlike the face's skin
    (``skin`` (H, W) bool: the rest of the seen head).

    The mesh's scalp reaches down to where a hairline usually is; on a high forehead or
    hair pulled back, part of it is skin in the photo, and copying that onto the back of
    the head gives a patchwork of hair and skin. A pixel is hair-like when its colour is
    farther from the skin's median than most skin pixels are, unless it is only a brighter
    light on skin: as bright or brighter than the skin's median with the skin's own
    chromaticity (the lit top of a bald head, which copied over the whole scalp made a pale,
    blotchy cap). Where too little of the scalp is hair-like, the whole seen scalp is used
    (hair of the skin's brightness, fair hair on fair skin), unless it has the skin's own
    chromaticity (a bald head): then nothing is copied and the unseen scalp keeps the smooth
    completed colours."""
    if skin.sum() < MIN_SOURCE_PIXELS or scalp.sum() < MIN_SOURCE_PIXELS:
        return scalp
    median = np.median(image[skin], axis=0)
    skin_spread = np.quantile(np.linalg.norm(image[skin] - median, axis=1), 0.8)
    hair_like = scalp & (np.linalg.norm(image - median, axis=-1) > max(1.5 * skin_spread, 0.08))
    chroma = image / np.maximum(image.sum(axis=-1, keepdims=True), 1e-6)
    chroma_median = np.median(chroma[skin], axis=0)
    chroma_distance = np.linalg.norm(chroma - chroma_median, axis=-1)
    tolerance = float(np.clip(np.quantile(chroma_distance[skin], 0.8), 0.005, 0.02))
    lit_skin = (image.mean(axis=-1) >= median.mean()) & (chroma_distance <= tolerance)
    hair_like &= ~lit_skin
    if hair_like.sum() >= MIN_HAIR_FRACTION * scalp.sum():
        return hair_like
    if np.median(chroma_distance[scalp]) <= tolerance:   # the scalp has the skin's own colour: bald
        return np.zeros_like(scalp)
    return scalp & ~lit_skin


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points (N, 3) -> (centre (3,), radius)."""
    a = np.concatenate([2 * points, np.ones((len(points), 1))], axis=1)
    b = np.sum(points ** 2, axis=1)
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = solution[:3]
    return centre, float(np.sqrt(max(solution[3] + centre @ centre, 1e-12)))


def photo_scalp_texture(image: np.ndarray, matte: np.ndarray, camera: Camera, surface: SurfaceView,
                        vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                        seed: int = 0) -> ScalpTexture | None:
    """``scalp_texture`` for a posed mesh (V, 3) with faces (F, 3), charted on the sphere
    that best fits its scalp; None for a model without a scalp region."""
    if "scalp" not in region_names:
        return None
    scalp = region_names.index("scalp")
    centre, radius = fit_sphere(vertices[np.unique(faces[face_region == scalp])])
    neck = region_names.index("neck") if "neck" in region_names else None
    return scalp_texture(image, matte, camera, surface, face_region, scalp, centre, radius, seed=seed,
                         hairline=scalp_border(vertices, faces, face_region, scalp, neck, centre))


def scalp_border(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, scalp: int, neck: int | None,
                 centre: np.ndarray) -> np.ndarray | None:
    """(K, 2) longitude (radians, 0 straight behind) and height (metres) of the border
    between the scalp and the neck, the lowest border vertex per longitude bin; None for a
    model whose scalp does not meet a neck region."""
    if neck is None:
        return None
    border = np.intersect1d(np.unique(faces[face_region == scalp]), np.unique(faces[face_region == neck]))
    if len(border) < 2:
        return None
    longitude = longitude_behind(vertices[border], centre)
    bins = np.floor((longitude + np.pi) / (2 * np.pi) * HAIRLINE_BINS).astype(np.int64)
    rows = [(longitude[bins == b].mean(), vertices[border[bins == b], 1].min()) for b in np.unique(bins)]
    return np.asarray(rows, np.float64)

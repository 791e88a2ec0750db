"""The photo's low-frequency light, so that mirroring does not copy it.

A face lit from one side is bright on that cheek and dark on the other. Mirror symmetry
(the mirrored photo view, and the mirror branch of reprojection) copies the bright cheek
onto the dark side: the avatar ends up lit from both sides at once, which no real light
does and which is wrong in every side view. Here the photo's shading is modelled as the
first spherical-harmonic bands of the surface normal (a constant plus a linear term, the
low-frequency part Lambertian light leaves on skin), fitted to the face's luminance; a
colour copied from a surface point with normal ``n_from`` to one with normal ``n_to`` is
multiplied by ``shading(n_to) / shading(n_from)``: light taken out where it was, put back
where it lands. An evenly lit or flat-shaded picture (a cartoon) fits a near-constant
shading, and the ratio stays near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PIXELS = 200            # fewer skin pixels than this: no shading model (ratio 1)
MAX_RATIO = 1.6             # a relighting factor is clamped to [1 / MAX_RATIO, MAX_RATIO]
MIN_SHADING_FRACTION = 0.15  # shading never falls below this fraction of its constant term


@dataclass
class Shading:
    """shading(n) = c0 + c . n (world-space unit normals), in photo luminance units."""

    c0: float
    c: np.ndarray          # (3,)

    def __call__(self, normals: np.ndarray) -> np.ndarray:
        """(N, 3) unit normals -> (N,) shading, bounded below."""
        return np.maximum(self.c0 + normals @ self.c, MIN_SHADING_FRACTION * self.c0)

    def ratio(self, n_from: np.ndarray, n_to: np.ndarray) -> np.ndarray:
        """(N, 1) factor that moves a colour lit at normals ``n_from`` (N, 3) to ``n_to``."""
        r = self(n_to) / self(n_from)
        return np.clip(r, 1.0 / MAX_RATIO, MAX_RATIO)[:, None]


def fit_shading(image: np.ndarray, normals_world: np.ndarray, mask: np.ndarray) -> Shading | None:
    """Fit the shading to an image (H, W, 3) over ``mask`` (H, W) bool (skin the photo sees
    well) with the surface's world normals (H, W, 3). Robust to features of another colour
    (eyes, brows, lips, a beard): pixels far from the first fit are left out of the second.
    Returns None where there is too little skin to say anything."""
    if mask.sum() < MIN_PIXELS:
        return None
    lum = image[mask].mean(axis=1).astype(np.float64)
    basis = np.concatenate([np.ones((len(lum), 1)), normals_world[mask].astype(np.float64)], axis=1)
    keep = np.ones(len(lum), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(basis[keep], lum[keep], rcond=None)
        residual = lum - basis @ coef
        keep = np.abs(residual) < 2.0 * residual[keep].std() + 1e-6
        if keep.sum() < MIN_PIXELS:
            break
    if not coef[0] > 1e-3:
        return None
    return Shading(c0=float(coef[0]), c=coef[1:].astype(np.float64))


def mirrored_normals(normals_world: np.ndarray) -> np.ndarray:
    """Normals (..., 3) of the mirror image across the x = 0 plane."""
    return normals_world * np.array([-1.0, 1.0, 1.0])


def relit_faces(face_region: np.ndarray, region_names: list[str]) -> np.ndarray:
    """(F,) bool: the faces the shading model describes and relighting applies to: the
    face's skin (every face for a model without regions). The neck under the chin is in
    the head's own shadow and the scalp is hair, neither of which the model captures."""
    if "face" not in region_names:
        return np.ones(len(face_region), bool)
    return face_region == region_names.index("face")


def photo_shading(image: np.ndarray, matte: np.ndarray, camera, surface, face_region: np.ndarray,
                  region_names: list[str], min_facing: float = 0.5) -> Shading | None:
    """``fit_shading`` over the face skin a photo (H, W, 3) with ``matte`` (H, W) sees well:
    pixels of ``relit_faces`` facing the camera by at least ``min_facing``. ``surface`` is
    the photo's SurfaceView."""
    skin = surface.mask & (matte > 0.5) & relit_faces(face_region, region_names)[np.maximum(surface.face_ids, 0)]
    to_camera = camera.position[None, None] - surface.points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=-1, keepdims=True), 1e-9)
    skin &= np.sum(to_camera * surface.normals_world, axis=-1) > min_facing
    return fit_shading(image, surface.normals_world, skin)

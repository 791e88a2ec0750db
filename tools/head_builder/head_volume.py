"""The solid shape that closes the face into a head: cranium, jaw, ears and neck as a smooth SDF.

Why a signed distance field: a smooth union of a few convex primitives gives a plausible
skull-and-neck silhouette with rounded junctions (nape, throat, ear roots) from a handful
of anthropometric numbers, and the closure surface is then read off along rays from one
centre inside the head (``closure.py``), which makes it a star-shaped radial graph that
cannot self-intersect.

Sizes are anthropometric means for an adult (head breadth ~15.5 cm, length ~19.5 cm,
chin-to-crown ~23 cm, neck ~11.5 cm wide); positions are tied to the face landmarks
(nasion, chin, face outline) so the volume fits the face it closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

NASION = 168
CHIN_BOTTOM = 152
IRIS_CENTRES = (468, 473)


@dataclass(frozen=True)
class HeadVolumeSettings:
    head_length_m: float = 0.195        # glabella to back of the head
    head_breadth_m: float = 0.152       # widest, above the ears
    chin_to_crown_m: float = 0.230
    cranium_centre_above_eyes_m: float = 0.022
    cranium_exponent: float = 2.4              # > 2: a flatter vault than an ellipsoid
    neck_width_m: float = 0.114
    neck_depth_m: float = 0.104
    neck_front_behind_chin_m: float = 0.038   # throat surface behind the chin's front
    neck_below_chin_m: float = 0.085           # neck base (the cut) below the chin
    neck_edge_radius_m: float = 0.025
    ear_height_m: float = 0.060
    ear_width_m: float = 0.032
    ear_thickness_m: float = 0.020
    ear_tilt_rad: float = 0.26                 # ears lean back ~15 degrees
    ear_centre_below_eyes_m: float = 0.018
    ear_centre_behind_eyes_m: float = 0.086
    blend_neck_m: float = 0.030
    blend_jaw_m: float = 0.020
    blend_ear_m: float = 0.006


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid, or with ``exponent`` > 2 a superellipsoid (flatter top and sides, as skulls are)."""

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray  # (3, 3) local -> head
    exponent: float = 2.0

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Approximate signed distance (N,) of points (N, 3) (zero exactly on the surface, good near it)."""
        q = (p - self.centre) @ self.rotation
        if self.exponent != 2.0:
            k = np.sum(np.abs(q / self.radii) ** self.exponent, axis=1) ** (1.0 / self.exponent)
            return (k - 1.0) * self.radii.min()
        k0 = np.linalg.norm(q / self.radii, axis=1)
        k1 = np.linalg.norm(q / self.radii ** 2, axis=1)
        return np.where(k1 > 1e-12, k0 * (k0 - 1.0) / np.maximum(k1, 1e-12), -self.radii.min())


@dataclass(frozen=True)
class Neck:
    """Vertical elliptic cylinder from ``y_base`` (the cut) to ``y_top``, rounded bottom edge."""

    centre_xz: np.ndarray
    radii_xz: np.ndarray
    y_base: float
    y_top: float
    edge_radius: float

    def sdf(self, p: np.ndarray) -> np.ndarray:
        q = (p[:, [0, 2]] - self.centre_xz) / self.radii_xz
        radial = (np.linalg.norm(q, axis=1) - 1.0) * self.radii_xz.min()
        vertical = np.maximum(self.y_base - p[:, 1], p[:, 1] - self.y_top)
        r = self.edge_radius
        a, b = radial + r, vertical + r
        outside = np.sqrt(np.maximum(a, 0) ** 2 + np.maximum(b, 0) ** 2)
        return outside + np.minimum(np.maximum(a, b), 0.0) - r


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two SDFs; blends within distance k."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


@dataclass(frozen=True)
class HeadVolume:
    """The primitives and the blended SDF; ``part_index`` tells which primitive a point is on."""

    cranium: Ellipsoid
    jaw: Ellipsoid
    neck: Neck
    ears: tuple[Ellipsoid, Ellipsoid]
    settings: HeadVolumeSettings

    def sdf(self, p: np.ndarray) -> np.ndarray:
        s = self.settings
        d = smooth_union(self.cranium.sdf(p), self.jaw.sdf(p), s.blend_jaw_m)
        d = smooth_union(d, self.neck.sdf(p), s.blend_neck_m)
        for ear in self.ears:
            d = smooth_union(d, ear.sdf(p), s.blend_ear_m)
        return d

    def nearest_part(self, p: np.ndarray) -> np.ndarray:
        """(N,) 0 cranium, 1 jaw, 2 neck, 3 ear: the primitive whose surface is closest."""
        ears = np.minimum(self.ears[0].sdf(p), self.ears[1].sdf(p))
        stack = np.stack([self.cranium.sdf(p), self.jaw.sdf(p), self.neck.sdf(p), ears - self.settings.blend_ear_m])
        return np.argmin(stack, axis=0)


def _fit_jaw(jaw_line: np.ndarray, prior_centre: np.ndarray, prior_radii: np.ndarray) -> Ellipsoid:
    """Axis-aligned ellipsoid (centre on x = 0) through the jaw line, regularised towards a prior."""
    def residual(params):
        centre = np.array([0.0, params[0], params[1]])
        radii = params[2:5]
        on_surface = np.linalg.norm((jaw_line - centre) / radii, axis=1) - 1.0
        prior = 0.15 * np.r_[(centre[1:] - prior_centre[1:]) / prior_radii[1:], np.log(radii / prior_radii)]
        return np.r_[on_surface, prior]
    x0 = np.r_[prior_centre[1:], prior_radii]
    fit = least_squares(residual, x0, bounds=(np.r_[-np.inf, -np.inf, 0.02, 0.015, 0.02], np.inf))
    return Ellipsoid(np.array([0.0, fit.x[0], fit.x[1]]), fit.x[2:5], np.eye(3))


def build_head_volume(face_points: np.ndarray, oval: np.ndarray,
                      settings: HeadVolumeSettings = HeadVolumeSettings()) -> HeadVolume:
    """Primitives placed from the prepared face (points (468+, 3) head space, eyes at y = 0).

    The cranium's front touches the glabella region (just above the nasion), its crown is
    ``chin_to_crown`` above the chin; the jaw ellipsoid is fitted to the face outline below
    the cheeks; the neck hangs below, its front behind the chin; the ears sit beside the
    cranium at the tragion height.
    """
    s = settings
    nasion, chin = face_points[NASION], face_points[CHIN_BOTTOM]
    eyes = face_points[list(IRIS_CENTRES)].mean(axis=0)
    front_z = nasion[2] + 0.004
    centre = np.array([0.0, eyes[1] + s.cranium_centre_above_eyes_m, front_z - 0.5 * s.head_length_m])
    crown_y = chin[1] + s.chin_to_crown_m
    radii = np.array([0.5 * s.head_breadth_m, crown_y - centre[1], 0.5 * s.head_length_m])
    cranium = Ellipsoid(centre, radii, np.eye(3), exponent=s.cranium_exponent)

    oval_points = face_points[oval]
    jaw_line = oval_points[oval_points[:, 1] < chin[1] + 0.065]
    jaw_prior_centre = np.array([0.0, chin[1] + 0.030, chin[2] - 0.055])
    jaw = _fit_jaw(jaw_line, jaw_prior_centre, np.array([0.060, 0.032, 0.062]))

    neck_front_z = chin[2] - s.neck_front_behind_chin_m
    neck = Neck(centre_xz=np.array([0.0, neck_front_z - 0.5 * s.neck_depth_m]),
                radii_xz=np.array([0.5 * s.neck_width_m, 0.5 * s.neck_depth_m]),
                y_base=chin[1] - s.neck_below_chin_m, y_top=centre[1], edge_radius=s.neck_edge_radius_m)

    ears = []
    for side in (-1.0, 1.0):
        c, sn = np.cos(s.ear_tilt_rad), np.sin(s.ear_tilt_rad)
        tilt = np.array([[1, 0, 0], [0, c, -sn], [0, sn, c]])  # lean the top backwards (-Z)
        ear_y = eyes[1] - s.ear_centre_below_eyes_m
        ear_z = eyes[2] - s.ear_centre_behind_eyes_m
        # surface x of the cranium at the ear position, so the ear sits on the skull
        q = np.abs([(ear_y - centre[1]) / radii[1], (ear_z - centre[2]) / radii[2]]) ** s.cranium_exponent
        skull_x = radii[0] * max(1.0 - float(q.sum()), 0.05) ** (1.0 / s.cranium_exponent)
        ear_centre = np.array([side * (skull_x + 0.25 * s.ear_thickness_m), ear_y, ear_z])
        ears.append(Ellipsoid(ear_centre, np.array([0.5 * s.ear_thickness_m, 0.5 * s.ear_height_m,
                                                    0.5 * s.ear_width_m]), tilt.T))
    return HeadVolume(cranium, jaw, neck, (ears[0], ears[1]), settings)


def ray_exit_distance(volume: HeadVolume, centre: np.ndarray, directions: np.ndarray,
                      r_max: float = 0.5, steps: int = 400, refine: int = 40) -> np.ndarray:
    """Distance (N,) along unit directions (N, 3) from ``centre`` (inside) to the first exit."""
    n = len(directions)
    radii = np.linspace(0.0, r_max, steps + 1)[1:]
    lo = np.zeros(n)
    hi = np.full(n, np.nan)
    for r in radii:
        todo = np.isnan(hi)
        if not todo.any():
            break
        outside = volume.sdf(centre + directions[todo] * r) > 0
        idx = np.flatnonzero(todo)
        hi[idx[outside]] = r
        lo[idx[~outside]] = r
    if np.isnan(hi).any():
        raise ValueError("a ray from the head centre never leaves the head volume")
    for _ in range(refine):
        mid = 0.5 * (lo + hi)
        outside = volume.sdf(centre + directions * mid[:, None]) > 0
        hi = np.where(outside, mid, hi)
        lo = np.where(outside, lo, mid)
    return 0.5 * (lo + hi)

"""Where to look from: novel cameras around the head.

GAF samples azimuth in [-90, 90] degrees, elevation in [-30, 30] and a distance of 1.0 to
1.2 times the reference distance; a full head also needs its back. ``fixed_ring`` gives a
deterministic spread for precomputed views; ``random_views`` draws the per-iteration
views of the iterative-denoising prior.
"""

from __future__ import annotations

import math

import numpy as np

from shared.camera import Camera, look_at


def head_centre(vertices: np.ndarray) -> np.ndarray:
    """A point to orbit around: the middle of the head's bounding box (V, 3) -> (3,)."""
    return 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))


def orbit_like(reference: Camera, centre: np.ndarray, azimuth_deg: float, elevation_deg: float,
               distance_scale: float = 1.0) -> Camera:
    """A camera with the reference's intrinsics, at the reference's distance from ``centre``
    (times ``distance_scale``), at the given angles around the head's own front (+Z)."""
    distance = float(np.linalg.norm(reference.position - centre)) * distance_scale
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    eye = centre + distance * np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    return Camera(look_at(eye, centre), reference.fx, reference.fy, reference.width / 2.0, reference.height / 2.0,
                  reference.width, reference.height, reference.near, reference.far)


def fixed_ring(reference: Camera, centre: np.ndarray, *, include_back: bool = True) -> list[tuple[float, float, Camera]]:
    """A deterministic set of (azimuth, elevation, camera) covering sides, top and back."""
    angles = [(-90, 0), (-60, 0), (-30, 0), (30, 0), (60, 0), (90, 0),
              (0, 25), (0, -20), (-45, 20), (45, 20), (-45, -15), (45, -15)]
    if include_back:
        angles += [(-135, 0), (135, 0), (180, 0), (180, 30)]
    return [(az, el, orbit_like(reference, centre, az, el)) for az, el in angles]


def random_views(reference: Camera, centre: np.ndarray, count: int, rng: np.random.Generator, *,
                 azimuth_range=(-90.0, 90.0), elevation_range=(-30.0, 30.0), distance_range=(1.0, 1.2),
                 back_fraction: float = 0.25) -> list[tuple[float, float, Camera]]:
    """``count`` random cameras, GAF's ranges, with ``back_fraction`` of them behind the head."""
    views = []
    for _ in range(count):
        if rng.random() < back_fraction:
            az = float(rng.uniform(135.0, 225.0))
        else:
            az = float(rng.uniform(*azimuth_range))
        el = float(rng.uniform(*elevation_range))
        views.append((az, el, orbit_like(reference, centre, az, el, float(rng.uniform(*distance_range)))))
    return views

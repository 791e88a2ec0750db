"""The mouth cavity and teeth of the built-in head.

Why: with the jaw open the viewer must see a dark mouth with teeth, not a hole into the
head. The cavity is a bag swept back from the inner lip contour: each ring is the lip
contour widened and opened vertically (an ellipse-like lens around the lip line) and
pushed back, ending in a rounded back wall. Its upper half is skinned to the skull and
its lower half to the jaw (``rig.py``), so the bag opens with the jaw. Teeth rows sit
inside it along an arch behind the lips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compute_server.head.teeth import TeethGeometry, TeethSettings, build_teeth
from .neutralize import split_mouth_loop


@dataclass(frozen=True)
class MouthSettings:
    # ring schedule: depth behind the lip line, width factor, half-opening (metres)
    ring_depth_m: tuple = (0.0020, 0.0050, 0.0120, 0.0220, 0.0330, 0.0420)
    ring_width: tuple = (1.00, 1.04, 1.10, 1.12, 1.00, 0.65)
    ring_half_height_m: tuple = (0.0040, 0.0115, 0.0150, 0.0155, 0.0130, 0.0075)
    teeth_depth_m: float = 0.0060      # front of the incisors behind the lip line
    teeth_arch_depth_m: float = 0.020  # how far the arch curves back at its ends
    teeth_half_width_m: float = 0.0205
    teeth_columns: int = 15
    teeth: TeethSettings = TeethSettings(height_m=0.0085, thickness_m=0.0060)


@dataclass(frozen=True)
class MouthCavity:
    """New cavity vertices (K, 3); faces (G, 3) over [face points, cavity vertices] with the
    cavity's k-th vertex at index ``first_index + k``; is_lower (K,) which half each vertex is in."""

    vertices: np.ndarray
    faces: np.ndarray
    is_lower: np.ndarray


def lip_line(points: np.ndarray, mouth_loop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper path, lower path, mid line (M, 3)) of the inner lip contour, right to left."""
    upper, lower, _, _ = split_mouth_loop(points, mouth_loop)
    x = points[upper, 0]
    lower_at = np.stack([np.interp(x, points[lower, 0], points[lower, k]) for k in range(3)], axis=1)
    return upper, lower, 0.5 * (points[upper] + lower_at)


def build_cavity(points: np.ndarray, mouth_loop: np.ndarray, first_index: int,
                 settings: MouthSettings = MouthSettings()) -> MouthCavity:
    """Sweep the cavity back from the inner lip loop (face points (468+, 3))."""
    s = settings
    loop = np.asarray(mouth_loop)
    upper, lower, mid = lip_line(points, loop)
    half_width = 0.5 * (points[upper[-1], 0] - points[upper[0], 0])
    centre_x = 0.5 * (points[upper[-1], 0] + points[upper[0], 0])
    upper_set = set(upper[1:-1].tolist())
    lower_set = set(lower[1:-1].tolist())
    line_y = lambda x: np.interp(x, mid[:, 0], mid[:, 1])  # noqa: E731
    line_z = lambda x: np.interp(x, mid[:, 0], mid[:, 2])  # noqa: E731
    back_z = line_z(np.array([centre_x]))[0]

    rings = [loop]
    vertices, is_lower = [], []
    next_id = first_index
    for depth, width, half_height in zip(s.ring_depth_m, s.ring_width, s.ring_half_height_m):
        ring = []
        for v in loop:
            p = points[v]
            u = np.clip((p[0] - centre_x) / half_width, -1.0, 1.0)
            side = 1.0 if v in upper_set else (-1.0 if v in lower_set else 0.0)
            x = centre_x + (p[0] - centre_x) * width
            y = line_y(p[0]) + side * half_height * np.sqrt(max(1.0 - u * u, 0.0)) ** 0.8
            # the cavity's depth follows the lip line near the front and flattens towards the back
            z = min(line_z(p[0]), back_z) - depth if depth > 0.01 else line_z(p[0]) - depth
            vertices.append([x, y, z])
            is_lower.append(side < 0)
            ring.append(next_id)
            next_id += 1
        rings.append(np.array(ring))
    # back wall: fan to a centre point
    last = rings[-1]
    back = np.mean(np.array(vertices)[last - first_index], axis=0) - [0, 0, 0.004]
    vertices.append(back)
    is_lower.append(False)
    pole = next_id
    faces = []
    n = len(loop)
    for a, b in zip(rings[:-1], rings[1:]):
        for j in range(n):
            j1 = (j + 1) % n
            faces += [[a[j], b[j], b[j1]], [a[j], b[j1], a[j1]]]
    faces += [[last[j], pole, last[(j + 1) % n]] for j in range(n)]
    return MouthCavity(np.array(vertices), np.array(faces, dtype=np.int64), np.array(is_lower))


def build_builtin_teeth(points: np.ndarray, mouth_loop: np.ndarray,
                        settings: MouthSettings = MouthSettings()) -> TeethGeometry:
    """Teeth along a parabolic arch behind the closed lips (face points (468+, 3))."""
    s = settings
    _, _, mid = lip_line(points, np.asarray(mouth_loop))
    front_z = np.interp(0.0, mid[:, 0], mid[:, 2]) - s.teeth_depth_m
    bite_y = np.interp(0.0, mid[:, 0], mid[:, 1])
    u = np.linspace(-1.0, 1.0, s.teeth_columns)
    arch = np.stack([u * s.teeth_half_width_m, np.full_like(u, bite_y), front_z - s.teeth_arch_depth_m * u ** 2], 1)
    return build_teeth(arch, s.teeth)

"""Relax the source portrait's smile into a neutral, closed mouth.

Why: the only public-domain portrait that ships offline (scikit-image's astronaut) smiles
with parted lips. A neutral model must have closed lips and relaxed mouth corners,
because smiles and open mouths are what the expression components and the jaw add. We
move the inner lip contour onto one closing line (the upper and lower inner lips meet,
with a hair's-breadth gap so no triangle collapses), draw the mouth corners in and down
to neutral, and spread that displacement over the lips and cheeks with a biharmonic
field that is zero beyond ``influence_m`` from the mouth and on the face outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compute_server.head import mesh_fields
from .face_topology import FaceTopology


@dataclass(frozen=True)
class NeutralMouthSettings:
    """How far the smile is relaxed (metres); defaults give a ~52 mm wide closed mouth."""

    mouth_half_width_m: float = 0.026   # neutral chelion-to-midline distance
    corner_height_m: float = -0.0015    # corners relative to the closing line at the midline
    closing_blend: float = 0.45         # 0 = lips meet at the upper lip, 1 = at the lower lip
    lip_gap_m: float = 0.0004           # upper/lower inner rims stay this far apart
    influence_m: float = 0.040          # displacement fades to zero this far from the mouth centre


def split_mouth_loop(points: np.ndarray, loop: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Inner lip loop -> (upper path, lower path, right corner, left corner).

    Each path runs from the subject's right corner (-X) to the left corner (+X) and
    includes both corners.
    """
    loop = list(loop)
    right = int(loop[int(np.argmin(points[loop, 0]))])
    left = int(loop[int(np.argmax(points[loop, 0]))])
    i, j = loop.index(right), loop.index(left)
    first = [loop[(i + k) % len(loop)] for k in range((j - i) % len(loop) + 1)]
    second = [loop[(j + k) % len(loop)] for k in range((i - j) % len(loop) + 1)][::-1]
    upper, lower = (first, second) if points[first, 1].mean() > points[second, 1].mean() else (second, first)
    return np.array(upper), np.array(lower), right, left


def _interp_path(points: np.ndarray, path: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Path (ordered by increasing x) -> (len(x), 3) points at the given x by linear interpolation."""
    p = points[path]
    order = np.argsort(p[:, 0], kind="stable")
    xs = p[order, 0]
    return np.stack([x, np.interp(x, xs, p[order, 1]), np.interp(x, xs, p[order, 2])], axis=1)


def outer_lip_corners(points: np.ndarray, inner_loop: np.ndarray) -> tuple[int, int]:
    """MediaPipe's outer lip contour corners (right, left): the extreme-x outer lip points."""
    from mediapipe.python.solutions import face_mesh_connections as fmc
    lips = sorted({v for e in fmc.FACEMESH_LIPS for v in e} - set(int(v) for v in inner_loop))
    lips = np.array(lips)
    return int(lips[np.argmin(points[lips, 0])]), int(lips[np.argmax(points[lips, 0])])


def neutralize_mouth(points: np.ndarray, topology: FaceTopology,
                     settings: NeutralMouthSettings = NeutralMouthSettings()) -> np.ndarray:
    """Face points (>= 468, 3) in head axes (symmetric about x = 0) -> points with a neutral mouth."""
    face = points[:468]
    upper, lower, right, left = split_mouth_loop(face, topology.mouth)
    outer_right, outer_left = outer_lip_corners(face, topology.mouth)
    half_width_now = 0.5 * (face[left, 0] - face[right, 0])
    scale_x = settings.mouth_half_width_m / half_width_now

    targets: dict[int, np.ndarray] = {}
    centre_line = lambda x: ((1 - settings.closing_blend) * _interp_path(face, upper, x)  # noqa: E731
                             + settings.closing_blend * _interp_path(face, lower, x))
    mid_y = centre_line(np.array([0.0]))[0, 1]
    for path, sign in ((upper, 1.0), (lower, -1.0)):
        line = centre_line(face[path, 0])
        for k, v in enumerate(path):
            t = min(abs(face[v, 0]) / half_width_now, 1.0)
            y = line[k, 1] + (mid_y + settings.corner_height_m - line[k, 1]) * t ** 2
            gap = 0.0 if v in (right, left) else 0.5 * settings.lip_gap_m * sign
            targets[int(v)] = np.array([face[v, 0] * scale_x, y + gap, line[k, 2]])
    corner_drop = {right: targets[right] - face[right], left: targets[left] - face[left]}
    for outer, inner in ((outer_right, right), (outer_left, left)):
        targets[outer] = face[outer] + corner_drop[inner]

    mouth_centre = face[np.r_[upper, lower]].mean(axis=0)
    far = np.linalg.norm(face - mouth_centre, axis=1) > settings.influence_m
    fixed = set(np.flatnonzero(far).tolist()) | set(topology.oval.tolist())
    fixed -= set(targets)
    known = np.array(sorted(targets) + sorted(fixed))
    values = np.array([targets[v] - face[v] for v in sorted(targets)] + [np.zeros(3)] * len(fixed))
    displacement = mesh_fields.harmonic(face, topology.faces, known, values, order=2)
    out = points.copy()
    out[:468] += displacement
    return out

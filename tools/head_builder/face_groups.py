"""Named groups of face-mesh vertices (brows, lids, lips, nose wings) for the components.

Why: expression and identity components are specified on anatomical landmarks ("the
upper lid rim", "the outer half of the left brow"). MediaPipe publishes the contours as
connection sets (``FACEMESH_LIPS``, ``FACEMESH_LEFT_EYEBROW``, ...); we take the vertex sets
from those and split them by geometry (side by the sign of x, upper/lower by height), so
no index list is typed in by hand except the documented single points (nose tip 1,
chin 152).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neutralize import split_mouth_loop

NOSE_TIP = 1
CHIN_BOTTOM = 152
NASION = 168


@dataclass(frozen=True)
class EyeGroups:
    """One eye: lid-rim paths (corner to corner, both corners included, ordered by x)."""

    upper_rim: np.ndarray
    lower_rim: np.ndarray
    outer_corner: int
    inner_corner: int


@dataclass(frozen=True)
class FaceGroups:
    """Vertex groups; '_right' is the subject's right (-X), '_left' the subject's left (+X)."""

    eye_right: EyeGroups
    eye_left: EyeGroups
    brow_right: np.ndarray
    brow_left: np.ndarray
    lip_upper_rim: np.ndarray     # inner lip contour, upper path, right corner to left corner
    lip_lower_rim: np.ndarray
    lip_outer_upper: np.ndarray   # outer lip contour (vermilion border), upper half
    lip_outer_lower: np.ndarray
    mouth_corner_right: np.ndarray  # inner and outer corner vertices
    mouth_corner_left: np.ndarray
    ala_right: np.ndarray          # nose-wing vertices
    ala_left: np.ndarray
    lips: np.ndarray               # every vertex of the lips (between and on the contours)


def _connection_vertices(name: str) -> np.ndarray:
    from mediapipe.python.solutions import face_mesh_connections as fmc
    return np.array(sorted({v for e in getattr(fmc, name) for v in e}), dtype=np.int64)


def _eye(points: np.ndarray, rim_loop: np.ndarray) -> EyeGroups:
    upper, lower, right, left = split_mouth_loop(points, rim_loop)  # same corner/upper-lower split
    inner, outer = (right, left) if abs(points[right, 0]) < abs(points[left, 0]) else (left, right)
    return EyeGroups(upper, lower, int(outer), int(inner))


def face_groups(points: np.ndarray, topology) -> FaceGroups:
    """Groups for the prepared face (points (468+, 3) symmetric about x = 0)."""
    p = points[:468]
    brows = _connection_vertices("FACEMESH_LEFT_EYEBROW").tolist() + _connection_vertices("FACEMESH_RIGHT_EYEBROW").tolist()
    brows = np.array(sorted(set(brows)))
    upper_rim, lower_rim, corner_r, corner_l = split_mouth_loop(p, topology.mouth)
    lips_all = _connection_vertices("FACEMESH_LIPS")
    outer = np.array(sorted(set(lips_all.tolist()) - set(topology.mouth.tolist())))
    outer_r, outer_l = outer[np.argmin(p[outer, 0])], outer[np.argmax(p[outer, 0])]
    mouth_y = 0.5 * (p[upper_rim, 1].mean() + p[lower_rim, 1].mean())
    outer_mid = outer[(outer != outer_r) & (outer != outer_l)]
    nose = _connection_vertices("FACEMESH_NOSE")
    half_width = np.abs(p[nose, 0]).max()
    alae = nose[np.abs(p[nose, 0]) > 0.7 * half_width]
    # every vertex inside the outer lip contour (by height between the contours near its x)
    lip_outer_upper = outer_mid[p[outer_mid, 1] > mouth_y]
    lip_outer_lower = outer_mid[p[outer_mid, 1] <= mouth_y]
    return FaceGroups(
        eye_right=_eye(p, topology.eye_right),
        eye_left=_eye(p, topology.eye_left),
        brow_right=brows[p[brows, 0] < 0], brow_left=brows[p[brows, 0] > 0],
        lip_upper_rim=upper_rim, lip_lower_rim=lower_rim,
        lip_outer_upper=lip_outer_upper, lip_outer_lower=lip_outer_lower,
        mouth_corner_right=np.array([corner_r, outer_r]), mouth_corner_left=np.array([corner_l, outer_l]),
        ala_right=alae[p[alae, 0] < 0], ala_left=alae[p[alae, 0] > 0],
        lips=_inside_lips(p, outer, lip_outer_upper, lip_outer_lower),
    )


def _inside_lips(p: np.ndarray, outer: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Face vertices whose (x, y) lies between the upper and lower outer lip contours."""
    xs_u, xs_l = np.argsort(p[upper, 0]), np.argsort(p[lower, 0])
    x = p[:, 0]
    inside_x = (x >= p[outer, 0].min()) & (x <= p[outer, 0].max())
    top = np.interp(x, p[upper, 0][xs_u], p[upper, 1][xs_u])
    bottom = np.interp(x, p[lower, 0][xs_l], p[lower, 1][xs_l])
    front = p[:, 2] > np.median(p[outer, 2]) - 0.012
    inside = inside_x & (p[:, 1] <= top + 1e-6) & (p[:, 1] >= bottom - 1e-6) & front
    return np.union1d(np.flatnonzero(inside), outer)

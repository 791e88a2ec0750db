"""Displacement fields on the built-in head: constraints spread smoothly, lid rotations.

Why: both expression and identity components are "move these anatomical points like
this, let the skin follow smoothly, leave the rest alone". ``SkinFieldSolver`` does the
"follow smoothly" part once for the whole skin (cotangent bi-Laplacian, prescribed
displacements, zero beyond a radius) and ``lid_rotation_targets`` produces lid motions
that slide along the eyeball (a rotation about the eye's hinge axis) so lids never
cut into the eye.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from compute_server.head import mesh_fields
from .assemble import PART_CAVITY, PART_FACE, PART_SOCKET, HeadGeometry
from .face_groups import EyeGroups

CORNER_TAPER = 0.3  # the closing line meets the corners over this fraction of the eye's width


class SkinFieldSolver:
    """Biharmonic displacement fields over the skin of a HeadGeometry."""

    def __init__(self, geo: HeadGeometry):
        self.geo = geo
        self.skin = np.flatnonzero(geo.vertex_part <= PART_CAVITY)
        remap = np.full(len(geo.vertices), -1)
        remap[self.skin] = np.arange(len(self.skin))
        self.remap = remap
        L, mass = mesh_fields.cotangent_laplacian(geo.vertices[self.skin], remap[geo.skin_faces])
        self.operator = (L @ sp.diags(1.0 / mass) @ L).tocsr()

    def spread(self, targets: dict[int, np.ndarray], zero_beyond_m: float, keep_zero=()) -> np.ndarray:
        """Displacement (V, 3): ``targets`` {vertex: (3,)} exactly, zero on skin vertices
        farther than ``zero_beyond_m`` from every target and on ``keep_zero``, biharmonic
        in between; non-skin vertices (eyeballs, teeth) get zero."""
        v = self.geo.vertices
        ids = np.array(sorted(targets), dtype=np.int64)
        tree_points = v[ids]
        skin_points = v[self.skin]
        dist = np.full(len(self.skin), np.inf)
        for start in range(0, len(ids), 256):
            block = tree_points[start:start + 256]
            dist = np.minimum(dist, np.linalg.norm(skin_points[:, None] - block[None], axis=2).min(axis=1))
        zero = set(self.skin[dist > zero_beyond_m].tolist()) | set(int(k) for k in keep_zero)
        zero -= set(ids.tolist())
        zero = np.array(sorted(zero), dtype=np.int64)
        known = np.r_[ids, zero]
        values = np.concatenate([np.array([targets[int(k)] for k in ids]), np.zeros((len(zero), 3))])
        field = mesh_fields.interpolate(self.operator, self.remap[known], values)
        out = np.zeros_like(v)
        out[self.skin] = field
        return out


def eye_axes(inner_corner: np.ndarray, outer_corner: np.ndarray) -> np.ndarray:
    """(3, 3) rows: lid hinge axis (along the corners), up, forward; right-handed.

    Lids turn about the line through the eyeball centre parallel to the line between the
    eye corners, so the corners (nearly on that axis) stay where they are."""
    axis = outer_corner - inner_corner
    axis = axis / np.linalg.norm(axis)
    if axis[0] < 0:
        axis = -axis
    up = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
    up /= np.linalg.norm(up)
    return np.stack([axis, up, np.cross(axis, up)])


def rotate_about_axis(points: np.ndarray, centre: np.ndarray, axes: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate points (N, 3) about the hinge axis ``axes[0]`` through centre by angles (N,)
    (radians, positive = the front of the eye moves up)."""
    d = (points - centre) @ axes.T  # (axis, up, forward) coordinates
    c, s = np.cos(angle), np.sin(angle)
    up = d[:, 1] * c + d[:, 2] * s
    forward = -d[:, 1] * s + d[:, 2] * c
    return centre + np.stack([d[:, 0], up, forward], axis=1) @ axes


def _elevation(points: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Angle (N,) of points about the hinge axis: 0 straight ahead, positive up."""
    d = (points - centre) @ axes.T
    return np.arctan2(d[:, 1], d[:, 2])


class LidMotion:
    """Lid rotations of one eye (see ``lid_rotation_targets``)."""

    def __init__(self, geo: HeadGeometry, eye: EyeGroups, centre: np.ndarray, upper_travel: float,
                 lower_travel: float, min_gap_rad: float):
        self.geo, self.eye, self.centre = geo, eye, centre
        self.upper_travel, self.lower_travel, self.min_gap_rad = upper_travel, lower_travel, min_gap_rad
        v = geo.vertices
        self.axes = eye_axes(v[eye.inner_corner], v[eye.outer_corner])
        self._upper_x, self._upper_elev = self._profile(eye.upper_rim)
        self._lower_x, self._lower_elev = self._profile(eye.lower_rim)
        self.corner_x = np.sort(v[[eye.inner_corner, eye.outer_corner], 0])
        self.corner_elevation = float(_elevation(v[[eye.inner_corner]], centre, self.axes)[0])

    def _profile(self, rim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.geo.vertices[rim, 0])
        return self.geo.vertices[rim, 0][order], _elevation(self.geo.vertices[rim], self.centre, self.axes)[order]

    def angle(self, x: float, is_upper: bool) -> float:
        """Rotation (radians) of a lid point at x on the upper or lower lid."""
        elev_up = np.interp(x, self._upper_x, self._upper_elev)
        elev_lo = np.interp(x, self._lower_x, self._lower_elev)
        gap = elev_up - elev_lo
        total = self.upper_travel + self.lower_travel
        if total <= 0:  # opening wider
            return float(-self.upper_travel * gap if is_upper else self.lower_travel * gap)
        # Closing: both rims move towards one closing line, which runs through the eye
        # corners (so no rim crosses the corner it ends at) and elsewhere divides the
        # opening in the ratio of the travels; at full closure the rims stay min_gap apart.
        lower_share = self.lower_travel / total
        to_corner = min(abs(x - self.corner_x[0]), abs(x - self.corner_x[1]))
        w = float(mesh_fields.smoothstep(0.0, CORNER_TAPER * (self.corner_x[1] - self.corner_x[0]), to_corner))
        closed = self.corner_elevation + w * (elev_lo + lower_share * gap - self.corner_elevation)
        half_gap = 0.5 * min(self.min_gap_rad, 0.5 * gap)
        if is_upper:
            return float(self.upper_travel / max(1.0 - lower_share, 1e-12) * (closed + half_gap - elev_up))
        return float(self.lower_travel / max(lower_share, 1e-12) * (closed - half_gap - elev_lo))

    def rim_and_skin_angles(self, lid_skin_m: float) -> dict[int, float]:
        """Angles of the rim vertices and of the lid skin within ``lid_skin_m`` of the rims."""
        v, eye = self.geo.vertices, self.eye
        corners = {eye.inner_corner, eye.outer_corner}
        angles = {int(k): self.angle(v[k, 0], True) for k in eye.upper_rim if k not in corners}
        angles.update({int(k): self.angle(v[k, 0], False) for k in eye.lower_rim if k not in corners})
        face = np.flatnonzero(self.geo.vertex_part == PART_FACE)
        radius = np.linalg.norm(v[eye.upper_rim] - self.centre, axis=1).mean() + lid_skin_m
        near = face[(np.linalg.norm(v[face] - self.centre, axis=1) < radius)
                    & (v[face, 0] > self.corner_x[0]) & (v[face, 0] < self.corner_x[1])]
        for k in near:
            if int(k) in angles or int(k) in corners:
                continue
            to_upper = _distance_to_path(v[k], v[eye.upper_rim])
            to_lower = _distance_to_path(v[k], v[eye.lower_rim])
            falloff = 1.0 - float(mesh_fields.smoothstep(0.0, lid_skin_m, min(to_upper, to_lower)))
            angles[int(k)] = self.angle(v[k, 0], to_upper < to_lower) * falloff
        angles.update({int(c): 0.0 for c in corners})
        return angles

    def socket_angles(self, rim_angles: dict[int, float]) -> dict[int, float]:
        """The socket turns with its rim: each socket column takes the mean angle of its rim
        vertex and that vertex's two rim neighbours (so the columns behind the corners, whose
        rim vertices stay, turn with the lids beside them instead of folding), fading out
        towards the back of the socket."""
        geo = self.geo
        loop = _rim_loop(geo, self.eye.upper_rim)
        position = {int(r): k for k, r in enumerate(loop)}
        angles = {}
        for k in np.flatnonzero((geo.vertex_part == PART_SOCKET) & np.isin(geo.socket_rim, loop)):
            at = position[int(geo.socket_rim[k])]
            around = [int(loop[(at + d) % len(loop)]) for d in (-1, 0, 1)]
            fade = 1.0 - float(mesh_fields.smoothstep(0.45, 1.0, geo.socket_depth[k]))
            angles[int(k)] = float(np.mean([rim_angles.get(r, 0.0) for r in around])) * fade
        return angles


def lid_rotation_targets(geo: HeadGeometry, eye: EyeGroups, centre: np.ndarray, upper_travel: float,
                         lower_travel: float, lid_skin_m: float = 0.0065,
                         min_gap_rad: float = 0.03) -> dict[int, np.ndarray]:
    """Displacements that rotate the lids of one eye about its hinge axis (``eye_axes``).

    upper_travel: fraction of the lid opening the upper rim moves down (negative opens
    wider); lower_travel: fraction the lower rim moves up. With upper + lower = 1 the rims
    meet, ``min_gap_rad`` apart (0.03 rad ~ 0.4 mm at the lid). The lid skin within
    ``lid_skin_m`` of the rims turns with a falloff, and the socket behind the lids turns
    with its rim, fading towards the back of the socket.
    """
    motion = LidMotion(geo, eye, centre, upper_travel, lower_travel, min_gap_rad)
    angles = motion.rim_and_skin_angles(lid_skin_m)
    angles.update(motion.socket_angles(angles))
    ids = np.array(sorted(angles))
    v = geo.vertices
    moved = rotate_about_axis(v[ids], centre, motion.axes, np.array([angles[i] for i in ids]))
    return {int(i): moved[k] - v[i] for k, i in enumerate(ids)}


def _rim_loop(geo: HeadGeometry, upper_rim: np.ndarray) -> np.ndarray:
    """The lid-rim boundary loop (in loop order) that contains the given rim vertices."""
    topo = geo.face.topology
    for loop in (topo.eye_right, topo.eye_left):
        if int(upper_rim[1]) in set(loop.tolist()):
            return loop
    raise ValueError("rim vertices are not on an eye loop")


def _distance_to_path(point: np.ndarray, path: np.ndarray) -> float:
    """Distance from a point (3,) to an open polyline (M, 3)."""
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", point - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-30), 0.0, 1.0)
    return float(np.linalg.norm(a + t[:, None] * ab - point, axis=1).min())

"""Identity (shape) components of the built-in head: smooth, anthropometric deformations.

Each component is a displacement field (V, 3) with coefficient 1 = one standard deviation
of the anthropometric measurement it changes (adult means/SDs, rounded: head breadth
~5.5 mm, head length ~6.5 mm, bigonial (jaw) width ~7 mm, interpupillary distance
~3.5 mm, ...), so coefficients in [-3, 3] span plausible heads. Fields are analytic
functions of the neutral position (scalings about landmark planes, compact smooth bumps
around landmarks), so they are smooth everywhere. Eyeballs and teeth rows move rigidly
(by the field at their centre; both teeth rows by the same shift, so they never close
onto each other) and the whole eye region (eyeball, socket, lids) translates with its
eyeball, blending into the field a little further out, so lids stay seated on the eye.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from compute_server.head import mesh_fields
from .assemble import PART_EYE_LEFT, PART_EYE_RIGHT, PART_TEETH, HeadGeometry
from .face_groups import CHIN_BOTTOM, NASION, NOSE_TIP, face_groups

MM = 1e-3
EYE_RIGID_M = 0.019   # within this distance of an eyeball centre identity fields are a pure translation
EYE_BLEND_M = 0.032   # ... blending back to the full field by this distance


def bump(points: np.ndarray, centre: np.ndarray, radius: float, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Compactly supported smooth bump (N,): 1 at centre, 0 beyond radius (per-axis scaled)."""
    d = np.linalg.norm((points - centre) / np.asarray(scale), axis=1) / radius
    return np.where(d < 1.0, (1.0 - d * d) ** 3, 0.0)


class IdentityBuilder:
    """Builds every identity component for one HeadGeometry."""

    def __init__(self, geo: HeadGeometry):
        self.geo = geo
        self.v = geo.vertices
        self.groups = face_groups(geo.vertices, geo.face.topology)
        v = self.v
        self.eye_y = float(geo.eye_centres[:, 1].mean())
        self.eye_z = float(geo.eye_centres[:, 2].mean())
        self.chin = v[CHIN_BOTTOM]
        self.nose_tip = v[NOSE_TIP]
        self.nasion = v[NASION]
        g = self.groups
        self.mouth_y = float(v[np.r_[g.lip_upper_rim, g.lip_lower_rim], 1].mean())
        self.back_z = float(v[:, 2].min())
        self.top_y = float(v[:, 1].max())
        neck = geo.volume.neck
        self.neck_axis = np.array([0.0, neck.centre_xz[1]])
        self.jaw_angle_y = float(v[[58, 288], 1].mean())

    def _on_face(self, probe: np.ndarray) -> np.ndarray:
        """The face-mesh vertex nearest to a probe point (bump centres sit on the skin)."""
        return self.v[:468][np.argmin(np.linalg.norm(self.v[:468] - probe, axis=1))]

    def _finish(self, field_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Evaluate a field on every vertex, then make eyeballs and teeth rigid and blend sockets."""
        geo, v = self.geo, self.v
        d = field_of(v)
        part = geo.vertex_part
        for k, eye_part in enumerate((PART_EYE_RIGHT, PART_EYE_LEFT)):
            centre = geo.eye_centres[k]
            centre_shift = field_of(centre[None])[0]
            # the eye region (eyeball, socket, lids) moves as one around the eyeball
            keep = 1.0 - mesh_fields.smoothstep(EYE_RIGID_M, EYE_BLEND_M, np.linalg.norm(v - centre, axis=1))
            d = d + keep[:, None] * (centre_shift - d)
            d[part == eye_part] = centre_shift
        teeth = part == PART_TEETH
        d[teeth] = field_of(v[teeth].mean(axis=0, keepdims=True))[0]  # both rows together
        return d

    # ---- components (each returns (V, 3) for +1 standard deviation) ---------------------
    def head_breadth(self):   # SD ~5.5 mm
        return self._finish(lambda p: np.stack([p[:, 0] * (5.5 * MM / 152 / MM), 0 * p[:, 0], 0 * p[:, 0]], 1))

    def head_length(self):    # SD ~6.5 mm: the back of the head moves, the face does not
        z0 = self.eye_z - 0.030
        span = z0 - self.back_z

        def f(p):
            behind = np.clip((z0 - p[:, 2]) / span, 0.0, None)
            return np.stack([0 * behind, 0 * behind, -6.5 * MM * behind ** 1.5], 1)
        return self._finish(f)

    def crown_height(self):   # SD ~6 mm
        span = self.top_y - self.eye_y
        return self._finish(lambda p: np.stack([0 * p[:, 0], 6.0 * MM * np.clip((p[:, 1] - self.eye_y) / span, 0, None) ** 2,
                                                0 * p[:, 0]], 1))

    def face_width(self):     # SD ~5 mm (bizygomatic), fading behind the ears and below the jaw
        def f(p):
            w = mesh_fields.smoothstep(self.eye_z - 0.120, self.eye_z - 0.050, p[:, 2])
            w *= mesh_fields.smoothstep(self.chin[1] - 0.01, self.mouth_y, p[:, 1])
            return np.stack([p[:, 0] * (2.5 * MM / 0.066) * w, 0 * w, 0 * w], 1)
        return self._finish(f)

    def face_height(self):    # SD ~5 mm: lower face (nose to chin) longer; the neck follows
        y0, y1 = self.nose_tip[1], self.chin[1]

        def f(p):
            t = np.clip((y0 - p[:, 1]) / (y0 - y1), 0.0, 1.0)
            return np.stack([0 * t, -5.0 * MM * t, 0 * t], 1)
        return self._finish(f)

    def jaw_width(self):      # SD ~7 mm bigonial: the lower face widens towards the jaw angles
        def f(p):
            below_mouth = 1.0 - mesh_fields.smoothstep(self.jaw_angle_y - 0.005, self.mouth_y + 0.015, p[:, 1])
            above_neck = mesh_fields.smoothstep(self.jaw_angle_y - 0.070, self.jaw_angle_y - 0.010, p[:, 1])
            front = mesh_fields.smoothstep(self.eye_z - 0.140, self.eye_z - 0.050, p[:, 2])
            w = below_mouth * above_neck * front
            return np.stack([p[:, 0] * (3.5 * MM / 0.055) * w, 0 * w, 0 * w], 1)
        return self._finish(f)

    def chin_protrusion(self):  # SD ~3 mm
        centre = self._on_face(self.chin + [0.0, 0.010, 0.0])
        return self._finish(lambda p: bump(p, centre, 0.030)[:, None] * np.array([0.0, -0.5 * MM, 3.0 * MM]))

    def cheekbones(self):     # SD ~3 mm outwards at the zygomatic prominence
        def f(p):
            out = np.zeros_like(p)
            for sign in (-1.0, 1.0):
                centre = self._on_face(np.array([sign * 0.050, self.eye_y - 0.022, self.eye_z - 0.010]))
                out += bump(p, centre, 0.028)[:, None] * np.array([sign * 3.0 * MM, 0.5 * MM, 1.0 * MM])
            return out
        return self._finish(f)

    def eye_spacing(self):    # SD ~3.5 mm interpupillary: each eye region moves 1.75 mm
        def f(p):
            out = np.zeros_like(p)
            for k, sign in ((0, -1.0), (1, 1.0)):
                out += bump(p, self.geo.eye_centres[k], 0.030)[:, None] * np.array([sign * 1.75 * MM, 0.0, 0.0])
            return out
        return self._finish(f)

    def nose_length(self):    # SD ~3.5 mm: the tip and wings move down and slightly forward
        centre = self.nose_tip
        return self._finish(lambda p: bump(p, centre, 0.026, (1.0, 1.0, 1.2))[:, None] * np.array([0.0, -3.5 * MM, 1.0 * MM]))

    def nose_width(self):     # SD ~2.5 mm alar width
        def f(p):
            out = np.zeros_like(p)
            for ala, sign in ((self.groups.ala_right, -1.0), (self.groups.ala_left, 1.0)):
                centre = self.v[ala].mean(axis=0)
                out += bump(p, centre, 0.016)[:, None] * np.array([sign * 1.25 * MM, 0.0, 0.0])
            return out
        return self._finish(f)

    def nose_protrusion(self):  # SD ~2.5 mm
        centre = self.nose_tip
        return self._finish(lambda p: bump(p, centre, 0.024, (1.0, 1.6, 1.0))[:, None] * np.array([0.0, 0.0, 2.5 * MM]))

    def forehead_slope(self):   # SD ~4 mm at the hairline: the forehead leans back
        y0 = self.nasion[1] + 0.010
        span = self.top_y - y0

        def f(p):
            t = np.clip((p[:, 1] - y0) / span, 0.0, None)
            front = mesh_fields.smoothstep(self.eye_z - 0.090, self.eye_z - 0.020, p[:, 2])
            return np.stack([0 * t, 0 * t, -4.0 * MM * np.minimum(t * 2.0, 1.0) ** 2 * front], 1)
        return self._finish(f)

    def neck_thickness(self):   # SD ~4 mm in radius: the neck grows about its axis
        neck_radius = float(self.geo.volume.neck.radii_xz.mean())

        def f(p):
            w = 1.0 - mesh_fields.smoothstep(self.jaw_angle_y - 0.040, self.jaw_angle_y + 0.005, p[:, 1])
            radial = np.stack([p[:, 0] - self.neck_axis[0], p[:, 2] - self.neck_axis[1]], 1)
            r = np.maximum(np.linalg.norm(radial, axis=1), 1e-9)
            k = 4.0 * MM / neck_radius * np.minimum(1.0, neck_radius / r) * w  # scaling near the axis, 4 mm at the skin
            return np.stack([radial[:, 0] * k, 0 * w, radial[:, 1] * k], 1)
        return self._finish(f)

    def lip_fullness(self):   # SD ~1.5 mm: lips thicker, forward and away from the lip line
        g = self.groups
        centre = self._on_face(self.v[np.r_[g.lip_upper_rim, g.lip_lower_rim]].mean(axis=0))

        def f(p):
            w = bump(p, centre, 0.030, (1.0, 0.45, 1.0))
            away = np.clip((p[:, 1] - centre[1]) / 0.008, -1.0, 1.0)
            return np.stack([0 * w, 1.5 * MM * away * w, 1.5 * MM * w], 1)
        return self._finish(f)


SHAPE_NAMES = [
    "head_breadth", "head_length", "crown_height", "face_width", "face_height", "jaw_width",
    "chin_protrusion", "cheekbones", "eye_spacing", "nose_length", "nose_width", "nose_protrusion",
    "forehead_slope", "neck_thickness", "lip_fullness",
]


def build_identity(geo: HeadGeometry) -> tuple[list[str], np.ndarray]:
    """(names, shapedirs (V, 3, S)) for the geometry, coefficient 1 = one standard deviation."""
    b = IdentityBuilder(geo)
    return list(SHAPE_NAMES), np.stack([getattr(b, name)() for name in SHAPE_NAMES], axis=2)

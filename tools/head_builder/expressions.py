"""Expression components of the built-in head, with names an animator understands.

Each component is a displacement field (V, 3) with coefficient 1 = the full expression:
anatomical points are moved by the amount a face makes (blink: the upper lid rim meets
the lower one; smile: the mouth corner rises ~8 mm and moves ~7 mm out and back), the
skin follows with a biharmonic field and is untouched beyond a few centimetres (the
back of the head, the other side of the face for one-sided components). Lid motions
rotate about the eye's axis so lids slide over the eyeball. Lips that are closed stay
closed unless the component opens them (upper/lower rims move together). Jaw opening is
the jaw joint (``jaw_pose``), not a component. Eyeballs and teeth never move with
expressions.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from compute_server.head import mesh_fields
from .assemble import PART_CAVITY, PART_FACE, PART_SOCKET, HeadGeometry
from .face_groups import FaceGroups, face_groups
from .fields import SkinFieldSolver, lid_rotation_targets

MM = 1e-3
LID_RADIUS_M = 0.026   # lid expressions fade out this far from their targets
BROW_RADIUS_M = 0.030
MOUTH_RADIUS_M = 0.040
CAVITY_RING_SHARE = (1.0, 0.65, 0.3)  # how much of its lip vertex's motion each front cavity ring takes
EYE_LOCK_M = 0.0035     # lid skin this close to the rims is held still by non-lid components


class ExpressionBuilder:
    """Builds every expression component for one HeadGeometry."""

    def __init__(self, geo: HeadGeometry):
        self.geo = geo
        self.v = geo.vertices
        self.groups: FaceGroups = face_groups(geo.vertices, geo.face.topology)
        self.solver = SkinFieldSolver(geo)
        g = self.groups
        self.mouth_centre = self.v[np.r_[g.lip_upper_rim, g.lip_lower_rim]].mean(axis=0)
        self.mouth_half_width = 0.5 * (self.v[g.lip_upper_rim[-1], 0] - self.v[g.lip_upper_rim[0], 0])
        rims = self.v[np.r_[g.lip_upper_rim, g.lip_lower_rim]]
        design = np.stack([np.ones(len(rims)), (rims[:, 0] - self.mouth_centre[0]) ** 2], axis=1)
        self.arch = np.linalg.lstsq(design, rims[:, 2], rcond=None)[0]
        self.locked = self._eye_region(EYE_LOCK_M)
        self.deep_cavity = self._deep_cavity()

    # ---- helpers ----------------------------------------------------------------------
    def _side(self, side: str):
        g = self.groups
        right = side == "right"
        return dict(eye=g.eye_right if right else g.eye_left,
                    centre=self.geo.eye_centres[0 if right else 1],
                    brow=g.brow_right if right else g.brow_left,
                    corner=g.mouth_corner_right if right else g.mouth_corner_left,
                    ala=g.ala_right if right else g.ala_left,
                    sign=-1.0 if right else 1.0)

    def _lids(self, side: str, upper: float, lower: float) -> dict:
        s = self._side(side)
        return lid_rotation_targets(self.geo, s["eye"], s["centre"], upper, lower)

    def _brow(self, brow: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> dict:
        """Brow vertices move by a blend of an inner and an outer displacement along |x|."""
        ax = np.abs(self.v[brow, 0])
        t = (ax - ax.min()) / max(ax.max() - ax.min(), 1e-9)
        return {int(b): (1 - tk) * np.asarray(inner) + tk * np.asarray(outer) for b, tk in zip(brow, t)}

    def _arch_z(self, x: np.ndarray) -> np.ndarray:
        """Depth of the dental arch the lips rest on, a parabola fitted to the lip line."""
        return self.arch[0] + self.arch[1] * (np.asarray(x) - self.mouth_centre[0]) ** 2

    def _lip_profile(self, displacement_of_x: Callable[[np.ndarray], np.ndarray], vertices=None) -> dict:
        """Every lip vertex moves by a displacement that depends only on its x (lips stay
        closed); sideways motion also follows the arch's depth, so lips slide around the
        teeth instead of through them."""
        vertices = self.groups.lips if vertices is None else vertices
        x = self.v[vertices, 0]
        d = displacement_of_x(x)
        half = self.mouth_half_width
        centre = self.mouth_centre[0]
        clip = lambda t: np.clip(t, centre - half, centre + half)  # noqa: E731 - no extrapolation past the corners
        d[:, 2] += self._arch_z(clip(x + d[:, 0])) - self._arch_z(clip(x))
        return {int(k): d[i] for i, k in enumerate(vertices)}

    def _corner_weight(self, x: np.ndarray, sign: float) -> np.ndarray:
        """0 at the far mouth corner, 1 at the near one, smooth in between."""
        u = np.clip(sign * (x - self.mouth_centre[0]) / self.mouth_half_width, -1.0, 1.0)
        return mesh_fields.smoothstep(-1.0, 1.0, u) ** 1.5

    def _cheek_point(self, sign: float) -> int:
        """Face vertex on the cheek: beside the nose wing, level with the nose bottom, out 25 mm."""
        g = self.groups
        ala = g.ala_left if sign > 0 else g.ala_right
        probe = self.v[ala].mean(axis=0) + [sign * 0.022, -0.004, -0.012]
        face = np.flatnonzero(self.geo.vertex_part == PART_FACE)
        return int(face[np.argmin(np.linalg.norm(self.v[face] - probe, axis=1))])

    def _cheek_patch(self, sign: float, displacement: np.ndarray, radius: float = 0.012) -> dict:
        centre = self.v[self._cheek_point(sign)]
        face = np.flatnonzero(self.geo.vertex_part == PART_FACE)
        d = np.linalg.norm(self.v[face] - centre, axis=1)
        near = face[d < radius]
        w = 1.0 - mesh_fields.smoothstep(0.0, radius, d[d < radius])
        return {int(k): displacement * wk for k, wk in zip(near, w)}

    def _eye_region(self, margin: float) -> np.ndarray:
        """Vertices most components must not move: lid rims, the lid skin within ``margin``
        of them, the sockets, and the mouth cavity behind its first ring."""
        g = self.groups
        rims = np.concatenate([g.eye_right.upper_rim, g.eye_right.lower_rim, g.eye_left.upper_rim, g.eye_left.lower_rim])
        face = np.flatnonzero(self.geo.vertex_part == PART_FACE)
        dist = np.min(np.linalg.norm(self.v[face][:, None] - self.v[rims][None], axis=2), axis=1)
        sockets = np.flatnonzero(self.geo.vertex_part == PART_SOCKET)
        return np.unique(np.r_[rims, face[dist < margin], sockets, self._deep_cavity()])

    def _cavity_rings(self) -> tuple[np.ndarray, np.ndarray]:
        """Mouth-cavity vertices and their ring number (0 = the ring right behind the lips)."""
        cavity = np.flatnonzero(self.geo.vertex_part == PART_CAVITY)
        return cavity, (cavity - cavity[0]) // len(self.geo.face.topology.mouth)

    def _deep_cavity(self) -> np.ndarray:
        """Mouth-cavity vertices behind the front rings: they stay put so lips never push
        the cavity into the teeth (the front rings follow the lips, ``CAVITY_RING_SHARE``)."""
        cavity, ring = self._cavity_rings()
        return cavity[ring >= len(CAVITY_RING_SHARE)]

    def _with_cavity_front(self, targets: dict) -> dict:
        """The cavity ring right behind the lips moves exactly with its lip-rim vertex, the
        next rings with less of that motion (so the cavity wall cannot fold)."""
        cavity, ring = self._cavity_rings()
        loop = self.geo.face.topology.mouth
        for depth, share in enumerate(CAVITY_RING_SHARE):
            for k, vid in enumerate(cavity[ring == depth]):
                rim = int(loop[k])
                if rim in targets and int(vid) not in targets:
                    targets[int(vid)] = share * targets[rim]
        return targets

    def _field(self, targets: dict, radius: float, lids_move: bool = False) -> np.ndarray:
        """Spread targets; unless the component moves the lids itself, the eye region
        (rims, lid margins, sockets) stays put so nothing slides into the eyeballs; the
        deep mouth cavity always stays put."""
        locked = self.deep_cavity if lids_move else self.locked
        targets = self._with_cavity_front(dict(targets))
        keep = [k for k in locked if int(k) not in targets]
        return self.solver.spread(targets, radius, keep_zero=keep)

    # ---- components -------------------------------------------------------------------
    def blink(self, side: str) -> np.ndarray:
        return self._field(self._lids(side, 0.75, 0.25), LID_RADIUS_M, lids_move=True)

    def eye_wide(self, side: str) -> np.ndarray:
        targets = self._lids(side, -0.30, -0.04)
        s = self._side(side)
        targets.update(self._brow(s["brow"], [0, 2.0 * MM, 0], [0, 2.5 * MM, 0]))
        return self._field(targets, LID_RADIUS_M, lids_move=True)

    def squint(self, side: str) -> np.ndarray:
        targets = self._lids(side, 0.12, 0.38)
        s = self._side(side)
        targets.update(self._cheek_patch(s["sign"], np.array([0.0, 2.5 * MM, 0.5 * MM])))
        return self._field(targets, LID_RADIUS_M + 0.01, lids_move=True)

    def brow_raise_inner(self) -> np.ndarray:
        g = self.groups
        targets = self._brow(g.brow_right, [0, 9 * MM, 0.5 * MM], [0, 2.5 * MM, 0])
        targets.update(self._brow(g.brow_left, [0, 9 * MM, 0.5 * MM], [0, 2.5 * MM, 0]))
        return self._field(targets, BROW_RADIUS_M)

    def brow_raise_outer(self, side: str) -> np.ndarray:
        s = self._side(side)
        return self._field(self._brow(s["brow"], [0, 2.0 * MM, 0], [0, 8.5 * MM, 0]), BROW_RADIUS_M)

    def brow_lower(self) -> np.ndarray:
        g = self.groups
        targets = {}
        for brow, sign in ((g.brow_right, -1.0), (g.brow_left, 1.0)):
            targets.update(self._brow(brow, [-sign * 3.5 * MM, -5.5 * MM, 1.0 * MM], [0, -2.5 * MM, 0]))
        return self._field(targets, BROW_RADIUS_M)

    def smile(self, side: str) -> np.ndarray:
        s = self._side(side)
        corner = np.array([s["sign"] * 7.0 * MM, 8.0 * MM, -1.5 * MM])
        targets = self._lip_profile(lambda x: self._corner_weight(x, s["sign"])[:, None] * corner)
        targets.update(self._cheek_patch(s["sign"], np.array([s["sign"] * 1.0 * MM, 3.5 * MM, 1.5 * MM])))
        return self._field(targets, MOUTH_RADIUS_M)

    def mouth_frown(self, side: str) -> np.ndarray:
        s = self._side(side)
        corner = np.array([s["sign"] * 1.5 * MM, -6.5 * MM, -1.0 * MM])
        return self._field(self._lip_profile(lambda x: self._corner_weight(x, s["sign"])[:, None] * corner),
                           MOUTH_RADIUS_M)

    def mouth_shift(self, side: str) -> np.ndarray:
        sign = self._side(side)["sign"]
        return self._field(self._lip_profile(lambda x: np.tile([sign * 8.0 * MM, 0.0, -0.5 * MM], (len(x), 1))),
                           MOUTH_RADIUS_M)

    def _pucker_profile(self, x: np.ndarray, forward: float, narrowing: float) -> np.ndarray:
        u = np.clip((x - self.mouth_centre[0]) / self.mouth_half_width, -1.0, 1.0)
        dx = -(x - self.mouth_centre[0]) * narrowing
        dz = forward * (1.0 - 0.5 * u * u)
        return np.stack([dx, np.zeros_like(x), dz], axis=1)

    def lip_pucker(self) -> np.ndarray:
        return self._field(self._lip_profile(lambda x: self._pucker_profile(x, 7.0 * MM, 0.26)), MOUTH_RADIUS_M)

    def lip_funnel(self) -> np.ndarray:
        g = self.groups
        targets = self._lip_profile(lambda x: self._pucker_profile(x, 6.0 * MM, 0.22))
        upper = set(g.lip_upper_rim[1:-1].tolist()) | set(g.lip_outer_upper.tolist())
        for k in list(targets):
            if k in upper or self.v[k, 1] > self.mouth_centre[1] + 1e-4:
                open_by = 3.5 * MM
            else:
                open_by = -3.5 * MM
            u = abs(self.v[k, 0] - self.mouth_centre[0]) / self.mouth_half_width
            targets[k] = targets[k] + np.array([0.0, open_by * max(1.0 - u * u, 0.0), 0.0])
        return self._field(targets, MOUTH_RADIUS_M)

    def lips_press(self) -> np.ndarray:
        g = self.groups
        targets = {}
        for k in g.lips:
            u = abs(self.v[k, 0] - self.mouth_centre[0]) / self.mouth_half_width
            towards_line = self.mouth_centre[1] - self.v[k, 1]
            targets[int(k)] = np.array([0.0, 0.55 * towards_line, -1.5 * MM * max(1.0 - u * u, 0.0)])
        return self._field(targets, MOUTH_RADIUS_M)

    def upper_lip_raise(self) -> np.ndarray:
        g = self.groups
        vertices = np.array(sorted((set(g.lips.tolist()) - set(g.lip_lower_rim.tolist()) - set(g.lip_outer_lower.tolist()))
                                   & set(np.flatnonzero(self.v[:, 1] > self.mouth_centre[1] - 1e-4).tolist())))
        lift = lambda x: np.stack([np.zeros_like(x),  # noqa: E731
                                   5.0 * MM * np.clip(1 - ((x - self.mouth_centre[0]) / self.mouth_half_width) ** 2, 0, 1),
                                   np.full_like(x, 0.5 * MM)], axis=1)
        targets = self._lip_profile(lift, vertices)
        for ala in (g.ala_right, g.ala_left):
            targets.update({int(k): np.array([0.0, 1.5 * MM, 0.0]) for k in ala})
        targets.update({int(k): np.zeros(3) for k in (g.mouth_corner_right.tolist() + g.mouth_corner_left.tolist())})
        return self._field(targets, MOUTH_RADIUS_M)

    def lower_lip_down(self) -> np.ndarray:
        g = self.groups
        vertices = np.array(sorted((set(g.lips.tolist()) - set(g.lip_upper_rim.tolist()) - set(g.lip_outer_upper.tolist()))
                                   & set(np.flatnonzero(self.v[:, 1] < self.mouth_centre[1] + 1e-4).tolist())))
        drop = lambda x: np.stack([np.zeros_like(x),  # noqa: E731
                                   -5.0 * MM * np.clip(1 - ((x - self.mouth_centre[0]) / self.mouth_half_width) ** 2, 0, 1),
                                   np.full_like(x, 1.0 * MM)], axis=1)
        targets = self._lip_profile(drop, vertices)
        targets.update({int(k): np.zeros(3) for k in (g.mouth_corner_right.tolist() + g.mouth_corner_left.tolist())})
        return self._field(targets, MOUTH_RADIUS_M)

    def cheek_puff(self) -> np.ndarray:
        targets = {}
        for sign in (-1.0, 1.0):
            targets.update(self._cheek_patch(sign, np.array([sign * 9.0 * MM, -1.0 * MM, 2.0 * MM]), radius=0.020))
        targets.update(self._lip_profile(lambda x: np.tile([0.0, 0.0, 2.0 * MM], (len(x), 1))))
        return self._field(targets, 0.045)

    def nose_sneer(self, side: str) -> np.ndarray:
        s = self._side(side)
        targets = {int(k): np.array([s["sign"] * 0.5 * MM, 4.0 * MM, 0.0]) for k in s["ala"]}
        targets.update(self._cheek_patch(s["sign"], np.array([0.0, 2.0 * MM, 0.5 * MM]), radius=0.010))
        return self._field(targets, 0.028)


EXPRESSION_NAMES = [
    "blink_left", "blink_right", "eye_wide_left", "eye_wide_right", "squint_left", "squint_right",
    "brow_raise_inner", "brow_raise_outer_left", "brow_raise_outer_right", "brow_lower",
    "smile_left", "smile_right", "mouth_frown_left", "mouth_frown_right",
    "lip_pucker", "lip_funnel", "lips_press", "upper_lip_raise", "lower_lip_down", "cheek_puff",
    "nose_sneer_left", "nose_sneer_right", "mouth_left", "mouth_right",
]


def build_expressions(geo: HeadGeometry) -> tuple[list[str], np.ndarray]:
    """(names, exprdirs (V, 3, E)) for the geometry."""
    b = ExpressionBuilder(geo)
    makers = {
        "brow_raise_inner": b.brow_raise_inner, "brow_lower": b.brow_lower, "lip_pucker": b.lip_pucker,
        "lip_funnel": b.lip_funnel, "lips_press": b.lips_press, "upper_lip_raise": b.upper_lip_raise,
        "lower_lip_down": b.lower_lip_down, "cheek_puff": b.cheek_puff,
    }
    sided = {"blink": b.blink, "eye_wide": b.eye_wide, "squint": b.squint, "brow_raise_outer": b.brow_raise_outer,
             "smile": b.smile, "mouth_frown": b.mouth_frown, "nose_sneer": b.nose_sneer, "mouth": b.mouth_shift}
    fields = []
    for name in EXPRESSION_NAMES:
        if name in makers:
            fields.append(makers[name]())
        else:
            base, side = name.rsplit("_", 1)
            fields.append(sided[base](side))
    return list(EXPRESSION_NAMES), np.stack(fields, axis=2)

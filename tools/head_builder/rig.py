"""Joints, joint regressor and skinning weights of the built-in head.

Joints (FLAME order): root at the neck base, neck in the upper neck at the height of the
jaw angles, jaw on the hinge between the two jaw joints just in front of the ears,
left_eye / right_eye at the eyeball centres. As in FLAME, joints are regressed from the
vertices (``J_regressor``), so identity components move them: each row is a small set
of surrounding vertices with weights that reproduce the designed joint exactly on the
neutral head (the closest weights to a plain average that do so).

Skinning weights are harmonic over the skin (the smoothest weights with prescribed
values): the neck base belongs to the root, the skull, upper face and upper lip to the
neck joint, the lower lip, chin, the floor of the mouth cavity and the skin under the
chin to the jaw; cheeks, jaw angles and the neck are free and blend smoothly. Eyeballs
belong entirely to their eye joints, the upper teeth to the skull and the lower to the jaw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compute_server.head import mesh_fields
from .assemble import (PART_CAVITY, PART_CLOSURE, PART_EYE_LEFT, PART_EYE_RIGHT, PART_FACE, PART_TEETH,
                       HeadGeometry)
from .mouth import lip_line

ROOT, NECK, JAW, LEFT_EYE, RIGHT_EYE = range(5)
PARENTS = np.array([-1, 0, 1, 1, 1])
JAW_ANGLE_POINTS = (58, 288)   # MediaPipe: face outline at the jaw angles
CHIN_BOTTOM = 152


@dataclass(frozen=True)
class RigSettings:
    root_above_base_m: float = 0.015
    jaw_ahead_of_ear_m: float = 0.008
    lip_band_m: float = 0.005        # lips within this height of the mouth line are left free
    support_radius_m: float = 0.022  # vertices around the jaw hinges that regress the jaw joint
    ring_half_height_m: float = 0.010


@dataclass(frozen=True)
class Rig:
    """joints (5, 3) rest positions; J_regressor (5, V); lbs_weights (V, 5); parents (5,)."""

    joints: np.ndarray
    J_regressor: np.ndarray
    lbs_weights: np.ndarray
    parents: np.ndarray


def exact_fit_weights(support: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weights (K,) closest to uniform with sum 1 and sum w_k p_k = target. support (K, 3)."""
    k = len(support)
    if k < 4:
        raise ValueError("a joint needs at least four supporting vertices")
    A = np.vstack([support.T, np.ones(k)])  # (4, K)
    b = np.r_[target, 1.0]
    uniform = np.full(k, 1.0 / k)
    return uniform + A.T @ np.linalg.solve(A @ A.T, b - A @ uniform)


def joint_positions(geo: HeadGeometry, settings: RigSettings = RigSettings()) -> np.ndarray:
    """Designed rest joints (5, 3) in head space (see module docstring)."""
    v = geo.vertices
    neck = geo.volume.neck
    axis_z = neck.centre_xz[1]
    root = np.array([0.0, neck.y_base + settings.root_above_base_m, axis_z])
    neck_joint = np.array([0.0, v[list(JAW_ANGLE_POINTS), 1].mean(), axis_z])
    ear = geo.volume.ears[1]
    jaw = np.array([0.0, ear.centre[1], ear.centre[2] + ear.radii[2] + settings.jaw_ahead_of_ear_m])
    right_eye, left_eye = geo.eye_centres
    return np.array([root, neck_joint, jaw, left_eye, right_eye])


def joint_regressor(geo: HeadGeometry, joints: np.ndarray, settings: RigSettings = RigSettings()) -> np.ndarray:
    """(5, V) regressor reproducing ``joints`` on the neutral vertices."""
    v = geo.vertices
    closure = np.flatnonzero(geo.vertex_part == PART_CLOSURE)
    regressor = np.zeros((5, len(v)))

    def ring(y: float) -> np.ndarray:
        return closure[np.abs(v[closure, 1] - y) < settings.ring_half_height_m]

    # jaw: skin vertices around both hinges (a symmetric pair of patches)
    hinge_skin = []
    for side in (-1.0, 1.0):
        lateral = closure[np.sign(v[closure, 0]) == side]
        hinge = np.array([side * np.abs(v[lateral, 0]).max(), joints[JAW][1], joints[JAW][2]])
        near = lateral[np.linalg.norm((v[lateral] - hinge) * [0.3, 1.0, 1.0], axis=1) < settings.support_radius_m]
        hinge_skin.append(near)
    supports = {
        ROOT: ring(joints[ROOT][1]),
        NECK: ring(joints[NECK][1]),
        JAW: np.concatenate(hinge_skin),
        LEFT_EYE: np.flatnonzero(geo.vertex_part == PART_EYE_LEFT),
        RIGHT_EYE: np.flatnonzero(geo.vertex_part == PART_EYE_RIGHT),
    }
    for j, support in supports.items():
        regressor[j, support] = exact_fit_weights(v[support], joints[j])
    return regressor


def skinning_weights(geo: HeadGeometry, settings: RigSettings = RigSettings()) -> np.ndarray:
    """(V, 5) weights, rows sum to 1 (see module docstring)."""
    v = geo.vertices
    n = len(v)
    part = geo.vertex_part
    skin_faces = geo.skin_faces
    skin = np.flatnonzero(part <= PART_CAVITY)
    topo = geo.face.topology
    upper, lower, mid = lip_line(v, topo.mouth)
    mouth_y = float(np.interp(0.0, mid[:, 0], mid[:, 1]))
    corner_x = float(np.abs(v[[upper[0], upper[-1]], 0]).mean())
    neck = geo.volume.neck
    neck_front_z = neck.centre_xz[1] + neck.radii_xz[1]

    label = np.full(n, -1)
    y, x, z = v[:, 1], v[:, 0], v[:, 2]
    is_skin = np.zeros(n, dtype=bool)
    is_skin[skin] = True
    label[is_skin & (y > mouth_y + settings.lip_band_m)] = NECK
    face = part == PART_FACE
    label[face & (y < mouth_y - settings.lip_band_m) & (np.abs(x) < 0.9 * corner_x)] = JAW
    chin_y = v[CHIN_BOTTOM, 1]
    label[(part == PART_CLOSURE) & (z > neck_front_z + 0.008) & (y < chin_y + 0.020)] = JAW
    label[upper[1:-1]] = NECK
    label[lower[1:-1]] = JAW
    label[(part == PART_CAVITY) & geo.cavity_lower] = JAW
    label[(part == PART_CAVITY) & ~geo.cavity_lower] = NECK
    label[is_skin & (y < neck.y_base + 0.012)] = ROOT

    known = np.flatnonzero(is_skin & (label >= 0))
    values = np.eye(5)[label[known]]
    # interpolate on the skin only: remap skin vertices to a compact index range
    remap = np.full(n, -1)
    remap[skin] = np.arange(len(skin))
    weights = np.zeros((n, 5))
    weights[skin] = mesh_fields.harmonic(v[skin], remap[skin_faces], remap[known], values, order=1)
    weights[part == PART_EYE_LEFT] = np.eye(5)[LEFT_EYE]
    weights[part == PART_EYE_RIGHT] = np.eye(5)[RIGHT_EYE]
    teeth = part == PART_TEETH
    weights[teeth & ~geo.teeth_lower] = np.eye(5)[NECK]
    weights[teeth & geo.teeth_lower] = np.eye(5)[JAW]
    weights = np.clip(weights, 0.0, 1.0)
    return weights / weights.sum(axis=1, keepdims=True)


def build_rig(geo: HeadGeometry, settings: RigSettings = RigSettings()) -> Rig:
    joints = joint_positions(geo, settings)
    return Rig(joints=joints, J_regressor=joint_regressor(geo, joints, settings),
               lbs_weights=skinning_weights(geo, settings), parents=PARENTS.copy())

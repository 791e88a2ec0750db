"""FLAME joint parameters <-> Blender armature poses, in numpy.

Why a module of its own: animators keyframe pose-bone rotations in Blender, the server
renders FLAME axis-angle parameters. The conversion must be exact both ways, or a shot
rendered on the server drifts from what the animator posed. Nothing here imports bpy, so
the maths is tested without Blender; the add-on reads bone rest matrices from Blender and
passes them in.

Spaces
- Head space (FLAME): metres, +Y up, +Z out of the face, +X towards the subject's left.
- Armature space: the rig root object's local space, ``HEAD_TO_BLENDER`` applied to head
  space (Blender's Z-up). Bone rest matrices (``bone.matrix_local``) live here.

FLAME's joints (root, neck, jaw, left_eye, right_eye; parents -1, 0, 1, 1, 1) have
identity rest orientation; joint j's axis-angle rotation ``R_j`` acts in head-space axes
relative to its parent, about the joint's rest position; the global ``translation`` is
added last. A Blender bone with rest matrix ``Rest_j = T(h_j) B_j`` and pose basis
``Basis_j = T(L_j) Q_j`` deforms by ``P_j Rest_j^-1`` with ``P_j = P_p Rest_p^-1 Rest_j
Basis_j``. Both give the same skinning transforms (conjugated by ``H = HEAD_TO_BLENDER``)
exactly when, for every joint,

    Q_j = B_j^T  H R_j H^T  B_j          (any bone rest orientation B_j works)
    L_root = B_root^T  H translation     (other bones keep L = 0)

so bones may point wherever animators like (the jaw towards the chin, eyes forward).
Quaternions are (w, x, y, z) like ``shared.rotations`` and Blender.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import HEAD_TO_BLENDER
from .rotations import (
    axis_angle_to_matrix, matrix_to_quat, quat_to_axis_angle, quat_to_matrix,
)

JOINT_NAMES = ("root", "neck", "jaw", "left_eye", "right_eye")
JOINT_PARENTS = (-1, 0, 1, 1, 1)
# Which head parameter drives each joint: (key, first column) of a (T, 3k) array.
JOINT_PARAMS = {"root": ("rotation", 0), "neck": ("neck_pose", 0), "jaw": ("jaw_pose", 0),
                "left_eye": ("eyes_pose", 0), "right_eye": ("eyes_pose", 3)}
POSE_PARAM_WIDTHS = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}

_H = HEAD_TO_BLENDER[:3, :3]


# ----------------------------------------------------------------------------- bone layout


@dataclass(frozen=True)
class BoneLayout:
    """Rest placement of the five bones in armature space (metres).

    names: JOINT_NAMES; parents: JOINT_PARENTS.
    matrices: (5, 4, 4) bone rest matrices (columns: bone X, Y (head->tail), Z axes, head).
    lengths: (5,) bone lengths.
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    matrices: np.ndarray
    lengths: np.ndarray

    @property
    def heads(self) -> np.ndarray:
        """(5, 3) bone heads = joint rest positions in armature space."""
        return self.matrices[:, :3, 3].copy()

    @property
    def tails(self) -> np.ndarray:
        """(5, 3) bone tails: head + length * bone Y axis."""
        return self.heads + self.matrices[:, :3, 1] * self.lengths[:, None]


def _frame_from_direction(direction: np.ndarray, x_hint: np.ndarray) -> np.ndarray:
    """(3, 3) rotation with Y = ``direction`` and X as close to ``x_hint`` as possible."""
    y = direction / np.linalg.norm(direction)
    x = x_hint - np.dot(x_hint, y) * y
    if np.linalg.norm(x) < 1e-6:  # hint parallel to the bone: any perpendicular will do
        x = np.cross(y, [0.0, 0.0, 1.0] if abs(y[2]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def bone_layout(joint_rest: np.ndarray, rest_vertices: np.ndarray, skin_weights: np.ndarray | None = None) -> BoneLayout:
    """Bones for an animator: heads on FLAME's rest joints, X towards the subject's left.

    joint_rest: (5, 3) rest joint positions, head space (metres).
    rest_vertices: (V, 3) rest mesh, head space; sets bone lengths from the head's size.
    skin_weights: (V, 5) optional; the jaw bone then points at the jaw-weighted vertex
        furthest in front (the chin), else down and forward.

    root and neck point up (+Y head), the eyes out of the face (+Z head), the jaw to the
    chin. With X = subject's left, a positive local X rotation of the jaw opens the mouth,
    as FLAME's jaw_pose[0] does.
    """
    joint_rest = np.asarray(joint_rest, dtype=np.float64).reshape(len(JOINT_NAMES), 3)
    rest_vertices = np.asarray(rest_vertices, dtype=np.float64).reshape(-1, 3)
    size = float(np.ptp(rest_vertices[:, 1])) if len(rest_vertices) else 0.25
    size = size if size > 1e-6 else 0.25
    up, forward, left = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    chin_dir = np.array([0.0, -0.6, 0.8])
    jaw_length = 0.3 * size
    if skin_weights is not None and len(rest_vertices):
        weights = np.asarray(skin_weights, dtype=np.float64)
        jaw_vertices = rest_vertices[weights[:, 2] > 0.5]
        if len(jaw_vertices):
            chin = jaw_vertices[np.argmax(jaw_vertices[:, 2] - 0.5 * jaw_vertices[:, 1])]
            offset = chin - joint_rest[2]
            if np.linalg.norm(offset) > 1e-4 and offset[2] > 0:
                chin_dir, jaw_length = offset, float(np.linalg.norm(offset))
    directions_head = [up, up, chin_dir, forward, forward]
    lengths = np.array([0.25 * size, 0.25 * size, jaw_length, 0.1 * size, 0.1 * size])
    matrices = np.tile(np.eye(4), (len(JOINT_NAMES), 1, 1))
    for j, direction in enumerate(directions_head):
        matrices[j, :3, :3] = _frame_from_direction(_H @ direction, _H @ left)
        matrices[j, :3, 3] = _H @ joint_rest[j]
    return BoneLayout(JOINT_NAMES, JOINT_PARENTS, matrices, lengths)


# ----------------------------------------------------------------------------- per joint


def _rest_rotation(rest: np.ndarray) -> np.ndarray:
    """The rotation part of a (4, 4) or (3, 3) bone rest matrix, made orthonormal."""
    rot = np.asarray(rest, dtype=np.float64)[:3, :3]
    return _orthonormal(rot)


def _orthonormal(m: np.ndarray) -> np.ndarray:
    """Nearest rotation(s) to (..., 3, 3) matrices (drops scale and shear; polar decomposition)."""
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64))
    det = np.linalg.det(u @ vt)
    u = u.copy()
    u[..., :, -1] *= np.where(det < 0, -1.0, 1.0)[..., None]
    return u @ vt


def flame_to_bone_quat(axis_angle: np.ndarray, bone_rest: np.ndarray) -> np.ndarray:
    """FLAME joint rotation -> the pose bone's local rotation quaternion.

    axis_angle: (..., 3) radians, head-space axes, relative to the parent joint.
    bone_rest: (4, 4) or (3, 3) the bone's rest matrix in armature space.
    Returns (..., 4) unit quaternions (w, x, y, z) with w >= 0.
    """
    b = _rest_rotation(bone_rest)
    r = axis_angle_to_matrix(axis_angle)
    q = b.T @ _H @ r @ _H.T @ b
    return matrix_to_quat(q)


def bone_quat_to_flame(quat: np.ndarray, bone_rest: np.ndarray) -> np.ndarray:
    """Inverse of ``flame_to_bone_quat``: (..., 4) local quaternions -> (..., 3) axis-angle."""
    b = _rest_rotation(bone_rest)
    q = quat_to_matrix(quat)
    r = _H.T @ b @ q @ b.T @ _H
    return quat_to_axis_angle(matrix_to_quat(r))


def bone_matrix_to_flame(basis_rotation: np.ndarray, bone_rest: np.ndarray) -> np.ndarray:
    """(..., 3, 3) pose-bone local rotation matrices (any scale is removed) -> (..., 3) axis-angle."""
    q = _orthonormal(np.asarray(basis_rotation, dtype=np.float64))
    b = _rest_rotation(bone_rest)
    r = _H.T @ b @ q @ b.T @ _H
    return quat_to_axis_angle(matrix_to_quat(r))


def translation_to_root_location(translation: np.ndarray, root_rest: np.ndarray) -> np.ndarray:
    """FLAME ``translation`` (..., 3) metres, head space -> root pose-bone location (..., 3)."""
    b = _rest_rotation(root_rest)
    return np.asarray(translation, dtype=np.float64) @ (b.T @ _H).T


def root_location_to_translation(location: np.ndarray, root_rest: np.ndarray) -> np.ndarray:
    """Root pose-bone location (..., 3) (bone rest frame, metres) -> FLAME translation (..., 3)."""
    b = _rest_rotation(root_rest)
    return np.asarray(location, dtype=np.float64) @ (_H.T @ b).T


# ----------------------------------------------------------------------------- whole rig


def pose_from_head_params(params: dict, rest_matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head parameters -> keyframe values for the armature.

    params: any of rotation, neck_pose, jaw_pose (T, 3), eyes_pose (T, 6), translation
        (T, 3); missing keys are zeros. T is taken from the first key present.
    rest_matrices: (5, 4, 4) bone rest matrices in JOINT_NAMES order.
    Returns quats (T, 5, 4) (continuous in time: consecutive keys never flip sign, so
    Blender's quaternion interpolation takes the short way) and root locations (T, 3).
    """
    n_frames = _frame_count(params)
    quats = np.zeros((n_frames, len(JOINT_NAMES), 4))
    for j, name in enumerate(JOINT_NAMES):
        key, col = JOINT_PARAMS[name]
        aa = _param(params, key, n_frames)[:, col:col + 3]
        quats[:, j] = make_quats_continuous(flame_to_bone_quat(aa, rest_matrices[j]))
    locations = translation_to_root_location(_param(params, "translation", n_frames), rest_matrices[0])
    return quats, locations


def head_params_from_basis(basis: np.ndarray, rest_matrices: np.ndarray) -> dict[str, np.ndarray]:
    """Pose-bone local matrices (``matrix_basis``) -> head parameters.

    basis: (T, 5, 4, 4) local pose matrices in JOINT_NAMES order (rotation may carry
        scale; it is removed). rest_matrices: (5, 4, 4).
    Returns float32 arrays rotation, neck_pose, jaw_pose (T, 3), eyes_pose (T, 6),
    translation (T, 3). Location keys on bones other than the root are ignored: FLAME
    joints only rotate.
    """
    basis = np.asarray(basis, dtype=np.float64)
    aa = np.stack([bone_matrix_to_flame(basis[:, j, :3, :3], rest_matrices[j]) for j in range(len(JOINT_NAMES))], 1)
    return {
        "rotation": aa[:, 0].astype(np.float32),
        "neck_pose": aa[:, 1].astype(np.float32),
        "jaw_pose": aa[:, 2].astype(np.float32),
        "eyes_pose": np.concatenate([aa[:, 3], aa[:, 4]], axis=1).astype(np.float32),
        "translation": root_location_to_translation(basis[:, 0, :3, 3], rest_matrices[0]).astype(np.float32),
    }


def basis_from_pose_matrices(pose_matrices: np.ndarray, rest_matrices: np.ndarray,
                             parents=JOINT_PARENTS) -> np.ndarray:
    """Final pose matrices -> the equivalent local ``matrix_basis`` of every bone.

    pose_matrices: (T, J, 4, 4) ``pose_bone.matrix`` (armature space, after constraints,
        drivers and IK); rest_matrices: (J, 4, 4) ``bone.matrix_local``.
    Returns (T, J, 4, 4) with Basis_j = (Rest_p^-1 Rest_j)^-1 P_p^-1 P_j (root: Rest^-1 P),
    Blender's own relation for bones that inherit rotation and scale; sampling this way
    honours constraints (e.g. eyes tracking a target), which ``matrix_basis`` would miss.
    """
    pose = np.asarray(pose_matrices, dtype=np.float64)
    rest = np.asarray(rest_matrices, dtype=np.float64)
    basis = np.empty_like(pose)
    for j, parent in enumerate(parents):
        if parent < 0:
            basis[:, j] = np.linalg.inv(rest[j]) @ pose[:, j]
        else:
            local_rest = np.linalg.inv(rest[parent]) @ rest[j]
            basis[:, j] = np.linalg.inv(local_rest) @ np.linalg.inv(pose[:, parent]) @ pose[:, j]
    return basis


def armature_deform_matrices(basis: np.ndarray, rest_matrices: np.ndarray, parents=JOINT_PARENTS) -> np.ndarray:
    """Blender's skinning transforms ``P_j Rest_j^-1`` for local pose matrices.

    basis: (T, J, 4, 4); rest_matrices: (J, 4, 4). Returns (T, J, 4, 4) in armature
    space. The reference for what the Armature modifier does with vertex groups.
    """
    basis = np.asarray(basis, dtype=np.float64)
    rest = np.asarray(rest_matrices, dtype=np.float64)
    pose = np.empty_like(basis)
    for j, parent in enumerate(parents):
        if parent < 0:
            pose[:, j] = rest[j] @ basis[:, j]
        else:
            pose[:, j] = pose[:, parent] @ np.linalg.inv(rest[parent]) @ rest[j] @ basis[:, j]
    return pose @ np.linalg.inv(rest)[None]


def basis_matrices(quats: np.ndarray, root_locations: np.ndarray | None = None) -> np.ndarray:
    """(T, J, 4) local quaternions and optional (T, 3) root locations -> (T, J, 4, 4)."""
    quats = np.asarray(quats, dtype=np.float64)
    out = np.tile(np.eye(4), quats.shape[:2] + (1, 1))
    out[..., :3, :3] = quat_to_matrix(quats)
    if root_locations is not None:
        out[:, 0, :3, 3] = root_locations
    return out


def make_quats_continuous(quats: np.ndarray) -> np.ndarray:
    """(T, 4) quaternions with signs flipped so consecutive keys have a positive dot
    product (q and -q are the same rotation, but Blender interpolates components)."""
    q = np.array(quats, dtype=np.float64, copy=True)
    for t in range(1, len(q)):
        if np.dot(q[t], q[t - 1]) < 0:
            q[t] = -q[t]
    return q


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class ExpressionMapping:
    """How a motion's expression columns land on a rig's shape keys.

    source_columns[i] feeds target_keys[i]; ``unmatched_source`` are motion columns no
    shape key takes, ``unmatched_target`` shape keys the motion does not drive.
    """

    source_columns: tuple[int, ...]
    target_keys: tuple[str, ...]
    unmatched_source: tuple[str, ...]
    unmatched_target: tuple[str, ...]
    by_name: bool


def map_expressions(source_names: list[str], n_source: int, target_names: list[str]) -> ExpressionMapping:
    """Match a motion's expression columns to shape keys: by name when the motion names
    its columns, else by position (the first min(E_src, E_dst) columns)."""
    if source_names:
        index = {name: i for i, name in enumerate(source_names)}
        pairs = [(index[name], name) for name in target_names if name in index]
        used = {name for _, name in pairs}
        return ExpressionMapping(tuple(i for i, _ in pairs), tuple(n for _, n in pairs),
                                 tuple(n for n in source_names if n not in used),
                                 tuple(n for n in target_names if n not in used), True)
    n = min(n_source, len(target_names))
    return ExpressionMapping(tuple(range(n)), tuple(target_names[:n]),
                             tuple(f"#{i}" for i in range(n, n_source)), tuple(target_names[n:]), False)


# ----------------------------------------------------------------------------- helpers


def _frame_count(params: dict) -> int:
    for key in ("expr", *POSE_PARAM_WIDTHS):
        if key in params and params[key] is not None:
            return int(np.asarray(params[key]).shape[0])
    raise ValueError("head parameters hold no frames (expected e.g. jaw_pose (T, 3))")


def _param(params: dict, key: str, n_frames: int) -> np.ndarray:
    value = params.get(key)
    width = POSE_PARAM_WIDTHS[key]
    if value is None:
        return np.zeros((n_frames, width))
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (n_frames, width):
        raise ValueError(f"head parameter '{key}' must be ({n_frames}, {width}), got {value.shape}")
    return value

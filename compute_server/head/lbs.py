"""Linear blend skinning for FLAME-structured head models, in plain torch.

Why a module of its own: the same maths drives the real FLAME model, the built-in head and
(through ``HeadModel``) every fitting, tracking and splat-posing stage; keeping it free of
model loading makes it easy to test against hand-computed cases. Everything here is
batched, differentiable, device- and dtype-agnostic (no ``.cuda()``, no float32
constants): tensors are computed on whatever device/dtype the inputs live on.

The model follows SMPL/FLAME:

    v_shaped = v_template + shapedirs . shape + exprdirs . expr
    J        = J_regressor @ v_shaped                         (rest joints)
    v_posed  = v_shaped + posedirs . vec(R_j - I, j >= 1)     (pose correctives)
    v_out    = sum_j w_vj * G_j(pose, J) (v_posed, 1)          (skinning)
    v_out   += translation

where ``G_j`` is the world transform of joint ``j`` relative to its rest pose, obtained by
walking the kinematic tree ``parents`` from the root. The root joint's rotation is the
global head rotation (FLAME's ``global_orient``); translation is added last.
"""

from __future__ import annotations

import torch
from torch import Tensor


def batch_rodrigues(axis_angle: Tensor, eps: float = 1e-8) -> Tensor:
    """Axis-angle vectors (N, 3) in radians -> rotation matrices (N, 3, 3).

    Uses the Rodrigues formula with a safe normalisation, so the zero rotation maps to the
    identity and its gradient stays finite (the gradient at exactly zero equals the
    gradient of the skew-symmetric first-order term).
    """
    if axis_angle.ndim != 2 or axis_angle.shape[-1] != 3:
        raise ValueError(f"batch_rodrigues expects (N, 3) axis-angle vectors, got {tuple(axis_angle.shape)}")
    angle = torch.sqrt((axis_angle * axis_angle).sum(dim=1, keepdim=True) + eps * eps)  # (N, 1)
    axis = axis_angle / angle
    cos = torch.cos(angle)[:, :, None]
    sin = torch.sin(angle)[:, :, None]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zeros = torch.zeros_like(x)
    skew = torch.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)[None]
    return eye + sin * skew + (1.0 - cos) * torch.bmm(skew, skew)


def blend_shapes(coefficients: Tensor, directions: Tensor) -> Tensor:
    """Linear blend-shape offsets.

    coefficients: (B, K); directions: (V, 3, K) -> offsets (B, V, 3), same units as the
    directions (metres per unit coefficient).
    """
    return torch.einsum("bk,vck->bvc", coefficients, directions)


def vertices_to_joints(J_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Regress joints: J_regressor (J, V) dense, vertices (B, V, 3) -> joints (B, J, 3)."""
    return torch.einsum("jv,bvc->bjc", J_regressor, vertices)


def _rigid(rotation: Tensor, translation: Tensor) -> Tensor:
    """(..., 3, 3) rotation and (..., 3, 1) translation -> (..., 4, 4) homogeneous transform."""
    top = torch.cat([rotation, translation], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def batch_rigid_transform(rot_mats: Tensor, joints: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
    """Pose the kinematic tree.

    rot_mats: (B, J, 3, 3) local joint rotations; joints: (B, J, 3) rest joint positions;
    parents: (J,) long, parents[0] == -1 and parents[j] < j for j > 0.

    Returns posed joint positions (B, J, 3) and the relative skinning transforms
    (B, J, 4, 4) that map a rest-pose point rigidly attached to joint j to its posed
    position.
    """
    batch, n_joints = joints.shape[:2]
    rel_joints = joints.clone()
    rel_joints[:, 1:] = joints[:, 1:] - joints.index_select(1, parents[1:])  # reproducible backward
    local = _rigid(rot_mats.reshape(-1, 3, 3), rel_joints.reshape(-1, 3, 1)).reshape(batch, n_joints, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, n_joints):
        chain.append(torch.matmul(chain[int(parents[j])], local[:, j]))
    world = torch.stack(chain, dim=1)  # (B, J, 4, 4)
    posed_joints = world[:, :, :3, 3]
    # Remove the rest position: A_j = world_j * translate(-J_rest_j).
    rest_h = torch.cat([joints, torch.zeros_like(joints[..., :1])], dim=-1)[..., None]  # (B, J, 4, 1)
    correction = torch.matmul(world, rest_h)  # (B, J, 4, 1)
    relative = world - torch.cat([torch.zeros_like(world[..., :3]), correction], dim=-1)
    return posed_joints, relative


def lbs(
    shape: Tensor,
    expr: Tensor,
    full_pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    exprdirs: Tensor,
    posedirs: Tensor,
    J_regressor: Tensor,
    parents: Tensor,
    lbs_weights: Tensor,
    translation: Tensor | None = None,
    static_offset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """FLAME/SMPL linear blend skinning with shape, expression and pose correctives.

    shape: (B, S); expr: (B, E); full_pose: (B, J*3) axis-angle per joint in joint order
    (root = global rotation first); v_template: (V, 3) metres; shapedirs: (V, 3, S);
    exprdirs: (V, 3, E); posedirs: (P, V*3) with P = (J-1)*9 (FLAME/smplx layout, the
    transpose of the file's (V*3, P)); J_regressor: (J, V); parents: (J,) long;
    lbs_weights: (V, J); translation: (B, 3) metres or None; static_offset: (V, 3) metres or
    None, added to the rest vertices after the joints are regressed (an identity's own
    geometry, such as a hair shell, moves the surface and never the skeleton).

    Returns posed vertices (B, V, 3) and posed joints (B, J, 3), both in head space with
    the translation applied.
    """
    batch = shape.shape[0]
    n_joints = J_regressor.shape[0]
    if full_pose.shape != (batch, n_joints * 3):
        raise ValueError(f"full_pose must be (B, {n_joints * 3}), got {tuple(full_pose.shape)}")
    v_shaped = v_template[None] + blend_shapes(shape, shapedirs) + blend_shapes(expr, exprdirs)
    rest_joints = vertices_to_joints(J_regressor, v_shaped)
    if static_offset is not None:
        v_shaped = v_shaped + static_offset[None]
    return skin(v_shaped, rest_joints, full_pose, posedirs, parents, lbs_weights, translation)


def skin(v_shaped: Tensor, rest_joints: Tensor, full_pose: Tensor, posedirs: Tensor, parents: Tensor,
         lbs_weights: Tensor, translation: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The posing half of ``lbs``: pose correctives and skinning of already shaped vertices.

    Split out so a caller can pose a subset of the vertices (e.g. only those the landmarks
    sit on, for fast fitting) given the rest joints of the full mesh: v_shaped (B, U, 3),
    rest_joints (B, J, 3), posedirs (P, U*3) and lbs_weights (U, J) restricted to the subset.
    """
    batch, n_joints = rest_joints.shape[:2]
    rot_mats = batch_rodrigues(full_pose.reshape(-1, 3)).reshape(batch, n_joints, 3, 3)
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    pose_feature = (rot_mats[:, 1:] - eye).reshape(batch, -1)  # (B, (J-1)*9)
    v_posed = v_shaped + torch.matmul(pose_feature, posedirs).reshape(batch, -1, 3)
    posed_joints, transforms = batch_rigid_transform(rot_mats, rest_joints, parents)
    per_vertex = torch.einsum("vj,bjrc->bvrc", lbs_weights, transforms)  # (B, V, 4, 4)
    vertices = torch.einsum("bvrc,bvc->bvr", per_vertex[..., :3, :3], v_posed) + per_vertex[..., :3, 3]
    if translation is not None:
        vertices = vertices + translation[:, None, :]
        posed_joints = posed_joints + translation[:, None, :]
    return vertices, posed_joints


def vertices_to_landmarks(vertices: Tensor, faces: Tensor, lmk_face_idx: Tensor, lmk_bary: Tensor) -> Tensor:
    """Barycentric landmarks on a mesh.

    vertices: (B, V, 3); faces: (F, 3) long; lmk_face_idx: (L,) long; lmk_bary: (L, 3).
    Returns (B, L, 3) landmark positions (empty (B, 0, 3) when L == 0).
    """
    corners = faces.index_select(0, lmk_face_idx)  # (L, 3)
    tri = vertices.index_select(1, corners.reshape(-1)).reshape(vertices.shape[0], *corners.shape, 3)  # (B, L, 3, 3)
    return torch.einsum("blkc,lk->blc", tri, lmk_bary.to(vertices.dtype))

"""FLAME joint parameters <-> Blender bone poses (shared/rig_math.py), without Blender.

The reference for FLAME's kinematics is the server's own torch LBS
(compute_server.head.lbs.batch_rigid_transform), so these tests check the add-on's
conversion against the code that renders the frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.head.lbs import batch_rigid_transform, batch_rodrigues
from shared.camera import HEAD_TO_BLENDER
from shared.curve_sampling import (
    frame_numbers, keyframe_coordinates, motion_from_samples, motion_on_scene_frames, rows_constant, scene_fps,
)
from shared.motion import Motion
from shared.rig_math import (
    JOINT_PARENTS, armature_deform_matrices, basis_from_pose_matrices, basis_matrices, bone_layout,
    bone_quat_to_flame, flame_to_bone_quat, head_params_from_basis, make_quats_continuous, map_expressions,
    pose_from_head_params, root_location_to_translation, translation_to_root_location,
)
from shared.rotations import axis_angle_to_matrix, quat_to_matrix

RNG = np.random.default_rng(7)
JOINT_REST = np.array([[0.0, 0.0, 0.0], [0.0, -0.02, -0.01], [0.0, -0.03, 0.02], [0.03, 0.03, 0.05],
                       [-0.03, 0.03, 0.05]])


def random_rotation() -> np.ndarray:
    q = RNG.normal(size=4)
    return quat_to_matrix(q / np.linalg.norm(q))


def random_rest(n: int = 5) -> np.ndarray:
    rest = np.tile(np.eye(4), (n, 1, 1))
    for j in range(n):
        rest[j, :3, :3] = random_rotation()
        rest[j, :3, 3] = HEAD_TO_BLENDER[:3, :3] @ JOINT_REST[j]
    return rest


def random_params(n_frames: int, scale: float = 0.6) -> dict:
    return {"rotation": RNG.normal(scale=scale, size=(n_frames, 3)),
            "neck_pose": RNG.normal(scale=scale, size=(n_frames, 3)),
            "jaw_pose": RNG.normal(scale=scale, size=(n_frames, 3)),
            "eyes_pose": RNG.normal(scale=scale, size=(n_frames, 6)),
            "translation": RNG.normal(scale=0.05, size=(n_frames, 3))}


def flame_deform_matrices(params: dict) -> np.ndarray:
    """(T, 5, 4, 4) FLAME skinning transforms in head space, from the server's torch code."""
    full_pose = np.concatenate([params["rotation"], params["neck_pose"], params["jaw_pose"], params["eyes_pose"]], 1)
    n_frames = full_pose.shape[0]
    rot = batch_rodrigues(torch.as_tensor(full_pose.reshape(-1, 3), dtype=torch.float64)).reshape(n_frames, 5, 3, 3)
    joints = torch.as_tensor(np.repeat(JOINT_REST[None], n_frames, 0), dtype=torch.float64)
    _, rel = batch_rigid_transform(rot, joints, torch.tensor(JOINT_PARENTS))
    rel = rel.numpy().copy()
    rel[..., :3, 3] += params["translation"][:, None, :]  # translation is added last
    return rel


def test_bone_quats_reproduce_flame_skinning_for_any_bone_orientation():
    params = random_params(6)
    rest = random_rest()
    quats, root_location = pose_from_head_params(params, rest)
    deform_blender = armature_deform_matrices(basis_matrices(quats, root_location), rest)
    expected = HEAD_TO_BLENDER @ flame_deform_matrices(params) @ HEAD_TO_BLENDER.T
    np.testing.assert_allclose(deform_blender, expected, atol=1e-10)


def test_layout_bones_reproduce_flame_skinning_too():
    vertices = RNG.normal(scale=0.08, size=(200, 3))
    layout = bone_layout(JOINT_REST, vertices)
    params = random_params(4)
    quats, loc = pose_from_head_params(params, layout.matrices)
    deform = armature_deform_matrices(basis_matrices(quats, loc), layout.matrices)
    np.testing.assert_allclose(deform, HEAD_TO_BLENDER @ flame_deform_matrices(params) @ HEAD_TO_BLENDER.T,
                               atol=1e-10)


@pytest.mark.parametrize("angle_scale", [0.3, 1.5, 3.0])
def test_axis_angle_round_trip(angle_scale):
    rest = random_rest()[2]
    aa = RNG.normal(size=(50, 3))
    aa *= (angle_scale * RNG.uniform(0.01, 1.0, size=(50, 1))) / np.maximum(np.linalg.norm(aa, axis=1, keepdims=True), 1e-9)
    back = bone_quat_to_flame(flame_to_bone_quat(aa, rest), rest)
    np.testing.assert_allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(aa), atol=1e-9)
    np.testing.assert_allclose(back, aa, atol=1e-9)  # angles below pi come back unchanged


def test_translation_round_trip_and_zero_pose_is_identity():
    rest = random_rest()
    t = RNG.normal(size=(10, 3))
    np.testing.assert_allclose(root_location_to_translation(translation_to_root_location(t, rest[0]), rest[0]), t,
                               atol=1e-12)
    quats, loc = pose_from_head_params({"jaw_pose": np.zeros((3, 3))}, rest)
    np.testing.assert_allclose(quats[..., 0], 1.0)
    np.testing.assert_allclose(loc, 0.0)


def test_params_round_trip_through_basis_and_through_pose_matrices():
    rest = random_rest()
    params = random_params(5)
    quats, loc = pose_from_head_params(params, rest)
    basis = basis_matrices(quats, loc)
    back = head_params_from_basis(basis, rest)
    for key in params:
        np.testing.assert_allclose(back[key], params[key], atol=2e-6, err_msg=key)
    # final pose matrices (what constraints produce) -> the same basis
    pose = armature_deform_matrices(basis, rest) @ rest[None]
    np.testing.assert_allclose(basis_from_pose_matrices(pose, rest), basis, atol=1e-10)


def test_basis_with_bone_scale_still_gives_rotation():
    rest = random_rest()
    params = random_params(2, scale=0.4)
    quats, loc = pose_from_head_params(params, rest)
    basis = basis_matrices(quats, loc)
    basis[:, 2, :3, :3] *= 1.3  # an animator scaled the jaw bone
    back = head_params_from_basis(basis, rest)
    np.testing.assert_allclose(back["jaw_pose"], params["jaw_pose"], atol=2e-6)


def test_layout_points_bones_like_an_animator_expects():
    vertices = np.concatenate([RNG.normal(scale=0.08, size=(300, 3)), [[0.0, -0.09, 0.07]]])
    weights = np.zeros((len(vertices), 5))
    weights[:, 1] = 1.0
    weights[-1] = [0, 0, 1, 0, 0]  # the chin follows the jaw
    layout = bone_layout(JOINT_REST, vertices, weights)
    h = HEAD_TO_BLENDER[:3, :3]
    np.testing.assert_allclose(layout.heads, JOINT_REST @ h.T, atol=1e-12)
    y_axes = layout.matrices[:, :3, 1]
    np.testing.assert_allclose(y_axes[0], [0, 0, 1], atol=1e-12)  # root and neck up (+Z Blender)
    np.testing.assert_allclose(y_axes[3], [0, -1, 0], atol=1e-12)  # eyes look out of the face (-Y Blender)
    chin_blender = h @ vertices[-1]
    np.testing.assert_allclose(layout.tails[2], chin_blender, atol=1e-9)  # jaw bone ends at the chin
    for m in layout.matrices:  # X = subject's left, right-handed frames
        np.testing.assert_allclose(m[:3, 0], [1, 0, 0], atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(m[:3, :3]), 1.0, atol=1e-12)
    # FLAME's jaw_pose[0] is exactly a rotation about the jaw bone's own X axis...
    quats, _ = pose_from_head_params({"jaw_pose": np.array([[0.3, 0.0, 0.0]])}, layout.matrices)
    np.testing.assert_allclose(quats[0, 2], [np.cos(0.15), np.sin(0.15), 0, 0], atol=1e-12)
    # ...and it opens the mouth: the chin moves down
    deform = armature_deform_matrices(basis_matrices(quats), layout.matrices)[0, 2]
    moved = deform[:3, :3] @ chin_blender + deform[:3, 3]
    assert moved[2] < chin_blender[2] - 0.005


def test_quats_made_continuous():
    q = np.array([[1.0, 0, 0, 0], [-0.99, -0.1, 0, 0], [0.98, 0.2, 0, 0]])
    c = make_quats_continuous(q)
    assert np.all(np.sum(c[1:] * c[:-1], axis=1) > 0)
    np.testing.assert_allclose(np.abs(c), np.abs(q))


def test_expression_mapping_by_name_and_by_position():
    by_name = map_expressions(["smile", "blink_L", "extra"], 3, ["blink_L", "smile", "jaw_fwd"])
    assert by_name.by_name and by_name.source_columns == (1, 0) and by_name.target_keys == ("blink_L", "smile")
    assert by_name.unmatched_source == ("extra",) and by_name.unmatched_target == ("jaw_fwd",)
    by_pos = map_expressions([], 4, ["a", "b"])
    assert by_pos.source_columns == (0, 1) and by_pos.unmatched_source == ("#2", "#3")


def test_frame_timing_and_keyframe_arrays():
    assert scene_fps(30000, 1001) == pytest.approx(29.97002997)
    np.testing.assert_array_equal(frame_numbers(5, 9, 2), [5, 7, 9])
    with pytest.raises(ValueError):
        frame_numbers(3, 2)
    co = keyframe_coordinates([1, 2, 3], np.array([[0.1, 1.0], [0.2, 2.0], [0.3, 3.0]]))
    np.testing.assert_allclose(co, [[1, 0.1, 2, 0.2, 3, 0.3], [1, 1, 2, 2, 3, 3]], rtol=1e-6)
    np.testing.assert_allclose(keyframe_coordinates([4], [0.5]), [4, 0.5])
    assert rows_constant(np.ones((4, 16))) and not rows_constant(np.arange(8.0).reshape(4, 2))


def test_motion_lands_on_scene_frames_at_the_scene_rate():
    n = 26  # one second at 25 fps
    motion = Motion.neutral(n, 2, fps=25.0)
    motion.jaw_pose[:, 0] = np.linspace(0.0, 0.5, n)
    motion.expr[:, 1] = np.linspace(0.0, 1.0, n)
    frames, on_scene = motion_on_scene_frames(motion, 50.0, first_frame=10)
    assert frames[0] == 10 and len(frames) == 51 and on_scene.fps == 50.0
    np.testing.assert_allclose(on_scene.jaw_pose[::2, 0], motion.jaw_pose[:, 0], atol=1e-6)
    np.testing.assert_allclose(on_scene.expr[1::2, 1], (motion.expr[1:, 1] + motion.expr[:-1, 1]) / 2, atol=1e-6)
    same_frames, same = motion_on_scene_frames(motion, 25.0, first_frame=1)
    assert same is motion and same_frames[-1] == 26
    back = motion_from_samples(50.0, on_scene.expr, {"jaw_pose": on_scene.jaw_pose}, expr_names=["a", "b"])
    assert back.n_frames == 51 and back.expr_names == ["a", "b"] and np.all(back.eyes_pose == 0)

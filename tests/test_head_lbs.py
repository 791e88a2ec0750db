"""Linear blend skinning (compute_server/head/lbs.py) against hand-computed and reference results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from compute_server.head.lbs import batch_rigid_transform, batch_rodrigues, lbs, vertices_to_landmarks

PARENTS = torch.tensor([-1, 0, 1, 1, 1])


def _tiny_model(dtype=torch.float64, seed=0):
    """A 12-vertex, 5-joint model with random (valid) blend shapes and weights."""
    g = torch.Generator().manual_seed(seed)
    V = 12
    v_template = torch.rand(V, 3, generator=g, dtype=dtype) * 0.2 - 0.1
    weights = torch.rand(V, 5, generator=g, dtype=dtype) ** 3
    weights = weights / weights.sum(1, keepdim=True)
    J_regressor = torch.zeros(5, V, dtype=dtype)
    for j in range(5):
        J_regressor[j, 2 * j:2 * j + 3] = 1.0 / 3.0
    return dict(
        v_template=v_template,
        shapedirs=torch.randn(V, 3, 4, generator=g, dtype=dtype) * 1e-2,
        exprdirs=torch.randn(V, 3, 3, generator=g, dtype=dtype) * 1e-2,
        posedirs=torch.randn(36, V * 3, generator=g, dtype=dtype) * 1e-3,
        J_regressor=J_regressor, parents=PARENTS, lbs_weights=weights,
    )


def _reference_lbs(shape, expr, pose, translation, m):
    """Per-vertex, per-joint loop in numpy with scipy rotations: the slow reference."""
    m = {k: v.numpy().astype(np.int64 if k == "parents" else np.float64) for k, v in m.items()}
    v_shaped = m["v_template"] + m["shapedirs"] @ shape + m["exprdirs"] @ expr
    joints = m["J_regressor"] @ v_shaped
    rots = Rotation.from_rotvec(pose.reshape(5, 3)).as_matrix()
    feature = np.concatenate([(rots[j] - np.eye(3)).ravel() for j in range(1, 5)])
    v_posed = v_shaped + (feature @ m["posedirs"]).reshape(-1, 3)
    world = []
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[m["parents"][j]] if j else 0)
        world.append(local if j == 0 else world[int(m["parents"][j])] @ local)
    out = np.zeros_like(v_posed)
    for i, p in enumerate(v_posed):
        for j in range(5):
            rel = world[j].copy()
            rel[:3, 3] -= rel[:3, :3] @ joints[j]
            out[i] += m["lbs_weights"][i, j] * (rel[:3, :3] @ p + rel[:3, 3])
    return out + translation, np.array([w[:3, 3] for w in world]) + translation


def test_rodrigues_matches_scipy_and_is_exact_at_zero():
    aa = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [np.pi - 1e-3, 0, 0], [1e-9, 0, 0]])
    ours = batch_rodrigues(torch.tensor(aa)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(aa).as_matrix(), atol=1e-7)
    np.testing.assert_array_equal(ours[0], np.eye(3))


def test_rodrigues_gradient_is_finite_at_zero():
    aa = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    batch_rodrigues(aa)[:, 0, 1].sum().backward()
    assert torch.isfinite(aa.grad).all() and aa.grad.abs().sum() > 0


def test_lbs_matches_the_loop_reference():
    m = _tiny_model()
    rng = np.random.default_rng(1)
    shape, expr = rng.normal(size=4), rng.normal(size=3)
    pose, translation = rng.normal(scale=0.4, size=15), rng.normal(scale=0.1, size=3)
    verts, joints = lbs(torch.tensor(shape)[None], torch.tensor(expr)[None], torch.tensor(pose)[None],
                        translation=torch.tensor(translation)[None], **m)
    ref_verts, ref_joints = _reference_lbs(shape, expr, pose, translation, m)
    np.testing.assert_allclose(verts[0].numpy(), ref_verts, atol=1e-12)
    np.testing.assert_allclose(joints[0].numpy(), ref_joints, atol=1e-12)


def test_rest_pose_returns_the_blend_shaped_template():
    m = _tiny_model()
    shape = torch.randn(1, 4, dtype=torch.float64)
    verts, joints = lbs(shape, torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 15, dtype=torch.float64), **m)
    expected = m["v_template"] + torch.einsum("vck,k->vc", m["shapedirs"], shape[0])
    torch.testing.assert_close(verts[0], expected)
    torch.testing.assert_close(joints[0], m["J_regressor"] @ expected)


def test_global_rotation_turns_everything_rigidly_about_the_root_joint():
    m = _tiny_model()
    m["posedirs"] = torch.zeros_like(m["posedirs"])  # root rotation has no correctives anyway
    zeros = torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    pose = torch.zeros(1, 15, dtype=torch.float64)
    pose[0, :3] = torch.tensor([0.0, 0.7, 0.0])
    rest, _ = lbs(*zeros, torch.zeros_like(pose), **m)
    posed, _ = lbs(*zeros, pose, **m)
    root = (m["J_regressor"] @ m["v_template"])[0]
    R = torch.tensor(Rotation.from_rotvec([0, 0.7, 0]).as_matrix())
    torch.testing.assert_close(posed[0], (rest[0] - root) @ R.T + root)


def test_pose_correctives_come_from_non_root_joints_only():
    m = _tiny_model()
    zeros = torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    weights_root = torch.zeros_like(m["lbs_weights"])
    weights_root[:, 0] = 1.0
    m["lbs_weights"] = weights_root  # skinning is then the identity for non-root poses
    pose = torch.zeros(1, 15, dtype=torch.float64)
    pose[0, 6:9] = torch.tensor([0.4, 0.0, 0.0])  # jaw
    posed, _ = lbs(*zeros, pose, **m)
    feature = torch.zeros(36, dtype=torch.float64)
    feature[9:18] = (batch_rodrigues(pose[:, 6:9])[0] - torch.eye(3, dtype=torch.float64)).reshape(-1)
    torch.testing.assert_close(posed[0], m["v_template"] + (feature @ m["posedirs"]).reshape(-1, 3))


def test_translation_is_added_last_and_batches_are_independent():
    m = _tiny_model()
    g = torch.Generator().manual_seed(3)
    B = 4
    args = [torch.randn(B, 4, generator=g, dtype=torch.float64), torch.randn(B, 3, generator=g, dtype=torch.float64),
            torch.randn(B, 15, generator=g, dtype=torch.float64) * 0.3]
    translation = torch.randn(B, 3, generator=g, dtype=torch.float64)
    batched, _ = lbs(*args, translation=translation, **m)
    for b in range(B):
        single, _ = lbs(*[a[b:b + 1] for a in args], **m)
        torch.testing.assert_close(batched[b], single[0] + translation[b])


def test_float32_agrees_with_float64_and_gradients_reach_every_input():
    m64 = _tiny_model()
    m32 = {k: (v.float() if v.is_floating_point() else v) for k, v in m64.items()}
    inputs = [torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64),
              torch.randn(2, 15, dtype=torch.float64) * 0.3, torch.randn(2, 3, dtype=torch.float64) * 0.1]
    v64, _ = lbs(*inputs[:3], translation=inputs[3], **m64)
    v32, _ = lbs(*[x.float() for x in inputs[:3]], translation=inputs[3].float(), **m32)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, atol=2e-6, rtol=0)
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    verts, joints = lbs(*leaves[:3], translation=leaves[3], **m64)
    (verts.square().sum() + joints.sum()).backward()
    for leaf in leaves:
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_rigid_transform_follows_the_kinematic_chain():
    rot = batch_rodrigues(torch.tensor([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
                                       dtype=torch.float64))[None]
    joints = torch.tensor([[[0, 0, 0], [0, 1, 0], [0, 2, 0], [1, 1, 0], [-1, 1, 0]]], dtype=torch.float64)
    posed, _ = batch_rigid_transform(rot, joints, PARENTS)
    # joint 2 hangs off joint 1, which hangs off the root: two 0.5 rad turns about z
    c1, s1, c2, s2 = np.cos(0.5), np.sin(0.5), np.cos(1.0), np.sin(1.0)
    expected_j1 = np.array([-s1, c1, 0])
    np.testing.assert_allclose(posed[0, 1].numpy(), expected_j1, atol=1e-12)
    np.testing.assert_allclose(posed[0, 2].numpy(), expected_j1 + np.array([-s2, c2, 0]), atol=1e-12)


def test_landmarks_are_barycentric_combinations():
    verts = torch.tensor([[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    lmk = vertices_to_landmarks(verts, faces, torch.tensor([1, 0]), torch.tensor([[0.2, 0.3, 0.5], [1, 0, 0]]))
    torch.testing.assert_close(lmk[0], torch.tensor([[0, 0.3, 0.5], [0, 0, 0]], dtype=torch.float64))
    empty = vertices_to_landmarks(verts, faces, torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))
    assert empty.shape == (1, 0, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lbs_runs_on_cuda_and_matches_cpu():
    m = _tiny_model()
    inputs = [torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64),
              torch.randn(3, 15, dtype=torch.float64) * 0.3]
    cpu, _ = lbs(*inputs, **m)
    gpu, _ = lbs(*[x.cuda() for x in inputs], **{k: v.cuda() for k, v in m.items()})
    torch.testing.assert_close(gpu.cpu(), cpu)

"""Triangle-bound Gaussians: torch posing equals the numpy reference, frames are proper
rotations, and splats follow their triangles rigidly."""

import numpy as np
import torch

from compute_server.splats.binding import pose_splats, rotmat_to_quat, triangle_frames
from compute_server.splats.model import SplatModel
from shared import splat_format as sf
from shared.rotations import axis_angle_to_matrix, quat_to_matrix


def _mesh(rng):
    vertices = rng.normal(size=(40, 3))
    faces = np.stack([rng.choice(40, 3, replace=False) for _ in range(30)])
    return vertices, faces


def _local_splats(rng, n, n_faces, sh_degree=1):
    quats = rng.normal(size=(n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    return sf.LocalSplats(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)) - 2, quats, rng.normal(size=n),
                          rng.normal(size=(n, 3)), rng.normal(size=(n, (sh_degree + 1) ** 2 - 1, 3)),
                          rng.integers(0, n_faces, n))


def test_frames_are_right_handed_rotations_with_normal_as_z():
    rng = np.random.default_rng(0)
    vertices, faces = _mesh(rng)
    rot, cen, k = triangle_frames(torch.tensor(vertices)[None], torch.tensor(faces))
    rot = rot[0].numpy()
    assert np.allclose(rot.transpose(0, 2, 1) @ rot, np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rot), 1.0)
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    assert np.allclose(rot[:, :, 2], normal)
    assert np.allclose(cen[0].numpy(), tri.mean(1))
    assert np.all(k.numpy() > 0)


def test_torch_posing_matches_numpy_reference():
    rng = np.random.default_rng(1)
    vertices, faces = _mesh(rng)
    local = _local_splats(rng, 200, len(faces))
    ref = sf.pose_splats(local, vertices, faces)
    model = SplatModel.from_local_splats(local)
    posed = model.pose(torch.tensor(vertices, dtype=torch.float32)[None], torch.tensor(faces))
    assert np.allclose(posed.means[0].detach().numpy(), ref.means, atol=1e-4)
    assert np.allclose(posed.scales[0].detach().numpy(), ref.scales, rtol=1e-4)
    # quaternions up to sign
    q, qr = posed.quats[0].detach().numpy(), ref.quats
    assert np.allclose(np.abs(np.sum(q * qr, axis=1)), 1.0, atol=1e-4)


def test_splats_move_rigidly_with_their_triangle():
    rng = np.random.default_rng(2)
    vertices, faces = _mesh(rng)
    local = _local_splats(rng, 100, len(faces))
    rot = axis_angle_to_matrix(np.array([0.3, -1.1, 0.5]))
    moved = vertices @ rot.T * 2.0 + np.array([1.0, -2.0, 0.5])
    a = sf.pose_splats(local, vertices, faces)
    b = sf.pose_splats(local, moved, faces)
    assert np.allclose(b.means, (a.means @ rot.T) * 2.0 + np.array([1.0, -2.0, 0.5]), atol=1e-4)
    assert np.allclose(b.scales, a.scales * 2.0, rtol=1e-4)
    assert np.allclose(quat_to_matrix(b.quats), rot @ quat_to_matrix(a.quats), atol=1e-4)


def test_rotmat_to_quat_round_trip_including_half_turns():
    rng = np.random.default_rng(3)
    aa = rng.normal(size=(500, 3)) * 2
    aa[:3] = np.diag([np.pi, np.pi, np.pi])
    mats = axis_angle_to_matrix(aa)
    q = rotmat_to_quat(torch.tensor(mats)).numpy()
    assert np.allclose(quat_to_matrix(q), mats, atol=1e-9)


def test_gradients_reach_local_parameters_and_vertices():
    rng = np.random.default_rng(4)
    vertices, faces = _mesh(rng)
    local = _local_splats(rng, 50, len(faces))
    model = SplatModel.from_local_splats(local, requires_grad=True)
    verts = torch.tensor(vertices, dtype=torch.float32, requires_grad=True)
    posed = model.pose(verts[None], torch.tensor(faces))
    (posed.means.sum() + posed.quats[..., 1].sum() + posed.scales.sum()).backward()
    for name in ("means", "quats", "scales"):
        assert model.params[name].grad is not None and torch.isfinite(model.params[name].grad).all()
    assert verts.grad is not None and verts.grad.abs().sum() > 0


def test_local_splats_round_trip_and_validation():
    rng = np.random.default_rng(5)
    local = _local_splats(rng, 10, 5, sh_degree=3)
    back = SplatModel.from_local_splats(local).to_local_splats()
    for name in sf.SPLAT_FIELDS:
        assert np.allclose(getattr(back, name), getattr(local, name), atol=1e-6), name
    bad = local.arrays()
    bad["binding"] = bad["binding"][:-1]
    try:
        sf.LocalSplats.from_arrays(bad)
    except sf.SplatFormatError as exc:
        assert "binding" in str(exc)
    else:
        raise AssertionError("mismatched rows must be rejected")


def test_gradients_through_posing_are_bit_identical_run_to_run():
    """Same seed, same avatar: the mesh gradient must not depend on thread scheduling (advanced
    indexing's backward accumulates in a thread-dependent order on the CPU; index_select's
    does not)."""
    rng = np.random.default_rng(1)
    n_verts, n_faces, n = 3000, 5000, 200_000
    vertices = torch.tensor(rng.normal(size=(1, n_verts, 3)), dtype=torch.float32)
    faces = torch.tensor(np.stack([rng.choice(n_verts, 3, replace=False) for _ in range(n_faces)]))
    local = _local_splats(rng, n, n_faces)
    weights = torch.tensor(rng.normal(size=(n, 3)), dtype=torch.float32)

    def mesh_gradient():
        v = vertices.clone().requires_grad_(True)
        posed = pose_splats(torch.tensor(local.means_local, dtype=torch.float32), torch.tensor(local.quats_local, dtype=torch.float32),
                            torch.tensor(local.log_scales_local, dtype=torch.float32), torch.tensor(local.binding), v, faces)
        ((posed.means[0] * weights).sum() + posed.quats.sum() + posed.scales.sum()).backward()
        return v.grad

    threads = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        first = mesh_gradient()
        for _ in range(3):
            assert torch.equal(mesh_gradient(), first)
    finally:
        torch.set_num_threads(threads)

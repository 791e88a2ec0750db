"""Mesh rasterizer: coverage, depth, barycentrics, occlusion, clipping and normals with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from compute_server.render import (interpolate, normal_map_to_rgb, rasterize_mesh, render_normal_map,
                                   vertex_normals)
from compute_server.render.mesh_raster import raster_from_face_ids, visible_faces
from shared.camera import orbit_camera

F64 = torch.float64
HEAD_SCAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "heads" / "leeperrysmith" / "LeePerrySmith.glb"


def identity_camera(width=32, height=32, f=20.0, cx=None, cy=None, n_cams=1):
    """Camera at the origin looking down +z (world = OpenCV camera space)."""
    cx = width / 2 if cx is None else cx
    cy = height / 2 if cy is None else cy
    K = torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=F64)
    return torch.eye(4, dtype=F64).expand(n_cams, 4, 4).clone(), K.expand(n_cams, 3, 3).clone()


def pixel_rays(width, height, K):
    """(H, W, 3) camera-space ray directions through pixel centres with z = 1."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=F64) + 0.5, torch.arange(width, dtype=F64) + 0.5,
                            indexing="ij")
    return torch.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], torch.ones_like(xs)], -1)


def quad(corners):
    """Two counter-clockwise triangles (seen from the camera at the origin) from 4 corners."""
    return torch.tensor(corners, dtype=F64), torch.tensor([[0, 2, 1], [0, 3, 2]])


def test_square_facing_camera_has_exact_coverage_depth_and_barycentrics():
    verts, faces = quad([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.5, 0.5, 2.0], [-0.5, 0.5, 2.0]])
    viewmats, Ks = identity_camera()
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 32, 32)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[11:21, 11:21] = True  # projected square spans [11, 21]; centres 11.5 .. 20.5
    assert torch.equal(raster.mask[0] > 0, expected)
    assert torch.equal(raster.face_ids[0] >= 0, expected)
    # Pixel centres on the shared diagonal belong to both triangles; the lower id wins.
    diag = torch.arange(11, 21)
    assert (raster.face_ids[0, diag, diag] == 0).all()
    torch.testing.assert_close(raster.depth[0][expected], torch.full((100,), 2.0, dtype=F64))
    assert (raster.depth[0][~expected] == 0).all() and (raster.bary[0][~expected] == 0).all()
    assert (raster.face_ids[0][~expected] == -1).all()
    # Interpolated positions are the ray hits: barycentrics are right.
    hits = interpolate(raster, verts, faces)[0]
    rays = pixel_rays(32, 32, Ks[0]) * 2.0
    torch.testing.assert_close(hits[expected], rays[expected], atol=1e-12, rtol=0)
    torch.testing.assert_close(raster.bary.sum(-1)[0][expected], torch.ones(100, dtype=F64))


def test_perspective_correct_interpolation_on_a_tilted_plane():
    verts, faces = quad([[-1.0, -0.8, 1.0], [1.0, -0.8, 1.0], [1.5, 1.2, 4.0], [-1.5, 1.2, 4.0]])
    viewmats, Ks = identity_camera(40, 30, f=18.0, cx=20.3, cy=14.6)
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 40, 30)
    covered = raster.mask[0] > 0
    assert covered.sum() > 300
    hits = interpolate(raster, verts, faces)[0]  # camera-space positions
    rays = pixel_rays(40, 30, Ks[0])
    torch.testing.assert_close(hits[covered][:, :2] / hits[covered][:, 2:], rays[covered][:, :2], atol=1e-12, rtol=0)
    torch.testing.assert_close(hits[covered][:, 2], raster.depth[0][covered], atol=1e-12, rtol=0)
    # Depth really varies: screen-linear interpolation would be visibly wrong here.
    assert raster.depth[0][covered].max() - raster.depth[0][covered].min() > 2.0


@pytest.mark.parametrize("swap", [False, True])
def test_nearer_triangle_wins_whatever_the_order(swap):
    near_tri = [[-0.6, -0.6, 2.0], [0.6, -0.6, 2.0], [0.0, 0.6, 2.0]]
    far_tri = [[-0.9, -0.3, 3.0], [0.9, -0.3, 3.0], [0.0, 0.9, 3.0]]
    tris = [far_tri, near_tri] if swap else [near_tri, far_tri]
    verts = torch.tensor(tris, dtype=F64).reshape(6, 3)
    faces = torch.tensor([[0, 2, 1], [3, 5, 4]])
    viewmats, Ks = identity_camera()
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 32, 32)
    near_id = 1 if swap else 0
    ids = raster.face_ids[0]
    assert (ids == near_id).sum() > 20 and (ids == 1 - near_id).sum() > 5
    depth = raster.depth[0]
    torch.testing.assert_close(depth[ids == near_id], torch.full_like(depth[ids == near_id], 2.0))
    torch.testing.assert_close(depth[ids == 1 - near_id], torch.full_like(depth[ids == 1 - near_id], 3.0))


def test_watertight_grid_mesh_with_edges_through_pixel_centres():
    """A plane split into many triangles whose edges pass exactly through pixel centres."""
    n = 12
    xs = torch.linspace(-0.6, 0.6, n + 1, dtype=F64)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    verts = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full(((n + 1) ** 2,), 2.0, dtype=F64)], -1)
    idx = torch.arange((n + 1) ** 2).view(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    faces = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    viewmats, Ks = identity_camera(40, 40, f=20.0, cx=20.5, cy=20.5)  # vertex columns land on centres
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 40, 40)
    expected = torch.zeros(40, 40, dtype=torch.bool)
    expected[14:27, 14:27] = True  # square spans [14.5, 26.5]: centres on its border are inside
    assert torch.equal(raster.mask[0] > 0, expected)


def test_sphere_coverage_depth_and_normal_map_match_geometry():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    verts, faces = torch.tensor(sphere.vertices, dtype=F64), torch.tensor(sphere.faces)
    cam = orbit_camera(30, 15, 2.5, width=64, height=48, fov_y_deg=30)
    viewmats = torch.tensor(cam.world_to_camera, dtype=F64)[None]
    Ks = torch.tensor(cam.K, dtype=F64)[None]
    normals, mask = render_normal_map(verts, faces, viewmats, Ks, 64, 48, space="camera")
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 64, 48)
    # Analytic sphere: ray-sphere intersection in camera space.
    rays = pixel_rays(64, 48, Ks[0])
    centre = viewmats[0, :3, 3]
    dirs = rays / rays.norm(dim=-1, keepdim=True)
    along = (dirs * centre).sum(-1)
    miss2 = (centre * centre).sum() - along**2
    hit = miss2 < 0.25
    t = along - torch.sqrt((0.25 - miss2).clamp_min(0))
    points = dirs * t[..., None]
    true_normals = (points - centre) / 0.5
    # The inscribed mesh is slightly smaller: only pixels at the silhouette may differ.
    edge = (miss2 - 0.25).abs() < 0.25 * 0.06
    assert ((mask[0] > 0) != hit)[~edge].sum() == 0
    inner = hit & (mask[0] > 0) & ~edge
    depth_err = (raster.depth[0][inner] - points[inner][:, 2]).abs()
    assert depth_err.max() < 0.5 * 0.005  # faceting of a 5120-face icosphere
    angle = torch.rad2deg(torch.acos((normals[0][inner] * true_normals[inner]).sum(-1).clamp(-1, 1)))
    assert angle.mean() < 0.5 and angle.max() < 2.0
    torch.testing.assert_close(normals[0][inner].norm(dim=-1), torch.ones(int(inner.sum()), dtype=F64))
    assert (normals[0][mask[0] == 0] == 0).all()
    # World-space map: rotating back gives the same normals.
    world, _ = render_normal_map(verts, faces, viewmats, Ks, 64, 48, space="world")
    torch.testing.assert_close(world[0] @ viewmats[0, :3, :3].T, normals[0], atol=1e-12, rtol=0)


def test_cube_front_face_depth_and_backface_culling():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    verts = torch.tensor(box.vertices, dtype=F64) + torch.tensor([0.0, 0.0, 3.0], dtype=F64)
    faces = torch.tensor(box.faces)
    viewmats, Ks = identity_camera(32, 32, f=20.0, cx=16.2, cy=15.9)
    culled = rasterize_mesh(verts, faces, viewmats, Ks, 32, 32, cull_backfaces=True)
    plain = rasterize_mesh(verts, faces, viewmats, Ks, 32, 32)
    assert torch.equal(culled.face_ids, plain.face_ids)  # a closed mesh hides its back faces anyway
    covered = plain.mask[0] > 0
    rays = pixel_rays(32, 32, Ks[0])
    expected = (rays[..., 0].abs() * 2.5 <= 0.5) & (rays[..., 1].abs() * 2.5 <= 0.5)
    assert torch.equal(covered, expected)
    torch.testing.assert_close(plain.depth[0][covered], torch.full((int(covered.sum()),), 2.5, dtype=F64))
    # Seen from inside (camera in the box) every face is a back face.
    inside = rasterize_mesh(verts - torch.tensor([0.0, 0.0, 3.0], dtype=F64), faces, viewmats, Ks, 32, 32,
                            cull_backfaces=True, near=0.01)
    assert inside.mask.sum() == 0


def test_triangles_crossing_the_near_plane_are_clipped_not_dropped():
    # A floor below the camera (OpenCV +y is down) from behind the camera to z = 9.7.
    verts, faces = quad([[-5.0, 0.5, -5.0], [-5.0, 0.5, 9.7], [5.0, 0.5, 9.7], [5.0, 0.5, -5.0]])
    viewmats, Ks = identity_camera(32, 32, f=20.0, cx=16.1, cy=16.0)
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 32, 32, near=0.1)
    rays = pixel_rays(32, 32, Ks[0])
    z_hit = 0.5 / rays[..., 1]
    expected = (rays[..., 1] > 0) & (z_hit <= 9.7) & ((rays[..., 0] * z_hit).abs() <= 5.0)
    assert expected.sum() > 100
    assert torch.equal(raster.mask[0] > 0, expected)
    torch.testing.assert_close(raster.depth[0][expected], z_hit[expected], atol=1e-9, rtol=1e-9)
    # Raising the near plane past part of the floor cuts exactly that part away.
    clipped = rasterize_mesh(verts, faces, viewmats, Ks, 32, 32, near=3.0)
    assert torch.equal(clipped.mask[0] > 0, expected & (z_hit >= 3.0))
    # Entirely behind the camera: nothing.
    behind = rasterize_mesh(verts - torch.tensor([0.0, 0.0, 20.0], dtype=F64), faces, viewmats, Ks, 32, 32)
    assert behind.mask.sum() == 0 and (behind.face_ids == -1).all()


def test_batch_of_cameras_and_poses_equals_single_renders():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    base = torch.tensor(sphere.vertices, dtype=F64)
    faces = torch.tensor(sphere.faces)
    cams = [orbit_camera(a, e, 2.0, width=40, height=30, fov_y_deg=35) for a, e in ((0, 0), (70, 20), (-120, -10))]
    viewmats = torch.tensor(np.stack([c.world_to_camera for c in cams]), dtype=F64)
    Ks = torch.tensor(np.stack([c.K for c in cams]), dtype=F64)
    poses = torch.stack([base, base * torch.tensor([1.3, 1.0, 0.8], dtype=F64), base + 0.1])
    batch = rasterize_mesh(poses, faces, viewmats, Ks, 40, 30)
    for i in range(3):
        single = rasterize_mesh(poses[i], faces, viewmats[i:i + 1], Ks[i:i + 1], 40, 30)
        assert torch.equal(batch.face_ids[i], single.face_ids[0])
        torch.testing.assert_close(batch.depth[i], single.depth[0])
        torch.testing.assert_close(batch.bary[i], single.bary[0])
    assert not torch.equal(batch.face_ids[0], batch.face_ids[1])


def test_sub_pixel_triangles_stay_watertight():
    """A 20k-face sphere at 24 x 24 px: most triangles miss every pixel centre, yet no holes."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    verts, faces = torch.tensor(sphere.vertices, dtype=F64), torch.tensor(sphere.faces)
    viewmats, Ks = identity_camera(24, 24, f=20.0, cx=12.3, cy=11.8)
    raster = rasterize_mesh(verts + torch.tensor([0.0, 0.0, 2.0], dtype=F64), faces, viewmats, Ks, 24, 24)
    rays = pixel_rays(24, 24, Ks[0])
    dirs = rays / rays.norm(dim=-1, keepdim=True)
    miss2 = 4.0 - (dirs[..., 2] * 2.0) ** 2  # squared distance of the ray from the centre (0, 0, 2)
    inside, outside = miss2 < 0.25 * 0.995, miss2 > 0.25
    assert (raster.mask[0][inside] == 1).all() and (raster.mask[0][outside] == 0).all()
    assert len(torch.unique(raster.face_ids)) < len(faces) / 10  # most triangles cover no pixel centre


def test_huge_triangle_at_1080p_under_a_small_budget():
    """One triangle far larger than the image, more pixels than the budget allows per chunk."""
    verts = torch.tensor([[-50.0, -50.0, 5.0], [50.0, -50.0, 5.0], [0.0, 80.0, 5.0]], dtype=F64)
    faces = torch.tensor([[0, 2, 1]])
    viewmats, Ks = identity_camera(1920, 1080, f=1000.0)
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 1920, 1080, max_memory_bytes=1 << 20)
    assert bool((raster.face_ids == 0).all())
    torch.testing.assert_close(raster.depth, torch.full_like(raster.depth, 5.0))


def test_small_memory_budget_gives_identical_visibility():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    verts, faces = torch.tensor(sphere.vertices, dtype=F64), torch.tensor(sphere.faces)
    cam = orbit_camera(10, 5, 2.0, width=48, height=48, fov_y_deg=40)
    viewmats = torch.tensor(cam.world_to_camera, dtype=F64)[None]
    Ks = torch.tensor(cam.K, dtype=F64)[None]
    full = visible_faces(verts[None], faces, viewmats, Ks, 48, 48)
    tiny = visible_faces(verts[None], faces, viewmats, Ks, 48, 48, max_memory_bytes=5_000)
    assert torch.equal(full, tiny) and (full >= 0).sum() > 500


def test_gradients_flow_to_attributes_and_vertex_positions():
    verts, faces = quad([[-1.0, -0.8, 1.0], [1.0, -0.8, 1.0], [1.5, 1.2, 4.0], [-1.5, 1.2, 4.0]])
    viewmats, Ks = identity_camera(10, 8, f=5.0)
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 10, 8)
    attrs = torch.rand(4, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(raster, a, faces), (attrs,))
    face_ids = raster.face_ids  # visibility fixed; barycentrics and depth move with the vertices
    verts_var = verts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: (lambda r: (r.depth, r.bary))(raster_from_face_ids(v[None], faces, viewmats, Ks, face_ids)),
        (verts_var,))


def test_vertex_normals_are_area_weighted_and_unit():
    # A "tent": vertex 0 shared by a big face tilted one way and a small face tilted the other.
    verts = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 1.0], [2.0, 2.0, 1.0], [-0.5, 0.0, 0.5], [-0.5, 0.5, 0.5]],
                         dtype=F64)
    faces = torch.tensor([[0, 1, 2], [0, 4, 3]])
    n = vertex_normals(verts, faces)
    big = torch.cross(verts[1] - verts[0], verts[2] - verts[0], dim=0)
    small = torch.cross(verts[4] - verts[0], verts[3] - verts[0], dim=0)
    torch.testing.assert_close(n[0], (big + small) / (big + small).norm())
    sphere = trimesh.creation.icosphere(subdivisions=3)
    sv = torch.tensor(sphere.vertices, dtype=F64)
    radial = vertex_normals(sv[None].expand(2, -1, -1), torch.tensor(sphere.faces))
    assert radial.shape == (2, len(sv), 3)
    assert ((radial[0] * sv / sv.norm(dim=-1, keepdim=True)).sum(-1) > 0.9999).all()


def test_normal_map_to_rgb_conventions():
    normals = torch.tensor([[[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]]], dtype=F64)  # OpenCV
    mask = torch.tensor([[[1.0, 1.0, 0.0]]], dtype=F64)
    rgb = normal_map_to_rgb(normals, mask)  # OpenGL: +y up, +z towards the viewer
    torch.testing.assert_close(rgb[0, 0, 0], torch.tensor([0.5, 0.5, 1.0], dtype=F64))  # faces the camera
    torch.testing.assert_close(rgb[0, 0, 1], torch.tensor([1.0, 0.5, 0.5], dtype=F64))  # faces image right
    torch.testing.assert_close(rgb[0, 0, 2], torch.zeros(3, dtype=F64))  # background
    up = normal_map_to_rgb(normals, torch.ones(1, 1, 3, dtype=F64), background=(1.0, 1.0, 1.0))
    torch.testing.assert_close(up[0, 0, 2], torch.tensor([0.5, 1.0, 0.5], dtype=F64))  # faces image up: green
    cv = normal_map_to_rgb(normals, mask, convention="opencv", background=(1.0, 1.0, 1.0))
    torch.testing.assert_close(cv[0, 0, 0], torch.tensor([0.5, 0.5, 0.0], dtype=F64))
    torch.testing.assert_close(cv[0, 0, 2], torch.ones(3, dtype=F64))
    with pytest.raises(ValueError):
        normal_map_to_rgb(normals, mask, convention="directx")


def test_invalid_inputs_are_rejected():
    verts, faces = quad([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.5, 0.5, 2.0], [-0.5, 0.5, 2.0]])
    viewmats, Ks = identity_camera()
    with pytest.raises(ValueError, match="faces"):
        rasterize_mesh(verts, faces.double(), viewmats, Ks, 32, 32)
    with pytest.raises(ValueError, match="outside"):
        rasterize_mesh(verts, faces + 2, viewmats, Ks, 32, 32)
    with pytest.raises(ValueError, match="Ks"):
        rasterize_mesh(verts, faces, viewmats, Ks[0], 32, 32)
    with pytest.raises(ValueError, match="backend"):
        rasterize_mesh(verts, faces, viewmats, Ks, 32, 32, backend="opengl")
    with pytest.raises(ValueError, match="CUDA"):
        rasterize_mesh(verts, faces, viewmats, Ks, 32, 32, backend="nvdiffrast")


def brute_force_nearest_hits(triangles: np.ndarray, origin: np.ndarray, dirs: np.ndarray):
    """Independent reference: every ray against every triangle in numpy, nearest hit distance.

    triangles (T, 3, 3), origin (3,), dirs (R, 3). Returns (R,) distance along dirs (inf = miss).
    """
    v0, e1, e2 = triangles[:, 0], triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    best = np.full(len(dirs), np.inf)
    for start in range(0, len(dirs), 32):
        d = dirs[start:start + 32, None, :]  # (r, 1, 3)
        p = np.cross(d, e2[None])
        det = np.einsum("tk,rtk->rt", e1, p)
        s = origin - v0  # (T, 3)
        q = np.cross(s, e1)  # (T, 3), independent of the ray
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.einsum("tk,rtk->rt", s, p) / det
            v = np.einsum("rk,tk->rt", d[:, 0], q) / det
            t = np.einsum("tk,tk->t", e2, q)[None] / det
        ok = (np.abs(det) > 1e-15) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        best[start:start + 32] = np.where(ok, t, np.inf).min(axis=1)
    return best


@pytest.mark.skipif(not HEAD_SCAN.exists(), reason="shared head scan not available")
def test_real_head_scan_matches_brute_force_ray_casting():
    mesh = trimesh.load(HEAD_SCAN, force="mesh")
    verts = torch.tensor(np.asarray(mesh.vertices), dtype=F64)
    faces = torch.tensor(np.asarray(mesh.faces))
    assert len(faces) > 15_000  # the real 17.7k-triangle scan
    cam = orbit_camera(25, 10, 30.0, target=verts.mean(0).numpy(), width=96, height=96, fov_y_deg=25, near=0.1)
    viewmats = torch.tensor(cam.world_to_camera, dtype=F64)[None]
    Ks = torch.tensor(cam.K, dtype=F64)[None]
    raster = rasterize_mesh(verts, faces, viewmats, Ks, 96, 96)
    assert 0.15 < raster.mask.mean() < 0.9
    # Every 4th pixel's ray (z = 1 in camera space, so hit distance = depth) against all triangles.
    rays_cam = pixel_rays(96, 96, Ks[0])[::4, ::4].reshape(-1, 3).numpy()
    rot = cam.world_to_camera[:3, :3]
    depth_ref = brute_force_nearest_hits(np.asarray(mesh.triangles), cam.position, rays_cam @ rot)
    hit_ref = np.isfinite(depth_ref)
    ours_mask = (raster.mask[0, ::4, ::4].reshape(-1) > 0).numpy()
    ours_depth = raster.depth[0, ::4, ::4].reshape(-1).numpy()
    assert hit_ref.sum() > 60
    assert (ours_mask == hit_ref).mean() > 0.99
    both = ours_mask & hit_ref
    assert (np.abs(ours_depth[both] - depth_ref[both]) < 1e-6 * 30).mean() > 0.99

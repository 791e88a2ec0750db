"""The camera mapping of the ground-truth benchmark (bench/quality_cameras.py), on
synthetic cameras and similarities: pure math, exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality_cameras import (Similarity, above_plane_mask, camera_points_from_depth,
                                   camera_through_similarity, distance_ratio_scale, held_out_views,
                                   plane_in_camera, relative_avatar_camera, similarity_from_input_cameras,
                                   transform_plane, yaw_bucket)
from shared.camera import Camera, look_at, orbit_camera
from shared.rotations import axis_angle_to_matrix


def random_similarity(rng, scale=0.047) -> Similarity:
    axis = rng.normal(size=3)
    rot = axis_angle_to_matrix(axis / np.linalg.norm(axis) * rng.uniform(0.1, 2.5))
    return Similarity(scale, rot, rng.normal(size=3) * 0.2)


def scan_points(rng, n=200) -> np.ndarray:
    return rng.normal(size=(n, 3)) * np.array([1.8, 2.5, 2.0]) + np.array([0.0, 1.3, 0.3])


def test_similarity_inverse_composition_and_matrix():
    rng = np.random.default_rng(0)
    a, b = random_similarity(rng, 0.05), random_similarity(rng, 3.0)
    x = scan_points(rng)
    np.testing.assert_allclose(a.inverse().apply(a.apply(x)), x, atol=1e-12)
    np.testing.assert_allclose(a.then(b).apply(x), b.apply(a.apply(x)), atol=1e-12)
    homogeneous = np.c_[x, np.ones(len(x))] @ a.matrix.T
    np.testing.assert_allclose(homogeneous[:, :3], a.apply(x), atol=1e-12)
    with pytest.raises(ValueError):
        Similarity(1.0, np.diag([1.0, 1.0, -1.0]), np.zeros(3))  # a reflection is not a rotation
    with pytest.raises(ValueError):
        Similarity(0.0, np.eye(3), np.zeros(3))


def test_camera_through_similarity_sees_the_same_pixels():
    rng = np.random.default_rng(1)
    transform = random_similarity(rng)
    x = scan_points(rng)
    for yaw, pitch in ((0, 0), (60, -20), (-90, 20)):
        scan_cam = orbit_camera(yaw, pitch, 16.0, target=(0.0, 1.3, 0.3), width=320, height=240, fov_y_deg=25,
                                near=0.5, far=200.0)
        avatar_cam = camera_through_similarity(scan_cam, transform)
        seen_scan = scan_cam.project(x)
        seen_avatar = avatar_cam.project(transform.apply(x))
        np.testing.assert_allclose(seen_avatar[:, :2], seen_scan[:, :2], atol=1e-8)
        np.testing.assert_allclose(seen_avatar[:, 2], transform.scale * seen_scan[:, 2], rtol=1e-10)
        rot = avatar_cam.world_to_camera[:3, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)  # still a rigid camera
        assert avatar_cam.near == pytest.approx(scan_cam.near * transform.scale)


def test_input_cameras_determine_the_similarity():
    """If A0 is C0 seen through T, the similarity recovered from (C0, A0, s) is T."""
    rng = np.random.default_rng(2)
    transform = random_similarity(rng)
    c0 = orbit_camera(0, 0, 16.0, target=(0.0, 1.3, 0.3), fov_y_deg=25, near=0.5, far=200)
    a0 = camera_through_similarity(c0, transform)
    recovered = similarity_from_input_cameras(c0, a0, transform.scale)
    np.testing.assert_allclose(recovered.rotation, transform.rotation, atol=1e-10)
    np.testing.assert_allclose(recovered.translation, transform.translation, atol=1e-10)
    x = scan_points(rng)
    np.testing.assert_allclose(a0.world_to_camera[:3, :3] @ recovered.apply(x).T + a0.world_to_camera[:3, 3:4],
                               transform.scale * (c0.world_to_camera[:3, :3] @ x.T + c0.world_to_camera[:3, 3:4]),
                               atol=1e-10)


def test_relative_mapping_reproduces_the_known_relative_pose_exactly():
    rng = np.random.default_rng(3)
    transform = random_similarity(rng)
    c0 = orbit_camera(0, 0, 16.0, target=(0.0, 1.3, 0.3), fov_y_deg=25, near=0.5, far=200)
    # the fitted input camera: the true one through T but with its own (different) intrinsics
    a0_true = camera_through_similarity(c0, transform)
    a0 = Camera(a0_true.world_to_camera, 700.0, 700.0, 250.0, 260.0, 512, 512)
    for yaw, pitch in ((0, 0), (15, 0), (-45, 20), (90, -20)):
        ck = orbit_camera(yaw, pitch, 16.0, target=(0.0, 1.3, 0.3), fov_y_deg=25, near=0.5, far=200)
        ak = relative_avatar_camera(ck, c0, a0, transform.scale)
        # same relative motion: Ak A0^-1 == Ck C0^-1 with the translation scaled
        rel_avatar = ak.world_to_camera @ np.linalg.inv(a0.world_to_camera)
        rel_scan = ck.world_to_camera @ np.linalg.inv(c0.world_to_camera)
        np.testing.assert_allclose(rel_avatar[:3, :3], rel_scan[:3, :3], atol=1e-12)
        np.testing.assert_allclose(rel_avatar[:3, 3], transform.scale * rel_scan[:3, 3], atol=1e-12)
        # and it is the camera through the similarity, with A0's intrinsics
        through = camera_through_similarity(ck, similarity_from_input_cameras(c0, a0, transform.scale), a0)
        np.testing.assert_allclose(ak.world_to_camera, through.world_to_camera, atol=1e-10)
        assert (ak.fx, ak.cx, ak.cy, ak.width) == (700.0, 250.0, 260.0, 512)
    np.testing.assert_allclose(relative_avatar_camera(c0, c0, a0, 0.05).world_to_camera, a0.world_to_camera,
                               atol=1e-12)


def test_distance_ratio_scale():
    c0 = Camera(look_at((0, 0, 10.0), (0, 0, 0)), 500, 500, 256, 256, 512, 512)
    a0 = Camera(look_at((0.1, 0, 0.5), (0.1, 0, 0)), 500, 500, 256, 256, 512, 512)
    assert distance_ratio_scale(c0, np.array([0, 0, 2.0]), a0, np.array([0.1, 0, 0.1])) == pytest.approx(0.4 / 8.0)


def test_held_out_views_and_yaw_buckets():
    views = held_out_views(np.array([0.0, 1.0, 0.0]), 10.0, size=64)
    assert len(views) == 39 and (views[0].yaw_deg, views[0].pitch_deg) == (0.0, 0.0)
    for view in views:
        assert np.linalg.norm(view.camera.position - [0.0, 1.0, 0.0]) == pytest.approx(10.0)
        # the head centre projects to the image centre
        np.testing.assert_allclose(view.camera.project(np.array([[0.0, 1.0, 0.0]]))[0, :2], [32.0, 32.0], atol=1e-9)
    side = next(v for v in views if v.yaw_deg == 90 and v.pitch_deg == 0)
    assert side.camera.position[0] == pytest.approx(10.0)  # + yaw: towards the subject's left (+X)
    assert [yaw_bucket(y) for y in (0, 15, -30, 45, -60, 75, 90)] == ["0", "15-30", "15-30", "45-60", "45-60",
                                                                       "75-90", "75-90"]
    for bad in (7.5, 37, 100):
        with pytest.raises(ValueError):
            yaw_bucket(bad)


def test_planes_follow_similarities_and_cameras():
    rng = np.random.default_rng(4)
    transform = random_similarity(rng, 0.05)
    normal, offset = np.array([0.0, 1.0, 0.0]), -1.27
    x = scan_points(rng, 500)
    above = x @ normal >= offset
    n2, d2 = transform_plane(normal, offset, transform)
    assert np.array_equal(transform.apply(x) @ n2 >= d2, above)
    cam = orbit_camera(30, 10, 0.8, width=64, height=64)
    n3, d3 = plane_in_camera(n2, d2, cam.world_to_camera)
    y = transform.apply(x)
    y_cam = y @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
    assert np.array_equal(y_cam @ n3 >= d3, above)


def test_depth_back_projection_and_above_plane_mask():
    cam = Camera(look_at((0.0, 0.0, 2.0), (0.0, 0.0, 0.0)), 100.0, 100.0, 32.0, 32.0, 64, 64)
    depth = np.full((64, 64), 2.0)
    depth[:, :5] = 0.0  # nothing rendered there
    points = camera_points_from_depth(depth, cam)
    assert points.shape == (64, 64, 3)
    np.testing.assert_allclose(points[40, 20], [(20.5 - 32) / 100 * 2, (40.5 - 32) / 100 * 2, 2.0])
    # the world plane y >= 0 (up): image rows above the centre (camera +Y is down)
    mask = above_plane_mask(depth, cam, np.array([0.0, 1.0, 0.0]), 0.0)
    assert mask[:32, 5:].all() and not mask[32:].any() and not mask[:, :5].any()
    assert math.isclose(mask.mean(), 32 * 59 / 64 ** 2)

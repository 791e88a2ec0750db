"""Scan geometry and alignment of the ground-truth benchmark (bench/quality_align.py):
Umeyama, trimmed ICP, and the neck cut on synthetic shapes and on the real scan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.quality_align import (align_icp, initial_alignment, neck_cut_height, scan_geometry, surface_samples,
                                 umeyama)
from bench.quality_cameras import Similarity
from shared.rotations import axis_angle_to_matrix

SCAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "heads" / "leeperrysmith" / "LeePerrySmith.glb"


def bumpy_head(subdivisions: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid mesh with a nose-like bump (no symmetry ICP could slide along), metres."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    d = np.asarray(sphere.vertices)
    p = d * np.array([0.08, 0.11, 0.1])
    p[:, 2] += 0.03 * np.exp(-((d[:, 0] - 0.3) ** 2 + (d[:, 1] + 0.2) ** 2) / 0.05) * (d[:, 2] > 0)
    return p, np.asarray(sphere.faces)


def test_umeyama_recovers_an_exact_similarity_with_weights():
    rng = np.random.default_rng(0)
    truth = Similarity(21.5, axis_angle_to_matrix(np.array([0.3, -1.2, 0.5])), np.array([0.4, 1.3, -0.2]))
    source = rng.normal(size=(100, 3))
    target = truth.apply(source)
    weights = rng.random(100)
    target_bad = target.copy()
    target_bad[:10] += 5.0
    weights[:10] = 0.0  # the corrupted pairs do not count
    for tgt, w in ((target, None), (target_bad, weights)):
        est = umeyama(source, tgt, w)
        assert est.scale == pytest.approx(truth.scale, rel=1e-10)
        np.testing.assert_allclose(est.rotation, truth.rotation, atol=1e-10)
        np.testing.assert_allclose(est.translation, truth.translation, atol=1e-9)


def test_initial_alignment_and_trimmed_icp_recover_the_similarity_despite_extra_geometry():
    rng = np.random.default_rng(1)
    vertices, faces = bumpy_head()
    neck = np.c_[rng.normal(scale=0.03, size=(300, 2)), np.zeros(300)][:, [0, 2, 1]] \
        + np.array([0.0, -0.15, 0.0])  # avatar-only geometry the scan does not have
    avatar = np.vstack([vertices, neck])
    truth = Similarity(22.0, axis_angle_to_matrix(np.array([0.05, 0.1, -0.04])), np.array([0.1, 1.3, 0.3]))
    scan, normals = surface_samples(truth.apply(vertices), faces, 60_000)
    nose = vertices[np.argmax(vertices[:, 2])]
    # a start from a wrong landmark and a rotation a few degrees off, as from two fitted cameras
    start = initial_alignment(vertices, scan, axis_angle_to_matrix(np.array([0.0, 0.05, 0.0])),
                              nose, truth.apply(nose[None])[0] + np.array([0.1, -0.1, 0.0]))
    assert start.scale == pytest.approx(truth.scale, rel=0.05)
    result = align_icp(avatar, scan, normals, start, keep_fraction=0.8)
    err = np.linalg.norm(result.avatar_to_scan.apply(vertices) - truth.apply(vertices), axis=1)
    head_size = 0.22 * truth.scale
    assert np.median(err) < 0.002 * head_size
    assert result.avatar_to_scan.scale == pytest.approx(truth.scale, rel=0.003)
    assert result.rms_scan_units < 0.002 * head_size and result.iterations < 60


def test_neck_cut_on_a_synthetic_bust():
    """A sphere (head) on a thin cylinder (neck) on a wide box (shoulders)."""
    rng = np.random.default_rng(2)
    d = rng.normal(size=(4000, 3))
    head = d / np.linalg.norm(d, axis=1, keepdims=True) + np.array([0, 2.0, 0])
    t = rng.uniform(0, 2 * np.pi, 2000)
    neck = np.c_[0.4 * np.cos(t), rng.uniform(-0.4, 1.2, 2000), 0.4 * np.sin(t)]
    shoulders = np.c_[rng.uniform(-2, 2, 4000), rng.uniform(-2.0, -0.4, 4000), rng.uniform(-0.6, 0.6, 4000)]
    cut = neck_cut_height(np.vstack([head, neck, shoulders]))
    assert -0.45 <= cut <= -0.3  # the top of the shoulders (slices are 2% of 5 units)
    with pytest.raises(ValueError):
        neck_cut_height(head)  # a ball has no neck


def test_surface_samples_lie_on_the_triangles():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 3.0]])
    faces = np.array([[0, 1, 2], [0, 1, 3]])
    samples, normals = surface_samples(vertices, faces, 3000, seed=3)
    on_first = np.abs(samples[:, 2]) < 1e-12
    on_second = np.abs(samples[:, 1]) < 1e-12
    np.testing.assert_allclose(np.abs(normals[on_first]), np.broadcast_to([0.0, 0.0, 1.0], (on_first.sum(), 3)),
                               atol=1e-12)
    assert np.all(on_first | on_second)
    assert 0.15 < on_first.mean() < 0.35  # areas 0.5 and 1.5


@pytest.mark.skipif(not SCAN.exists(), reason="the shared head scan is not in this checkout's ../shared/data")
def test_real_scan_is_cut_between_chin_and_shoulders():
    geometry = scan_geometry(SCAN)
    head = geometry.head_vertices
    assert -1.6 < geometry.neck_cut_y < -0.9          # below the chin (~-0.8), above the shoulders (~-1.7)
    assert head[:, 0].ptp() < 4.5                      # the shoulders (8.5 wide) are gone
    assert geometry.nose_tip[2] == pytest.approx(2.59, abs=0.01)
    assert len(geometry.head_faces) > 0.8 * len(geometry.faces)

"""Mesh helpers behind the head models: topology, quality checks, smooth fields, teeth."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from compute_server.head import mesh_checks as mc
from compute_server.head import mesh_fields
from compute_server.head import mesh_topology as mt
from compute_server.head.teeth import build_teeth
from tools.head_builder.closure import triangulate_outside
from tools.head_builder.symmetry import align_symmetry_plane, mirror_pairs, symmetrize


def _grid(n=5):
    """A flat n x n vertex grid in the xy plane, triangles counter-clockwise seen from +z."""
    xs, ys = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1)
    f = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
            f += [[a, b, c], [a, c, d]]
    return v, np.array(f)


def test_boundary_loop_of_a_grid_runs_counter_clockwise():
    v, f = _grid()
    loops = mt.boundary_loops(f)
    assert len(loops) == 1 and len(loops[0]) == 16
    p = v[loops[0], :2]
    signed_area = 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    assert signed_area == pytest.approx(1.0)
    assert mt.euler_characteristic(f) == 1


def test_orientation_is_repaired_and_closed_surfaces_have_positive_volume():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    scrambled = f.copy()
    scrambled[::3] = scrambled[::3, ::-1]
    assert not mt.is_consistently_oriented(scrambled)
    fixed = mt.orient_consistently(scrambled)
    assert mt.is_consistently_oriented(fixed) and mt.boundary_loops(fixed) == []
    assert abs(mt.signed_volume(v, fixed)) == pytest.approx(abs(mt.signed_volume(v, f)))
    assert mt.signed_volume(v, f) > 0  # trimesh's icosphere is outward
    normals = mt.vertex_normals(v, f)
    assert np.einsum("ij,ij->i", normals, v).min() > 0.9


def test_self_intersections_find_crossing_triangles_only():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0],              # triangle in z = 0
                  [0.2, 0.2, -0.5], [0.3, 0.2, 0.5], [0.2, 0.3, 0.5],  # pierces it
                  [2, 2, 0], [3, 2, 0], [2, 3, 1]], dtype=float)  # far away
    f = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    assert mc.self_intersections(v, f).tolist() == [[0, 1]]
    assert len(mc.self_intersections(v, f[[0, 2]])) == 0
    grid_v, grid_f = _grid(8)
    assert len(mc.self_intersections(grid_v, grid_f)) == 0


def test_flipped_faces_notice_a_fold():
    v, f = _grid(3)
    folded = v.copy()
    folded[4] = [0.5, 0.5, 0.0] + np.array([0.9, 0.9, 0.0])  # centre vertex dragged past the corner
    assert len(mc.flipped_faces(v, v, f)) == 0
    assert len(mc.flipped_faces(v, folded, f)) > 0


def test_harmonic_interpolation_reproduces_linear_fields_and_respects_constraints():
    v, f = _grid(9)
    boundary = mt.boundary_loops(f)[0]
    values = 2.0 * v[boundary, 0] - v[boundary, 1]
    for order in (1, 2):
        field = mesh_fields.harmonic(v, f, boundary, values, order=order)
        np.testing.assert_allclose(field[boundary], values)
        if order == 1:  # cotangent harmonic functions reproduce linear ones on a flat mesh
            np.testing.assert_allclose(field, 2.0 * v[:, 0] - v[:, 1], atol=1e-9)
    weights = mesh_fields.harmonic(v, f, boundary, np.eye(2)[(v[boundary, 0] > 0.5).astype(int)])
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-9)
    assert weights.min() >= -1e-12 and weights.max() <= 1 + 1e-12  # maximum principle


def test_spherical_triangulation_leaves_exactly_the_outline_open():
    angle = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    outline = np.stack([0.6 * np.cos(angle), 0.6 * np.sin(angle), np.full_like(angle, 0.8)], 1)
    samples, faces = triangulate_outside(outline, 600, 0.5)
    loops = mt.boundary_loops(faces)
    assert len(loops) == 1 and set(loops[0].tolist()) == set(range(24))
    dirs = np.concatenate([outline, samples])
    assert (samples[:, 2] < 0.8).all()  # nothing sampled inside the outline's cap
    tri = dirs[faces]
    outward = np.einsum("ij,ij->i", np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), tri.sum(1))
    assert (outward > 0).all()


def test_symmetry_plane_and_mirror_pairs():
    rng = np.random.default_rng(0)
    half = rng.normal(size=(20, 3)) + [2, 0, 0]
    mid = rng.normal(size=(4, 3)) * [0, 1, 1]
    points = np.concatenate([half, half * [-1, 1, 1], mid])
    partner = mirror_pairs(points)
    assert np.array_equal(partner[partner], np.arange(len(points)))
    assert (partner[40:] == np.arange(40, 44)).all()
    c, s = np.cos(0.2), np.sin(0.2)
    tilted = points @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + [0.3, 0, 0]
    aligned, partner2 = align_symmetry_plane(tilted + rng.normal(scale=1e-3, size=tilted.shape))
    assert np.array_equal(partner2, partner)
    sym = symmetrize(aligned, partner2)
    np.testing.assert_allclose(sym[partner2] * [-1, 1, 1], sym, atol=1e-12)
    assert np.abs(sym[40:, 0]).max() == 0.0


def test_teeth_rows_are_closed_outward_slabs():
    u = np.linspace(-1, 1, 9)
    arch = np.stack([0.02 * u, np.zeros_like(u), -0.015 * u ** 2], 1)
    teeth = build_teeth(arch)
    for lower in (False, True):
        keep = teeth.is_lower[teeth.faces].all(1) == lower
        faces = teeth.faces[keep]
        assert mt.boundary_loops(faces) == [] and mt.signed_volume(teeth.vertices, faces) > 0
    assert teeth.vertices[teeth.is_lower, 1].max() < teeth.vertices[~teeth.is_lower, 1].min()
    assert len(mc.self_intersections(teeth.vertices, teeth.faces)) == 0
    with pytest.raises(ValueError):
        build_teeth(arch[:2])

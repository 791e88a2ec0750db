"""The committed built-in head model: a valid closed head, sensible rig, working components."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from compute_server.head import HeadParams, load_head_model
from compute_server.head import mesh_checks as mc
from compute_server.head import mesh_topology as mt
from tools.head_builder.symmetry import mirror_pairs

MM = 1e-3
REQUIRED_EXPRESSIONS = {"blink_left", "blink_right", "eye_wide_left", "eye_wide_right", "squint_left", "squint_right",
                        "brow_raise_inner", "brow_raise_outer_left", "brow_raise_outer_right", "brow_lower",
                        "smile_left", "smile_right", "mouth_frown_left", "mouth_frown_right", "lip_pucker",
                        "lip_funnel", "lips_press", "upper_lip_raise", "lower_lip_down", "cheek_puff",
                        "nose_sneer_left", "nose_sneer_right", "mouth_left", "mouth_right"}
ROOT, NECK, JAW, LEFT_EYE, RIGHT_EYE = range(5)


@pytest.fixture(scope="module")
def model():
    return load_head_model(dtype=torch.float64)


@pytest.fixture(scope="module")
def mesh(model):
    return model.v_template.numpy(), model.faces.numpy()


def _pose(model, **values) -> np.ndarray:
    p = HeadParams.zeros(model, dtype=torch.float64)
    for key, value in values.items():
        getattr(p, key)[0] = torch.as_tensor(value, dtype=torch.float64)
    with torch.no_grad():
        return model(p).vertices[0].numpy()


def _region_vertices(model, *names) -> np.ndarray:
    ids = [model.region_names.index(n) for n in names]
    return np.unique(model.faces.numpy()[np.isin(model.face_region.numpy(), ids)])


def test_closed_outward_components_without_self_intersections(model, mesh):
    v, f = mesh
    labels = mt.vertex_components(f, len(v))
    used = np.unique(f)
    assert len(used) == len(v), "every vertex belongs to a face"
    components = np.unique(labels[used])
    assert len(components) == 5  # skin, two eyeballs, two teeth rows
    for c in components:
        faces = f[labels[f[:, 0]] == c]
        assert mt.boundary_loops(faces) == [], "component is closed (watertight)"
        assert mt.is_consistently_oriented(faces) and mt.signed_volume(v, faces) > 0, "normals point outwards"
    assert mt.triangle_areas(v, f).min() > 0.1 * MM * MM
    assert len(mc.self_intersections(v, f)) == 0


def test_regions_cover_the_head(model):
    for name in ("face", "scalp", "neck", "ear", "eyeball", "mouth_interior", "teeth"):
        assert name in model.region_names
    counts = np.bincount(model.face_region.numpy(), minlength=len(model.region_names))
    assert (counts > 0).all()
    face_faces = model.faces.numpy()[model.face_region.numpy() == model.region_names.index("face")]
    assert set(range(468)) <= set(np.unique(face_faces).tolist())


def test_the_back_of_the_head_is_scalp_down_to_the_nape(model, mesh):
    """Hair grows behind the ears down to about the earlobes: regions steer the colour
    completion, so the back of the head must not be labelled face or neck up to ear level."""
    v, f = mesh
    centroids = v[f].mean(axis=1)
    names = np.array(model.region_names)[model.face_region.numpy()]
    ears = v[_region_vertices(model, "ear")]
    back_midline = (np.abs(centroids[:, 0]) < 0.015) & (centroids[:, 2] < ears[:, 2].min())
    at_ear_height = back_midline & (centroids[:, 1] > ears[:, 1].min()) & (centroids[:, 1] < ears[:, 1].max())
    assert at_ear_height.sum() > 5 and set(names[at_ear_height]) == {"scalp"}
    nape = ears[:, 1].min() - (ears[:, 1].max() - ears[:, 1].min())  # about an ear height below the lobes
    assert set(names[back_midline & (centroids[:, 1] < nape)]) <= {"neck", "neck_base"}


def test_face_is_symmetric_and_the_head_nearly_so(mesh):
    v, f = mesh
    face = v[:468]
    partner = mirror_pairs(face)
    np.testing.assert_allclose(face[partner] * [-1, 1, 1], face, atol=1e-6)
    # the closure is sampled on directions that are not mirror symmetric, so compare the
    # mirrored vertices with the surface (densely sampled), not with the vertices
    from scipy.spatial import cKDTree
    tri = v[f]
    weights = np.array([[a, b, 1 - a - b] for a in np.linspace(0, 1, 7) for b in np.linspace(0, 1, 7) if a + b <= 1])
    samples = np.einsum("sk,fkc->fsc", weights, tri).reshape(-1, 3)
    distance, _ = cKDTree(samples).query(v * [-1, 1, 1])
    assert np.median(distance) < 0.5 * MM and distance.max() < 3 * MM


def test_anthropometric_size(model, mesh):
    v, _ = mesh
    landmarks = model.landmarks_from_vertices(model.v_template[None])[0].numpy()
    skin = _region_vertices(model, "face", "scalp", "neck")
    width = np.ptp(v[skin, 0])
    length = np.ptp(v[skin, 2])
    chin_to_crown = v[skin, 1].max() - v[152, 1]
    neck = _region_vertices(model, "neck")
    mid_neck = neck[np.abs(v[neck, 1] - (v[152, 1] - 0.045)) < 0.005]
    ipd = np.linalg.norm(landmarks[468] - landmarks[473])
    assert 0.145 < width < 0.165, width
    assert 0.190 < length < 0.225, length   # includes the nose
    assert 0.220 < chin_to_crown < 0.240, chin_to_crown
    assert 0.105 < np.ptp(v[mid_neck, 0]) < 0.125
    assert 0.058 < ipd < 0.068


def test_expression_names_are_what_an_animator_reads(model):
    assert REQUIRED_EXPRESSIONS <= set(model.expression_names)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", n) for n in model.expression_names)
    assert len(set(model.shape_names)) == model.n_shape >= 10


def test_every_expression_is_local(model, mesh):
    v, _ = mesh
    back_of_head = v[:, 2] < v[468, 2] - 0.075
    eyeballs = _region_vertices(model, "eyeball", "iris")
    teeth = _region_vertices(model, "teeth")
    for k, name in enumerate(model.expression_names):
        d = np.linalg.norm(model.exprdirs[:, :, k].numpy(), axis=1)
        assert d.max() > 2 * MM, name
        assert d[back_of_head].max() == 0.0 and d[eyeballs].max() == 0.0 and d[teeth].max() == 0.0, name
        side = 1.0 if name.endswith("_left") else (-1.0 if name.endswith("_right") else 0.0)
        if side and not name.startswith("mouth_") or name in ("mouth_frown_left", "mouth_frown_right"):
            other = side * v[:, 0] < -0.02
            assert d[other].max() < 0.15 * d.max(), name


def test_blink_closes_the_eye_and_smile_lifts_the_corner(model):
    rest = _pose(model)
    landmarks = model.landmarks_from_vertices(model.v_template[None])[0].numpy()
    for name, iris in (("blink_left", 473), ("blink_right", 468)):
        closed = _pose(model, expr=np.eye(model.n_expr)[model.expression_names.index(name)])
        eye = np.linalg.norm(rest[:468] - landmarks[iris], axis=1) < 0.020
        moved = np.linalg.norm(closed[:468] - rest[:468], axis=1)
        assert moved[eye].max() > 5 * MM
        # the upper lid rim comes down onto the lower one along its whole length
        upper, lower = _lid_rims(model, landmarks[iris])
        assert max(_distance_to_path(rest[k], rest[lower]) for k in upper) > 6 * MM
        assert max(_distance_to_path(closed[k], closed[lower]) for k in upper) < 0.6 * MM, name
    smile = _pose(model, expr=np.eye(model.n_expr)[model.expression_names.index("smile_left")])
    corner, other = 291, 61  # MediaPipe outer lip corners: subject's left, right
    assert smile[corner, 1] - rest[corner, 1] > 5 * MM and smile[corner, 0] - rest[corner, 0] > 3 * MM
    assert np.linalg.norm(smile[other] - rest[other]) < 1.5 * MM
    brows = _pose(model, expr=np.eye(model.n_expr)[model.expression_names.index("brow_raise_inner")])
    assert brows[107, 1] - rest[107, 1] > 5 * MM and brows[336, 1] - rest[336, 1] > 5 * MM  # inner brow ends


def _lid_rims(model, iris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid-rim paths (corner to corner) of the eye nearest ``iris``: the face
    mesh's hole boundary around it, split at its extreme-x corners."""
    f = model.faces.numpy()
    v = model.v_template.numpy()
    loops = mt.boundary_loops(f[(f < 468).all(axis=1)])
    loop = min(loops, key=lambda lp: np.linalg.norm(v[lp].mean(0) - iris))
    loop = list(loop)
    a, b = loop.index(loop[int(np.argmin(v[loop, 0]))]), loop.index(loop[int(np.argmax(v[loop, 0]))])
    first = [loop[(a + k) % len(loop)] for k in range((b - a) % len(loop) + 1)]
    second = [loop[(b + k) % len(loop)] for k in range((a - b) % len(loop) + 1)]
    return (np.array(first), np.array(second)) if v[first, 1].mean() > v[second, 1].mean() else \
        (np.array(second), np.array(first))


def _distance_to_path(point: np.ndarray, path: np.ndarray) -> float:
    a, b = path[:-1], path[1:]
    t = np.clip(np.einsum("ij,ij->i", point - a, b - a) / np.einsum("ij,ij->i", b - a, b - a), 0, 1)
    return float(np.linalg.norm(a + t[:, None] * (b - a) - point, axis=1).min())


def test_jaw_opens_the_mouth_but_not_the_forehead(model):
    rest = _pose(model)
    opened = _pose(model, jaw_pose=[0.3, 0, 0])
    assert rest[152, 1] - opened[152, 1] > 15 * MM          # chin goes down
    assert np.linalg.norm(opened[10] - rest[10]) < 1e-9     # forehead stays
    assert opened[14, 1] - opened[13, 1] < -10 * MM          # lips part
    weights = model.lbs_weights.numpy()
    teeth = _region_vertices(model, "teeth")
    lower = teeth[weights[teeth, JAW] == 1.0]
    upper = teeth[weights[teeth, NECK] == 1.0]
    assert len(lower) and len(upper) and len(lower) + len(upper) == len(teeth)
    assert np.linalg.norm(opened[lower] - rest[lower], axis=1).min() > 5 * MM
    assert np.linalg.norm(opened[upper] - rest[upper], axis=1).max() < 1e-9


def test_eyes_turn_the_iris_landmarks(model):
    p = HeadParams.zeros(model, dtype=torch.float64)
    rest = model(p)
    p.eyes_pose[0, :3] = torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)  # left eye looks to its left (+X)
    turned = model(p)
    left = turned.landmarks[0, 473] - rest.landmarks[0, 473]
    assert float(left[0]) > 2.5 * MM and abs(float(left[1])) < 1e-9
    torch.testing.assert_close(turned.landmarks[0, 468:473], rest.landmarks[0, 468:473])  # right eye unchanged
    torch.testing.assert_close(turned.joints, rest.joints)
    radius = (rest.landmarks[0, 473] - rest.joints[0, LEFT_EYE]).norm()
    assert 0.011 < float(radius) < 0.013


def test_skinning_weights_and_joints(model, mesh):
    v, _ = mesh
    w = model.lbs_weights.numpy()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-9)
    assert w.min() >= 0.0 and w.max() <= 1.0
    eyeballs_left = _region_vertices(model, "eyeball", "iris")
    eyeballs_left = eyeballs_left[v[eyeballs_left, 0] > 0]
    assert (w[eyeballs_left, LEFT_EYE] == 1.0).all()
    bottom = v[:, 1] < v[:, 1].min() + 0.005
    assert (w[bottom, ROOT] == 1.0).all()
    top = v[:, 1] > v[10, 1]
    assert (w[top, NECK] == 1.0).all()
    J = model.J_regressor.numpy()
    np.testing.assert_allclose(J.sum(1), 1.0, atol=1e-9)
    joints = J @ v
    root, neck, jaw, left_eye, right_eye = joints
    assert root[1] < v[152, 1] - 0.05 and neck[1] < v[152, 1] + 0.06 < jaw[1]
    assert abs(jaw[0]) < 1e-9 and jaw[2] < v[152, 2] - 0.05      # hinge on the midline, behind the chin
    centre_left = v[eyeballs_left].mean(0)
    np.testing.assert_allclose(left_eye, centre_left, atol=1.5 * MM)
    np.testing.assert_allclose(right_eye * [-1, 1, 1], left_eye, atol=1e-6)
    # identity changes move joints through the regressor, like FLAME
    spaced = model.shape_names.index("eye_spacing")
    moved = J @ (v + 3 * model.shapedirs[:, :, spaced].numpy())
    assert moved[LEFT_EYE, 0] - left_eye[0] > 4 * MM


def test_neck_and_global_rotation(model, mesh):
    v, _ = mesh
    rest = _pose(model)
    nod = _pose(model, neck_pose=[0.3, 0, 0])
    bottom = v[:, 1] < v[:, 1].min() + 0.005
    assert np.linalg.norm(nod[bottom] - rest[bottom], axis=1).max() < 1e-9
    assert np.linalg.norm(nod[10] - rest[10]) > 0.02
    turned = _pose(model, rotation=[0, 0.4, 0], translation=[0.01, 0.02, 0.03])
    root = (model.J_regressor.numpy() @ v)[ROOT]
    c, s = np.cos(0.4), np.sin(0.4)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    np.testing.assert_allclose(turned, (rest - root) @ R.T + root + [0.01, 0.02, 0.03], atol=1e-9)


def test_expressions_and_identity_extremes_keep_an_embedded_mesh(model, mesh):
    v, f = mesh
    for k, name in enumerate(model.expression_names):
        deformed = v + model.exprdirs[:, :, k].numpy()
        assert len(mc.self_intersections(deformed, f)) == 0, name
        assert len(mc.flipped_faces(v, deformed, f)) == 0, name
    for k, name in enumerate(model.shape_names):
        for sigma in (-3.0, 3.0):
            deformed = v + sigma * model.shapedirs[:, :, k].numpy()
            assert len(mc.self_intersections(deformed, f)) == 0, (name, sigma)
            assert len(mc.flipped_faces(v, deformed, f)) == 0, (name, sigma)

"""The photo's low-frequency light: recovered from a face lit from one side, and taken out
of what mirror symmetry copies, so the shadowed side stays shadowed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.head.model import HeadParams, load_head_model
from compute_server.views.records import TrainingView
from compute_server.views.reprojection import mirrored_view
from compute_server.views.sampling import head_centre
from compute_server.views.shading import fit_shading, mirrored_normals, photo_shading, relit_faces
from compute_server.views.surface import render_surface
from shared.camera import orbit_camera

LIGHT = np.array([-0.6, 0.3, 0.75]) / np.linalg.norm([-0.6, 0.3, 0.75])   # from the subject's right


def lambert(normals: np.ndarray) -> np.ndarray:
    """Ambient plus a broad key light: positive on everything the camera sees, so linear in n."""
    return 0.45 + 0.35 * normals @ LIGHT


@pytest.fixture(scope="module")
def lit_head():
    model = load_head_model()
    with torch.no_grad():
        vertices = model(HeadParams.zeros(model, 1)).vertices[0].numpy().astype(np.float64)
    faces = model.faces.numpy()
    camera = orbit_camera(0, 5, 0.6, target=head_centre(vertices), width=160, height=160, fov_y_deg=25)
    surface = render_surface(vertices, faces, [camera])[0]
    albedo = np.array([0.9, 0.7, 0.6])
    image = np.ones((160, 160, 3), np.float32)
    image[surface.mask] = (albedo[None] * lambert(surface.normals_world[surface.mask])[:, None])
    # dark features of another colour (eyes, brows) that the robust fit must ignore
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(surface.mask)
    pick = rng.choice(len(ys), size=len(ys) // 20, replace=False)
    image[ys[pick], xs[pick]] = (0.1, 0.08, 0.05)
    params = {k: v[0] for k, v in HeadParams.zeros(model).to_numpy().items()}
    return dict(model=model, faces=faces, camera=camera, surface=surface, image=image, albedo=albedo, params=params,
                matte=surface.mask.astype(np.float32))


def test_the_fit_finds_the_light(lit_head):
    s = lit_head
    shading = photo_shading(s["image"], s["matte"], s["camera"], s["surface"], s["model"].face_region.numpy(),
                            s["model"].region_names)
    assert shading is not None
    direction = shading.c / np.linalg.norm(shading.c)
    assert direction @ LIGHT > 0.97
    assert direction[0] < -0.5                        # lit from the subject's right (-x)


def test_too_little_skin_gives_no_model():
    assert fit_shading(np.ones((8, 8, 3)), np.zeros((8, 8, 3)), np.ones((8, 8), bool)) is None


def test_an_evenly_lit_face_is_not_relit():
    rng = np.random.default_rng(1)
    n = rng.normal(size=(400, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    shading = fit_shading(np.full((20, 20, 3), 0.6), n.reshape(20, 20, 3), np.ones((20, 20), bool))
    np.testing.assert_allclose(shading.ratio(n, mirrored_normals(n)), 1.0, atol=1e-6)


def test_the_mirror_view_keeps_the_light_where_it_was(lit_head):
    """Mirroring a face lit from its right makes one lit from its left; relit, the mirror
    view matches how the true (symmetric) head looks under the photo's light."""
    s = lit_head
    face_region, names = s["model"].face_region.numpy(), s["model"].region_names
    shading = photo_shading(s["image"], s["matte"], s["camera"], s["surface"], face_region, names)
    relit = s["surface"].mask & relit_faces(face_region, names)[np.maximum(s["surface"].face_ids, 0)]
    photo = TrainingView(image=s["image"], mask=s["matte"], camera=s["camera"], head_params=s["params"], weight=1.0,
                         normals=s["surface"].normals_camera.astype(np.float32), kind="input", name="lit")
    plain = mirrored_view(photo, s["model"].expression_names, 0.5)
    corrected = mirrored_view(photo, s["model"].expression_names, 0.5, shading, relit)
    # the truth: the mirrored camera looking at the symmetric head under the same light
    truth_normals = mirrored_normals(s["surface"].normals_world)[:, ::-1]
    region = relit[:, ::-1] & (np.abs(s["image"][:, ::-1, 0] - 0.1) > 0.01)     # skin, no dark features
    truth = s["albedo"][None] * lambert(truth_normals[region])[:, None]
    error_plain = np.abs(plain.image[region] - truth).mean()
    error_corrected = np.abs(corrected.image[region] - truth).mean()
    assert error_plain > 0.03
    assert error_corrected < 0.3 * error_plain

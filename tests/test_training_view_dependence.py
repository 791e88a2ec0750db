"""Gaussians on parts no photo constrains (mouth interior, teeth, eyes) keep view-independent
colour while the rest of the avatar learns its higher SH bands."""

from __future__ import annotations

import numpy as np
import torch

from compute_server.head.model import HeadParams, load_head_model
from compute_server.training.init import InitSettings, initialize_splats
from compute_server.training.optimize import OptimizeSettings, optimize_splats
from compute_server.splats.strategy import BindingDensifyStrategy
from compute_server.views.records import TrainingView
from compute_server.views.sampling import head_centre
from compute_server.views.surface import render_surface
from shared.camera import orbit_camera


def test_hidden_and_rotating_parts_get_no_view_dependent_colour():
    head = load_head_model()
    params = {k: v[0] for k, v in HeadParams.zeros(head).to_numpy().items()}
    with torch.no_grad():
        vertices = head(HeadParams.zeros(head, 1)).vertices[0].numpy().astype(np.float64)
    faces, face_region = head.faces.numpy(), head.face_region.numpy()
    colors = np.clip(0.5 + 3.0 * (vertices - vertices.mean(0)), 0, 1)
    views = []
    for azimuth in (0.0, 40.0):
        camera = orbit_camera(azimuth, 0, 0.6, target=head_centre(vertices), width=48, height=48, fov_y_deg=25)
        surface = render_surface(vertices, faces, [camera], vertex_attrs=colors)[0]
        views.append(TrainingView(image=surface.attrs.astype(np.float32), mask=surface.mask.astype(np.float32),
                                  camera=camera, head_params=params, weight=1.0,
                                  kind="input" if azimuth == 0 else "reprojected", name=f"az {azimuth}"))
    model = initialize_splats(vertices, faces, face_region, head.region_names, colors.astype(np.float32),
                              InitSettings(count=2000, sh_degree=1), np.random.default_rng(0))
    settings = OptimizeSettings(iterations=8, sh_increase_every=1, lr_shN=0.05, preview_every=0,
                                densify=BindingDensifyStrategy(refine_start=1000, refine_stop=1000))
    optimize_splats(model, head, views, settings, seed=0)
    hidden_ids = [head.region_names.index(n) for n in settings.view_independent_regions]
    hidden = np.isin(face_region[model.binding.numpy()], hidden_ids)
    sh_rest = model.params["shN"].detach().abs().sum(dim=(1, 2)).numpy()
    assert hidden.sum() > 50
    assert np.all(sh_rest[hidden] == 0.0)
    assert (sh_rest[~hidden] > 0).mean() > 0.1          # the rest does learn view-dependent colour

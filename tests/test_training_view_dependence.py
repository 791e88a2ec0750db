"""Gaussians on parts no photo constrains (mouth interior, teeth, eyes) keep view-independent
colour while the rest of the avatar learns its higher SH bands."""

from __future__ import annotations

import numpy as np

from compute_server.training.init import InitSettings, initialize_splats
from compute_server.training.optimize import OptimizeSettings, optimize_splats
from compute_server.splats.strategy import BindingDensifyStrategy
from compute_server.views.records import TrainingView
from compute_server.views.sampling import head_centre
from compute_server.views.surface import render_surface
from shared.camera import orbit_camera
from tests.head_scene import rest_head_coloured


def test_hidden_and_rotating_parts_get_no_view_dependent_colour():
    head, params, vertices, faces, face_region, colors = rest_head_coloured()
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

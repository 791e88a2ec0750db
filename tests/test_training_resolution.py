"""Progressive resolution in the trainer: the first share of the iterations renders every view
at half its size against its area-averaged images, with intrinsics that keep the two aligned.

A sub-pixel error in the scaled intrinsics would shift every coarse target against its
render and teach a blurred, displaced avatar; the first test would see it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from compute_server.splats.strategy import BindingDensifyStrategy
from compute_server.training import optimize as optimize_module
from compute_server.training.init import InitSettings, initialize_splats
from compute_server.training.optimize import OptimizeSettings, _PreparedView, optimize_splats
from compute_server.views.records import TrainingView
from compute_server.views.sampling import head_centre
from compute_server.views.surface import render_surface
from shared.camera import orbit_camera
from tests.head_scene import rest_head_coloured

SIZE = 64


def _view(vertices, faces, colors, params, azimuth, *, size=SIZE, kind="input", distance=0.6) -> TrainingView:
    camera = orbit_camera(azimuth, 0, distance, target=head_centre(vertices), width=size, height=size, fov_y_deg=25)
    surface = render_surface(vertices, faces, [camera], vertex_attrs=colors)[0]
    return TrainingView(image=surface.attrs.astype(np.float32), mask=surface.mask.astype(np.float32),
                        camera=camera, head_params=params, weight=1.0, loss_mask=surface.mask.astype(np.float32),
                        normals=surface.normals_camera.astype(np.float32), kind=kind, name=f"az {azimuth}")


def test_half_size_targets_line_up_with_the_mesh_rendered_at_half_size():
    """The area-averaged full-size matte against the mesh drawn directly at the coarse camera:
    their centroids agree to a small fraction of a coarse pixel. The usual mistake (scaling
    about pixel centres instead of pixel edges) moves the drawn one by a quarter pixel."""
    head, params, vertices, faces, _, colors = rest_head_coloured()
    full = _view(vertices, faces, colors, params, 30.0, size=2 * SIZE, distance=1.0)   # all in the frame
    assert not full.mask[[0, -1]].any() and not full.mask[:, [0, -1]].any()
    coarse = _PreparedView(full, head, "cpu", trainable=False).targets(2)
    assert (coarse.width, coarse.height) == (SIZE, SIZE)
    assert coarse.image.shape == (1, SIZE, SIZE, 3) and coarse.mask.shape == (1, SIZE, SIZE)

    def centroid(mask: np.ndarray) -> np.ndarray:
        rows, cols = np.mgrid[:mask.shape[0], :mask.shape[1]]
        return np.array([(mask * cols).sum(), (mask * rows).sum()]) / mask.sum()

    def drawn(shift: float) -> np.ndarray:
        K = coarse.Ks[0].numpy().astype(np.float64)
        camera = replace(full.camera, fx=K[0, 0], fy=K[1, 1], cx=K[0, 2] + shift, cy=K[1, 2] + shift,
                         width=SIZE, height=SIZE)
        return render_surface(vertices, faces, [camera])[0].mask.astype(np.float64)

    pooled = centroid(coarse.mask[0].numpy().astype(np.float64))
    assert np.abs(pooled - centroid(drawn(0.0))).max() < 0.08
    assert np.abs(pooled - centroid(drawn(-0.25))).min() > 0.17     # the check can see the mistake


def test_half_size_normals_are_unit_where_the_view_has_them_and_zero_elsewhere():
    head, params, vertices, faces, _, colors = rest_head_coloured()
    view = _PreparedView(_view(vertices, faces, colors, params, 0.0), head, "cpu", trainable=False)
    coarse = view.targets(2)
    length = torch.linalg.norm(coarse.normals[0], dim=-1)
    covered = coarse.mask[0] > 0
    assert torch.allclose(length[covered], torch.ones_like(length[covered]), atol=1e-4)
    assert torch.all(length[~covered] == 0)
    assert view.targets(1).image is view.image          # full size: the view's own tensors
    assert view.targets(2) is coarse                    # made once


def _train_recording_sizes(monkeypatch, settings: OptimizeSettings, azimuths=(0.0,)):
    """Train a small model on views of the rest head at ``azimuths`` (the first the input),
    with a spy on the trainer's render call (it still renders); returns the (width, height)
    of every render and the model's colours before and after."""
    head, params, vertices, faces, face_region, colors = rest_head_coloured()
    views = [_view(vertices, faces, colors, params, a, kind="input" if i == 0 else "reprojected")
             for i, a in enumerate(azimuths)]
    model = initialize_splats(vertices, faces, face_region, head.region_names, colors.astype(np.float32),
                              InitSettings(count=2000, sh_degree=0), np.random.default_rng(0))
    sizes = []
    real_render = optimize_module.render_avatar

    def spy(*args, **kwargs):
        sizes.append((args[5], args[6]))
        return real_render(*args, **kwargs)

    monkeypatch.setattr(optimize_module, "render_avatar", spy)
    before = model.params["sh0"].detach().clone()
    optimize_splats(model, head, views, settings, seed=0)
    return sizes, before, model.params["sh0"].detach()


def _no_densifying(**kwargs) -> OptimizeSettings:
    return OptimizeSettings(preview_every=0, max_eval_views=0,
                            densify=BindingDensifyStrategy(refine_start=1000, refine_stop=1000), **kwargs)


def test_the_coarse_share_of_the_iterations_renders_at_half_size(monkeypatch):
    """The first iterations at 32 px, the rest at 64, and training moves the model."""
    sizes, before, after = _train_recording_sizes(monkeypatch, _no_densifying(iterations=10, coarse_fraction=0.6),
                                                  azimuths=(0.0, 40.0))
    assert sizes[:10] == [(SIZE // 2, SIZE // 2)] * 6 + [(SIZE, SIZE)] * 4
    assert not torch.allclose(after, before)


def test_no_coarse_share_renders_every_iteration_at_full_size(monkeypatch):
    sizes, _, _ = _train_recording_sizes(monkeypatch, _no_densifying(iterations=4))
    assert sizes[:4] == [(SIZE, SIZE)] * 4

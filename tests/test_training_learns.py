"""The trainer learns: on a real photo, composed the way ``avatar.create`` composes it
(prepare_portrait -> fit_portraits -> training views -> initialize_splats ->
optimize_splats), 120 iterations raise the PSNR on the input view a few dB above
the initialization's (the Gaussians coloured by projecting the photo, before any step),
and the novel views (the reprojected views the training set holds) get closer too.

If the loss, the gradients, the optimizer or the rasterizer's backward pass stopped
working, the PSNRs would stay at the initial ones: the margins below are set under what
was measured (see the constants); the chain is seeded, so a run repeats its numbers.
"""

from __future__ import annotations

import io
from dataclasses import replace
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from compute_server.camera_torch import stack_cameras
from compute_server.head.model import HeadParams, load_head_model
from compute_server.splats.losses import psnr
from compute_server.splats.render_avatar import render_avatar

IMAGE_SIZE = 64
ITERATIONS = 120
GAUSSIANS = 1000                # asked for; initialize_splats keeps at least one per face (~10k)
SEED = 3
# Measured on the astronaut at 64 px, 120 iterations (the draft recipe scaled down by
# ``preset``; the head's ~10k faces keep at least ~10k Gaussians, 15.5k after densifying),
# 2-vCPU EPYC shared with other agents, torch 2.13 CPU: input view 18.41 dB at
# initialization -> 21.32 dB after (+2.9 dB); the 12 reprojected novel views 17.39 dB ->
# 17.64 dB on average (+0.25 dB: they get 35% of the draws at weight 0.3, and at 64 px the
# reprojections disagree with each other). Cost: 194 s CPU for the training (1.6 s an
# iteration), 238 s CPU in all, so the test is marked slow. A broken loss, backward pass or
# optimizer leaves both gains at 0.
MIN_INPUT_GAIN_DB = 2.0
MIN_NOVEL_GAIN_DB = 0.1


@lru_cache(maxsize=1)
def _scene():
    """(head model, training views, synthesis input, preset) of the astronaut, built by the
    avatar.create stages themselves (``_training_views`` with no diffusion model)."""
    import skimage.data
    from PIL import Image

    from compute_server.face import prepare_portrait
    from compute_server.pipeline.avatar_create import _training_views
    from compute_server.pipeline.presets import preset
    from compute_server.tracking.portrait_fit import fit_portraits

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buffer, "PNG")
    settings = preset("draft", iterations=ITERATIONS, image_size=IMAGE_SIZE)
    settings.init.count = GAUSSIANS
    settings.include_back_views = False          # 12 novel views instead of 16: the ones a photo can inform
    # the draft's half-size start would train at 32 px here, where the reprojected views'
    # detail is under a pixel (their gain fell to +0.09 dB); the start has its own tests
    # (test_training_resolution.py) and its figures at the draft's real size (results.md)
    settings.optimize.coarse_fraction = 0.0
    settings.fit = replace(settings.fit, rigid_iterations=60, full_iterations=80)   # fitting is not under test
    head = load_head_model()
    portrait = prepare_portrait(buffer.getvalue(), "astronaut.png", size=IMAGE_SIZE)
    fit = fit_portraits(head, [portrait], settings=settings.fit)
    ctx = SimpleNamespace(check=lambda: None, device="cpu")
    stages = SimpleNamespace(report=lambda *args, **kwargs: None)
    request = SimpleNamespace(diffusion="none", seed=SEED)
    views, main = _training_views(head, [portrait], fit, settings, request, ctx, stages, services=None)
    return head, views, main, settings


def _initial_model(head, main, settings):
    from compute_server.training.init import initialize_splats

    return initialize_splats(main.vertices, main.faces, main.face_region, main.region_names,
                             main.vertex_colors.colors, settings.init, np.random.default_rng(SEED),
                             photo=main.image, photo_matte=main.matte, photo_camera=main.camera,
                             photo_surface=main.surface)


@torch.no_grad()
def _view_psnr(model, head, view) -> float:
    """PSNR over the view's foreground (mask > 0.5), as ``optimize.evaluate_views`` scores
    the photos: the render over black against the masked target."""
    params = HeadParams.from_numpy({k: np.asarray(v, np.float32)[None] for k, v in view.head_params.items()})
    vertices = head(params).vertices[0]
    viewmats, Ks = stack_cameras([view.camera])
    out = render_avatar(model, vertices, head.faces, viewmats, Ks, view.camera.width, view.camera.height)
    mask = torch.as_tensor(view.mask, dtype=torch.float32)[None]
    target = torch.as_tensor(view.image, dtype=torch.float32)[None] * mask[..., None]
    return psnr(out.rgb, target, (mask > 0.5).float())


@pytest.fixture(scope="module")
def trained():
    from compute_server.training.optimize import optimize_splats

    torch.set_num_threads(min(2, torch.get_num_threads()))
    head, views, main, settings = _scene()
    novel = [v for v in views if v.kind == "reprojected"]
    before = _initial_model(head, main, settings)
    untrained = optimize_splats(before, head, views, _no_steps(settings.optimize), seed=SEED)
    novel_before = [_view_psnr(before, head, v) for v in novel]
    model = _initial_model(head, main, settings)
    result = optimize_splats(model, head, views, settings.optimize, seed=SEED)
    novel_after = [_view_psnr(result.model, head, v) for v in novel]
    return SimpleNamespace(input_before=untrained.metrics["input_psnr_db"], input_after=result.metrics["input_psnr_db"],
                           novel_before=novel_before, novel_after=novel_after, result=result, views=views)


def _no_steps(settings):
    return replace(settings, iterations=0)


@pytest.mark.slow
def test_training_raises_the_input_views_psnr_above_the_projected_colours(trained):
    print(f"input view: {trained.input_before:.2f} dB at initialization, {trained.input_after:.2f} dB after "
          f"{ITERATIONS} iterations")
    assert trained.input_after - trained.input_before > MIN_INPUT_GAIN_DB


@pytest.mark.slow
def test_training_brings_the_novel_views_closer_to_their_reprojected_targets(trained):
    before, after = np.mean(trained.novel_before), np.mean(trained.novel_after)
    print(f"reprojected views ({len(trained.novel_before)}): {before:.2f} dB at initialization, {after:.2f} dB after; "
          f"per view {np.round(np.subtract(trained.novel_after, trained.novel_before), 2).tolist()}")
    assert len(trained.novel_before) >= 4
    assert after - before > MIN_NOVEL_GAIN_DB

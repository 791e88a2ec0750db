"""The controlnet-normal and multiview backends through the real loading code, on CPU at
64 x 64 with tiny random weights: shapes, kept photo pixels, conditioning, determinism,
cancel within a step, out-of-memory handling, release, expression variations."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from compute_server.diffusion.controlnet_normal import ControlNetNormalDenoiser
from compute_server.diffusion.denoising import DenoiseJob
from compute_server.gpu_memory import classify_out_of_memory
from compute_server.diffusion.registry import DiffusionModels
from compute_server.diffusion.variations import ViewTarget, expression_targets, reprojected_variant_view
from compute_server.errors import JobCancelled, UserError
from compute_server.views.reprojection import reprojected_view
from compute_server.views.synthesis import ReprojectionSynthesizer
from tests.test_diffusion_support import (StepCounter, astronaut_input, models, models_config, ring_cameras,  # noqa: F401
                                          synthetic_input, tiny, one_torch_thread)  # (fixtures)

USER_ADAPTER = '''
import torch
from diffusers import AutoencoderKL
from compute_server.diffusion.multiview_contract import MultiviewResult


class EchoAdapter:
    """A user adapter: VAE round trip of the start image, tinted by the normal map."""
    requests = []

    def __init__(self, folder, *, device, dtype, options):
        self.vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True,
                                                 torch_dtype=dtype).to(device)
        self.mix = options["mix"]

    @torch.no_grad()
    def generate(self, request):
        EchoAdapter.requests.append(request)
        for i in range(request.steps):
            request.on_step(i + 1, request.steps)
        start = request.init_images if request.init_images is not None else torch.full_like(request.normal_maps, 0.5)
        latents = self.vae.encode(start.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
        decoded = ((self.vae.decode(latents).sample + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
        return MultiviewResult(images=(1 - self.mix) * decoded + self.mix * request.normal_maps)
'''


@pytest.fixture(scope="module")
def scene():
    return synthetic_input(64)


def unet_calls(backend) -> list:
    """Counts forward calls of the backend's UNet (a forward hook; nothing mocked)."""
    denoiser = backend.denoiser()
    unet = denoiser.parts.unet if hasattr(denoiser, "parts") else denoiser.adapter.unet
    calls = []
    handle = unet.register_forward_hook(lambda module, args, out: calls.append(1))
    return calls, handle


def test_controlnet_views_on_the_real_chain(models):
    """Astronaut photo -> prepared portrait -> fitted head -> diffusion views at 128 px
    (the model works at 64 px): records the optimizer can use, the photo's own pixels kept."""
    _, inp = astronaut_input(128)
    cameras = ring_cameras(inp, 3)
    counter = StepCounter()
    views = models.backend("tiny-sd", "cpu").synthesizer.synthesize(inp, cameras, weight=0.3,
                                                                    progress=counter.progress)
    baseline = ReprojectionSynthesizer().synthesize(inp, cameras, weight=0.3)
    assert len(views) == 3 and counter.steps == 3          # round(4 steps * strength 0.75), one call for 3 views
    assert counter.messages[-1][0] == pytest.approx(1.0)
    for view, base in zip(views, baseline):
        assert view.kind == "diffusion" and view.image.shape == (128, 128, 3) and view.image.dtype == np.float32
        assert view.weight == 0.3 and view.camera is base.camera
        np.testing.assert_array_equal(view.mask, base.mask)
        np.testing.assert_array_equal(view.normals, base.normals)
        assert 0.0 <= view.image.min() and view.image.max() <= 1.0
        assert not view.image[view.mask == 0].any()
        inner = binary_erosion(base.known > 0, structure=np.ones((3, 3)), iterations=2)   # 2 px inside
        assert inner.sum() > 100
        np.testing.assert_allclose(view.image[inner], base.image[inner], atol=1e-5)   # photo pixels kept
        repainted = (base.mask > 0) & (base.known == 0)
        assert np.abs(view.image[repainted] - base.image[repainted]).mean() > 0.02   # the rest repainted
        assert view.meta["backend"] == "controlnet-normal" and view.meta["normals_from"] == "mesh"


def test_same_seed_same_views_other_seed_other_views(models, scene):
    _, inp = scene
    synthesizer = models.backend("tiny-sd", "cpu").synthesizer
    cameras = ring_cameras(inp, 1)
    first = synthesizer.synthesize(inp, cameras, weight=1.0)
    again = synthesizer.synthesize(inp, cameras, weight=1.0)
    other = synthesizer.synthesize(replace(inp, seed=inp.seed + 1), cameras, weight=1.0)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a.image, b.image)
        assert np.abs(a.image - c.image).max() > 1e-3


def _job(view_images, normals, masks, inp, **kw) -> DenoiseJob:
    return DenoiseJob(normals_camera=normals, masks=masks, cameras=[inp.camera] * len(masks),
                      reference_image=inp.image, reference_mask=inp.matte, reference_camera=inp.camera,
                      init_images=view_images, strength=0.75, steps=3, seed=5, **kw)


def test_the_normal_map_steers_the_controlnet(models, scene):
    _, inp = scene
    denoiser = models.backend("tiny-sd", "cpu").denoiser()
    masks = inp.surface.mask.astype(np.float32)[None]
    normals = inp.surface.normals_camera.astype(np.float32)[None]
    flipped = normals * np.array([-1.0, 1.0, 1.0], np.float32)
    start = np.full((1, 64, 64, 3), 0.8, np.float32)
    a = denoiser.denoise(_job(start, normals, masks, inp), lambda d, t: None).images
    b = denoiser.denoise(_job(start, flipped, masks, inp), lambda d, t: None).images
    assert np.abs(a - b).max() > 1e-3
    unsteered = ControlNetNormalDenoiser(denoiser.parts, replace(denoiser.model, controlnet_scale=0.0))
    c = unsteered.denoise(_job(start, normals, masks, inp), lambda d, t: None).images
    d = unsteered.denoise(_job(start, flipped, masks, inp), lambda d, t: None).images
    np.testing.assert_allclose(c, d, atol=1e-6)


def test_ip_adapter_conditions_on_the_photo(models, scene):
    _, inp = scene
    masks = inp.surface.mask.astype(np.float32)[None]
    normals = inp.surface.normals_camera.astype(np.float32)[None]
    start = np.full((1, 64, 64, 3), 0.8, np.float32)
    other_photo = replace(inp, image=np.ascontiguousarray(inp.image[::-1, :, ::-1]))
    results = {}
    for name in ("tiny-sd-ip", "tiny-sd"):
        denoiser = models.backend(name, "cpu").denoiser()
        results[name] = [denoiser.denoise(_job(start, normals, masks, photo), lambda d, t: None).images
                         for photo in (inp, inp, other_photo)]
    ip = results["tiny-sd-ip"]
    np.testing.assert_array_equal(ip[0], ip[1])
    assert np.abs(ip[0] - ip[2]).max() > 1e-4                # the photo reaches the UNet through the IP-Adapter
    plain = results["tiny-sd"]
    np.testing.assert_array_equal(plain[0], plain[2])         # without it, only the normals and start image do
    assert models.backend("tiny-sd-ip", "cpu").denoiser().describe()["ip_adapter"] is True


def test_multiview_views_are_joint_and_can_carry_normals(models, scene):
    _, inp = scene
    cameras = ring_cameras(inp, 2)
    plain = models.backend("tiny-mv", "cpu").synthesizer.synthesize(inp, cameras, weight=0.5)
    joint = models.backend("tiny-mv-normals", "cpu").synthesizer.synthesize(inp, cameras, weight=0.5)
    base = ReprojectionSynthesizer().synthesize(inp, cameras, weight=0.5)
    for p, j, b in zip(plain, joint, base):
        assert p.kind == j.kind == "diffusion" and p.image.shape == (64, 64, 3)
        np.testing.assert_array_equal(p.normals, b.normals)                          # mesh normals
        assert p.meta["normals_from"] == "mesh" and j.meta["normals_from"] == "model"
        on = j.mask > 0.5
        np.testing.assert_allclose(np.linalg.norm(j.normals[on], axis=-1), 1.0, atol=1e-4)  # generated, unit
        assert not j.normals[~on].any() and np.abs(j.normals[on] - b.normals[on]).max() > 1e-3
    # The views are denoised as one tiled grid: changing one view's normal map changes the others.
    denoiser = models.backend("tiny-mv", "cpu").denoiser()
    masks = np.stack([b.mask for b in base])
    normals = np.stack([b.normals for b in base])
    changed = normals.copy()
    changed[0] *= np.array([-1.0, 1.0, 1.0], np.float32)
    a = denoiser.denoise(_job(np.stack([b.image for b in base]), normals, masks, inp), lambda d, t: None).images
    c = denoiser.denoise(_job(np.stack([b.image for b in base]), changed, masks, inp), lambda d, t: None).images
    assert np.abs(a[1] - c[1]).max() > 1e-4


def test_a_user_adapter_file_gets_the_documented_request(tmp_path, tiny, scene):
    folder = str(tmp_path / "user-mv")
    shutil.copytree(tiny.multiview, folder)
    (tmp_path / "user-mv" / "echo_adapter.py").write_text(USER_ADAPTER)
    manifest = json.loads((tmp_path / "user-mv" / "headsplat_multiview.json").read_text())
    manifest.update(adapter="echo_adapter.py:EchoAdapter", views_per_call=2, fixed_views=True, resolution=48,
                    options={"mix": 0.25})
    (tmp_path / "user-mv" / "headsplat_multiview.json").write_text(json.dumps(manifest))
    config = tmp_path / "m.json"
    config.write_text(json.dumps({"models": [{"name": "user", "backend": "multiview", "pipeline": folder,
                                              "steps": 4, "strength": 0.5}]}))
    models = DiffusionModels.from_config(str(config))
    _, inp = scene
    cameras = ring_cameras(inp, 3)
    counter = StepCounter()
    views = models.backend("user", "cpu").synthesizer.synthesize(inp, cameras, weight=0.4, progress=counter.progress)
    requests = type(models.backend("user", "cpu").denoiser().adapter).requests
    assert len(views) == 3 and [v.image.shape for v in views] == [(64, 64, 3)] * 3
    assert len(requests) == 2                                   # 3 views, 2 per call: 2 + (1 padded to 2)
    for request in requests:
        assert tuple(request.normal_maps.shape) == (2, 48, 48, 3) and tuple(request.init_images.shape) == (2, 48, 48, 3)
        assert tuple(request.masks.shape) == (2, 48, 48) and request.strength == 0.5 and request.steps == 2
        assert tuple(request.view_angles_deg.shape) == (2, 2) and request.reference_camera is inp.camera
    np.testing.assert_allclose(requests[0].view_angles_deg[:, 0].numpy(), [-90.0, -60.0], atol=1e-3)
    assert counter.steps == 4
    models.release_all()


def test_cancel_stops_sampling_within_the_step(models, scene):
    _, inp = scene
    backend = models.backend("tiny-sd", "cpu")
    calls, handle = unet_calls(backend)
    try:
        counter = StepCounter(limit=2, exc=JobCancelled("job"))
        with pytest.raises(JobCancelled):
            backend.synthesizer.synthesize(inp, ring_cameras(inp, 2), weight=1.0, progress=counter.progress)
    finally:
        handle.remove()
    assert counter.steps == 2 and len(calls) == 2               # no UNet call after the cancel

    mv = models.backend("tiny-mv", "cpu")
    calls, handle = unet_calls(mv)
    try:
        counter = StepCounter(limit=1, exc=JobCancelled("job"))
        with pytest.raises(JobCancelled):
            mv.synthesizer.synthesize(inp, ring_cameras(inp, 2), weight=1.0, progress=counter.progress)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_gpu_out_of_memory_is_a_job_error_and_the_backend_recovers(models, scene):
    """The GPU is mocked here (the only mock): the UNet raises CUDA's out-of-memory error."""
    _, inp = scene
    backend = models.backend("tiny-sd", "cpu")
    unet = backend.denoiser().parts.unet

    def out_of_memory(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = unet.register_forward_pre_hook(out_of_memory)
    try:
        with pytest.raises(UserError) as err:
            backend.synthesizer.synthesize(inp, ring_cameras(inp, 1), weight=1.0)
    finally:
        handle.remove()
    assert err.value.code == "out_of_memory"
    assert "ran out of memory while denoising 1 view at 64x64" in err.value.message
    assert "smaller preset" in err.value.message
    assert len(backend.synthesizer.synthesize(inp, ring_cameras(inp, 1), weight=1.0)) == 1
    info = classify_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert info.code == "out_of_memory" and classify_out_of_memory(ValueError("x")) is None


def test_release_frees_unless_kept_warm(tmp_path, tiny, scene):
    _, inp = scene
    models = DiffusionModels.from_config(models_config(tmp_path, tiny))
    backend = models.backend("tiny-mv", "cpu")
    assert models.backend("tiny-mv", "cpu") is backend and not backend.loaded
    backend.synthesizer.synthesize(inp, ring_cameras(inp, 1), weight=1.0)
    assert backend.loaded and next(m for m in models.describe() if m["name"] == "tiny-mv")["loaded"]
    backend.release()
    assert not backend.loaded
    backend.synthesizer.synthesize(inp, ring_cameras(inp, 1), weight=1.0)   # loads again on use
    warm = DiffusionModels.from_config(models_config(tmp_path, tiny, name="warm.json", keep_warm=True))
    kept = warm.backend("tiny-mv", "cpu")
    kept.denoiser()
    kept.release()
    assert kept.loaded
    warm.release_all()
    models.release_all()
    assert not kept.loaded and not backend.loaded


def test_weights_that_fail_to_load_are_a_bad_model_error(tmp_path, tiny, scene):
    folder = str(tmp_path / "sd")
    shutil.copytree(tiny.base, folder)
    path = os.path.join(folder, "unet", "config.json")
    config = json.load(open(path))
    config["down_block_types"] = ["DownBlock2D", "NoSuchBlock2D"]    # passes the quick check, fails to build
    json.dump(config, open(path, "w"))
    config_file = tmp_path / "m.json"
    config_file.write_text(json.dumps({"models": [{"name": "x", "backend": "controlnet-normal", "base": folder,
                                                   "controlnet": tiny.controlnet}]}))
    models = DiffusionModels.from_config(str(config_file))
    models.check("x")
    _, inp = scene
    with pytest.raises(UserError) as err:
        models.backend("x", "cpu").synthesizer.synthesize(inp, ring_cameras(inp, 1), weight=1.0)
    assert err.value.code == "bad_model" and "UNet" in err.value.message and folder in err.value.message


def test_photo_pose_variant_reprojection_matches_the_baseline(scene):
    """The correspondence-based reprojection (for other expressions) is the baseline when
    the expression is the photo's own: the reference implementation beside the new one."""
    _, inp = scene
    camera = ring_cameras(inp, 2)[1]
    base = reprojected_view(inp.vertices, inp.faces, inp.vertex_colors, source_image=inp.image,
                            source_matte=inp.matte, source_camera=inp.camera, source_surface=inp.surface,
                            target_camera=camera, head_params=inp.head_params, weight=0.5)
    variant = reprojected_variant_view(inp, ViewTarget(camera, inp.head_params, inp.vertices), 0.5)
    np.testing.assert_array_equal(variant.mask, base.mask)
    np.testing.assert_array_equal(variant.loss_mask, base.loss_mask)
    np.testing.assert_array_equal(variant.known, base.known)
    np.testing.assert_allclose(variant.image, base.image, atol=1e-5)


def test_expression_variations_pose_their_own_views(models, scene):
    head, inp = scene
    cameras = [inp.camera, ring_cameras(inp, 3)[2]]
    targets = expression_targets(head, inp, cameras, variants=("jaw_open", "smile"))
    assert [t.variant for t in targets] == ["jaw_open", "jaw_open", "smile", "smile"]
    jaw = targets[0]
    assert jaw.head_params["jaw_pose"][0] == pytest.approx(inp.head_params["jaw_pose"][0] + 0.3)
    views = models.backend("tiny-sd", "cpu").synthesizer.synthesize_targets(inp, targets, weight=0.2)
    assert [v.name for v in views] == [t.name for t in targets]
    for view, target in zip(views, targets):
        assert view.head_params is target.head_params and view.meta["variant"] == target.variant
    # The open mouth shows surface the photo never saw: less of the frontal view is known.
    frontal_known = views[0].meta["known_fraction"]
    photo_pose = reprojected_variant_view(inp, ViewTarget(inp.camera, inp.head_params, inp.vertices), 0.2)
    assert frontal_known < photo_pose.meta["known_fraction"]

"""The pure-torch splat rasterizer against the dense N x pixels reference.

Both follow gsplat's classic rules independently (own projection, own compositing), so
agreement to float64 rounding on random scenes, with every kind of culled Gaussian,
several cameras, backgrounds, SH, depth and extra channels, checks the fast path's tile-
free pair enumeration, chunking, manual backward and meta.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compute_server.splats.rasterize import meta_for_gsplat_strategy, rasterize_splats
from compute_server.splats.sh import num_sh_bases
from shared.camera import look_at
from tests.raster_oracle import rasterize_splats_dense_reference

F64 = torch.float64


def make_cameras(n_cams: int, width: int, height: int, dtype=F64, distance: float = 2.0):
    """Cameras on a ring around the origin looking at it, focal ~ image width."""
    viewmats, Ks = [], []
    for i in range(n_cams):
        angle = 2 * math.pi * i / max(n_cams, 1) + 0.3
        eye = (distance * math.sin(angle), 0.4 * (i % 2) - 0.2, distance * math.cos(angle))
        viewmats.append(look_at(eye, (0.0, 0.0, 0.0)))
        f = 1.1 * width
        Ks.append(np.array([[f, 0, width / 2 + 0.37], [0, f * 0.97, height / 2 - 0.21], [0, 0, 1]]))
    return torch.tensor(np.stack(viewmats), dtype=dtype), torch.tensor(np.stack(Ks), dtype=dtype)


def random_scene(n: int, n_cams: int, width: int, height: int, *, seed: int = 0, dtype=F64,
                 channels: int = 3, sh_degree: int | None = None, per_camera_colors: bool = False,
                 with_culled: bool = True):
    """Random Gaussians around the origin plus, optionally, ones every culling rule removes."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 1.2
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.empty(n, 3, dtype=dtype).uniform_(math.log(0.01), math.log(0.12), generator=g))
    opacities = torch.empty(n, dtype=dtype).uniform_(0.05, 0.95, generator=g)
    viewmats, Ks = make_cameras(n_cams, width, height, dtype)
    if with_culled:
        cam0_centre = torch.linalg.inv(viewmats[0])[:3, 3]
        forward0 = viewmats[0][2, :3]
        means[0] = cam0_centre - 0.5 * forward0  # behind camera 0
        means[1] = cam0_centre + 0.005 * forward0  # in front of camera 0, but nearer than near_plane
        means[2] = torch.tensor([25.0, 0.0, 0.0], dtype=dtype)  # outside every image
        opacities[3] = 0.002  # below 1/255: never drawn
    lead = (n_cams,) if per_camera_colors else ()
    if sh_degree is None:
        colors = torch.rand(*lead, n, channels, generator=g, dtype=dtype)
    else:
        colors = torch.randn(*lead, n, num_sh_bases(3), 3, generator=g, dtype=dtype) * 0.4
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                viewmats=viewmats, Ks=Ks)


def _render_both(scene, width, height, **kwargs):
    """Render with both rasterizers on independent leaf copies; return outputs and leaves."""
    results = []
    for fn in (rasterize_splats, rasterize_splats_dense_reference):
        leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items() if k != "Ks"}
        bg = kwargs.get("backgrounds")
        extra = dict(kwargs)
        if bg is not None:
            extra["backgrounds"] = bg.clone().requires_grad_(True)
        out = fn(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
                 leaves["viewmats"], scene["Ks"], width, height, **extra)
        if bg is not None:
            leaves["backgrounds"] = extra["backgrounds"]
        results.append((out, leaves))
    return results


def _assert_match(results, atol=1e-9, grad_rtol=1e-7):
    (colors_a, alphas_a, meta_a), leaves_a = results[0]
    (colors_b, alphas_b, meta_b), leaves_b = results[1]
    assert colors_a.shape == colors_b.shape and alphas_a.shape == alphas_b.shape
    torch.testing.assert_close(alphas_a, alphas_b, atol=atol, rtol=0)
    torch.testing.assert_close(colors_a, colors_b, atol=atol * 10, rtol=0)
    assert torch.equal(meta_a["radii"], meta_b["radii"])
    visible = meta_a["radii"] > 0
    tol = 1e-7 if colors_a.dtype == F64 else 1e-4
    torch.testing.assert_close(meta_a["means2d"][visible], meta_b["means2d"][visible], atol=tol, rtol=tol)
    torch.testing.assert_close(meta_a["conics"][visible], meta_b["conics"][visible], atol=tol, rtol=tol)
    torch.testing.assert_close(meta_a["depths"], meta_b["depths"], atol=tol, rtol=tol)
    # Same random cotangents on both outputs; compare every input gradient.
    g = torch.Generator().manual_seed(7)
    w_colors = torch.randn(colors_a.shape, generator=g, dtype=colors_a.dtype)
    w_alphas = torch.randn(alphas_a.shape, generator=g, dtype=alphas_a.dtype)
    for (colors, alphas, _), _leaves in results:
        ((colors * w_colors).sum() + (alphas * w_alphas).sum()).backward()
    for name in leaves_a:
        grad_a, grad_b = leaves_a[name].grad, leaves_b[name].grad
        assert grad_a is not None and grad_b is not None, name
        scale = grad_b.abs().max().clamp_min(1e-12)
        assert (grad_a - grad_b).abs().max() / scale < grad_rtol, name
    return meta_a


CASES = {
    "one camera rgb": dict(n=150, n_cams=1, width=40, height=32, kwargs={}),
    "cameras backgrounds depth": dict(n=120, n_cams=3, width=33, height=27, bg=True,
                                      kwargs=dict(render_mode="RGB+ED")),
    "non-square across tiles": dict(n=200, n_cams=2, width=53, height=17, kwargs=dict(tile_size=8)),
    "six channels per camera": dict(n=100, n_cams=2, width=24, height=24, channels=6, per_camera=True,
                                    bg=True, kwargs={}),
    "near far radius clip": dict(n=150, n_cams=2, width=30, height=30,
                                 kwargs=dict(near_plane=1.8, far_plane=2.4, radius_clip=1.5, eps2d=0.1)),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_torch_path_matches_dense_reference(case):
    spec = CASES[case]
    scene = random_scene(spec["n"], spec["n_cams"], spec["width"], spec["height"], seed=len(case),
                         channels=spec.get("channels", 3), per_camera_colors=spec.get("per_camera", False))
    kwargs = dict(spec["kwargs"])
    if spec.get("bg"):
        kwargs["backgrounds"] = torch.rand(spec["n_cams"], spec.get("channels", 3), dtype=F64)
    meta = _assert_match(_render_both(scene, spec["width"], spec["height"], **kwargs))
    # The injected culled Gaussians really are culled, and most others are drawn.
    assert (meta["radii"][0, :4] == 0).all()
    assert meta["n_pairs"] > 0 and meta["backend"] == "torch"


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_sh_colors_match_dense_reference(sh_degree):
    scene = random_scene(80, 2, 28, 20, seed=10 + sh_degree, sh_degree=sh_degree,
                         per_camera_colors=(sh_degree == 2))
    _assert_match(_render_both(scene, 28, 20, sh_degree=sh_degree, backgrounds=torch.rand(2, 3, dtype=F64)))


def test_float32_matches_dense_reference():
    scene = {k: v.float() for k, v in random_scene(150, 2, 36, 28, seed=3).items()}
    _assert_match(_render_both(scene, 36, 28, render_mode="RGB+ED"), atol=2e-5, grad_rtol=2e-4)


def _opaque_stack_scene(n_layers: int = 40):
    """Many nearly opaque, large Gaussians in depth: compositing must stop at T <= 1e-4, and
    every 4th has opacity 1, so alpha hits the 0.999 clamp (no gradient through it)."""
    g = torch.Generator().manual_seed(5)
    means = torch.zeros(n_layers, 3, dtype=F64)
    means[:, 2] = torch.linspace(-0.4, 0.4, n_layers, dtype=F64)
    means[:, :2] = (torch.rand(n_layers, 2, generator=g, dtype=F64) - 0.5) * 0.2
    return dict(means=means, quats=torch.randn(n_layers, 4, generator=g, dtype=F64),
                scales=0.3 * torch.rand(n_layers, 3, generator=g, dtype=F64).add(0.5),
                opacities=torch.where(torch.arange(n_layers) % 4 == 0, 1.0,
                                      0.9 - 0.3 * torch.rand(n_layers, generator=g, dtype=F64)),
                colors=torch.rand(n_layers, 3, generator=g, dtype=F64), viewmats=make_cameras(1, 20, 16)[0],
                Ks=make_cameras(1, 20, 16)[1])


def test_transmittance_stop_matches_reference_and_saturates():
    scene = _opaque_stack_scene()
    results = _render_both(scene, 20, 16)
    _assert_match(results)
    alphas = results[0][0][1]
    assert alphas.max() > 0.9998  # a pixel reached the stop
    assert alphas.max() < 1.0 - 1e-5  # the stopping Gaussian itself was excluded (T stays > 1e-4-ish)


def test_alpha_clamp_passes_no_gradient():
    """Opaque Gaussians centred on pixel centres reach alpha = 0.999 there (clamped: no
    gradient from those pixels), partly covering each other."""
    means = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.05, 2.5], [-0.05, 0.1, 3.0]], dtype=F64)
    Ks = torch.tensor([[[40.0, 0.0, 8.5], [0.0, 40.0, 8.5], [0.0, 0.0, 1.0]]], dtype=F64)
    centres_px = means[:, :2] / means[:, 2:] * 40.0 + 8.5  # projected centres
    assert torch.allclose(centres_px[0], torch.tensor([8.5, 8.5], dtype=F64))  # on pixel (8, 8)'s centre
    scene = dict(means=means, quats=torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0.2, 0.0], [1.0, 0.0, 0.0, 0.3]],
                                                 dtype=F64),
                 scales=torch.tensor([[0.05, 0.03, 0.02], [0.06, 0.04, 0.05], [0.08, 0.08, 0.01]], dtype=F64),
                 opacities=torch.tensor([1.0, 1.0, 0.7], dtype=F64), colors=torch.rand(3, 3, dtype=F64),
                 viewmats=torch.eye(4, dtype=F64)[None], Ks=Ks)
    results = _render_both(scene, 17, 17, backgrounds=torch.rand(1, 3, dtype=F64))
    assert results[0][0][1][0, 8, 8, 0] > 0.999  # the clamp is active at the centre pixel
    _assert_match(results)


@pytest.mark.parametrize("scene_kind", ["random", "opaque"])
def test_memory_budget_gives_identical_results(scene_kind):
    scene = random_scene(150, 2, 32, 24, seed=11) if scene_kind == "random" else _opaque_stack_scene()
    width, height = (32, 24) if scene_kind == "random" else (20, 16)
    outputs = []
    middle = 60_000 if scene_kind == "random" else 600_000
    for budget in (None, middle, 2_000):  # one chunk; several chunks, partly cached; a few rows per chunk
        leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items() if k != "Ks"}
        colors, alphas, meta = rasterize_splats(
            leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"], leaves["colors"],
            leaves["viewmats"], scene["Ks"], width, height, render_mode="RGB+ED", max_memory_bytes=budget)
        (colors.square().sum() + alphas.sum()).backward()
        outputs.append((colors.detach(), alphas.detach(), {k: v.grad for k, v in leaves.items()}, meta["n_chunks"]))
    assert outputs[0][3] == 1 and 1 < outputs[1][3] < outputs[2][3]
    with torch.no_grad():  # inference keeps no per-chunk state or pair cache, same image
        colors, alphas, _ = rasterize_splats(*(scene[k] for k in ("means", "quats", "scales", "opacities", "colors",
                                                                  "viewmats", "Ks")), width, height,
                                             render_mode="RGB+ED", max_memory_bytes=middle)
    torch.testing.assert_close(colors, outputs[0][0], atol=1e-10, rtol=0)
    for colors, alphas, grads, _ in outputs[1:]:
        torch.testing.assert_close(colors, outputs[0][0], atol=1e-10, rtol=0)
        torch.testing.assert_close(alphas, outputs[0][1], atol=1e-12, rtol=0)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, outputs[0][2][name], atol=1e-8, rtol=1e-8)


def test_gradcheck_tiny_scene():
    """Analytic gradients (manual compositing backward + autograd projection) vs finite differences."""
    g = torch.Generator().manual_seed(2)
    n, width, height = 6, 9, 7
    viewmats, _ = make_cameras(2, width, height)
    Ks = torch.tensor([[20.0, 0, 4.6], [0, 21.0, 3.4], [0, 0, 1]], dtype=F64).expand(2, 3, 3)  # ~1-3 px Gaussians
    means = (torch.rand(n, 3, generator=g, dtype=F64) - 0.5) * 0.6
    quats = torch.randn(n, 4, generator=g, dtype=F64)
    scales = torch.rand(n, 3, generator=g, dtype=F64) * 0.08 + 0.04
    opacities = torch.rand(n, generator=g, dtype=F64) * 0.6 + 0.2
    colors = torch.rand(n, 3, generator=g, dtype=F64)
    backgrounds = torch.rand(2, 3, generator=g, dtype=F64)

    def render(means, quats, scales, opacities, colors, viewmats, backgrounds):
        out, alpha, _ = rasterize_splats(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                         backgrounds=backgrounds, render_mode="RGB+ED")
        return out, alpha

    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors, viewmats,
                                                        backgrounds)]
    alpha = render(*inputs)[1]
    assert 0.2 < alpha.mean() < 0.95  # a scene with overlaps and partial coverage
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_means2d_carries_screen_gradient_for_densification():
    scene = random_scene(60, 2, 32, 24, seed=4, dtype=torch.float32)
    params = {k: v.clone().requires_grad_(True) for k, v in scene.items() if k not in ("viewmats", "Ks")}
    colors, alphas, meta = rasterize_splats(params["means"], params["quats"], params["scales"],
                                            params["opacities"], params["colors"], scene["viewmats"],
                                            scene["Ks"], 32, 24)
    meta["means2d"].retain_grad()
    (colors.mean() + alphas.mean()).backward()
    grad2d = meta["means2d"].grad
    assert grad2d.shape == (2, 60, 2) and meta["radii"].shape == (2, 60) and meta["radii"].dtype == torch.int32
    culled = meta["radii"] == 0
    assert (grad2d[culled] == 0).all()
    assert (grad2d[~culled].norm(dim=-1) > 0).float().mean() > 0.8
    # gsplat's own densification bookkeeping accepts our meta (per-axis radii view).
    from gsplat.strategy import DefaultStrategy
    strategy = DefaultStrategy(refine_start_iter=10**6)
    state = strategy.initialize_state()
    strategy._update_state(params, state, meta_for_gsplat_strategy(meta), packed=False)
    visible_any = (~culled).any(0)
    assert (state["count"][visible_any] > 0).all() and (state["count"][~visible_any] == 0).all()
    assert torch.allclose(state["grad2d"][~visible_any], torch.zeros(1))


def test_culled_gaussians_do_not_change_the_image():
    scene = random_scene(50, 1, 24, 20, seed=9)
    full = rasterize_splats(**{k: scene[k] for k in ("means", "quats", "scales", "opacities", "colors",
                                                     "viewmats", "Ks")}, width=24, height=20)
    keep = torch.arange(50) >= 4  # drop the four injected culled Gaussians
    part = rasterize_splats(scene["means"][keep], scene["quats"][keep], scene["scales"][keep],
                            scene["opacities"][keep], scene["colors"][keep], scene["viewmats"], scene["Ks"], 24, 20)
    torch.testing.assert_close(full[0], part[0], atol=1e-12, rtol=0)
    assert (full[2]["radii"][0, :4] == 0).all()


def test_empty_view_renders_background():
    scene = random_scene(10, 1, 16, 12, seed=1, with_culled=False)
    far_away = scene["means"] + torch.tensor([50.0, 0.0, 0.0], dtype=F64)
    bg = torch.tensor([[0.2, 0.4, 0.6]], dtype=F64)
    colors, alphas, meta = rasterize_splats(far_away, scene["quats"], scene["scales"], scene["opacities"],
                                            scene["colors"], scene["viewmats"], scene["Ks"], 16, 12,
                                            backgrounds=bg, render_mode="RGB+ED")
    assert (meta["radii"] == 0).all() and (alphas == 0).all()
    torch.testing.assert_close(colors[..., :3], bg.view(1, 1, 1, 3).expand(1, 12, 16, 3))
    assert (colors[..., 3] == 0).all()


def test_invalid_inputs_and_backend_choice():
    scene = random_scene(5, 1, 8, 8, seed=0, with_culled=False)
    args = [scene[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
    with pytest.raises(ValueError, match="quats"):
        rasterize_splats(args[0], args[1][:, :3], *args[2:], 8, 8)
    with pytest.raises(ValueError, match="colors"):
        rasterize_splats(*args[:4], args[4][:3], *args[5:], 8, 8)
    with pytest.raises(ValueError, match="sh_degree"):
        rasterize_splats(*args[:4], torch.zeros(5, 16, 3, dtype=F64), *args[5:], 8, 8, sh_degree=4)
    with pytest.raises(ValueError, match="backgrounds"):
        rasterize_splats(*args, 8, 8, backgrounds=torch.zeros(1, 4, dtype=F64))
    with pytest.raises(ValueError, match="CUDA"):
        rasterize_splats(*args, 8, 8, backend="gsplat")
    with pytest.raises(ValueError, match="backend"):
        rasterize_splats(*args, 8, 8, backend="opengl")
    assert rasterize_splats(*args, 8, 8)[2]["backend"] == "torch"  # auto on CPU tensors

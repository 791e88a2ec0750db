"""gsplat's CUDA kernels against our torch rasterizer on the same inputs (needs a CUDA GPU).

Skipped on CPU-only machines. gsplat JIT-compiles its kernels on first use (CUDA toolkit
and ninja needed), so the first run can take minutes.
"""

from __future__ import annotations

import pytest
import torch

from compute_server.splats.rasterize import rasterize_splats
from tests.test_splat_raster import random_scene

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

WIDTH, HEIGHT, N_CAMS = 64, 48, 3


def _scene_on_cuda(seed: int, sh_degree: int | None):
    scene = random_scene(400, N_CAMS, WIDTH, HEIGHT, seed=seed, dtype=torch.float32, sh_degree=sh_degree)
    return {k: v.cuda() for k, v in scene.items()}


def _render(scene, backend: str, **kwargs):
    leaves = {k: v.clone().requires_grad_(True) for k, v in scene.items() if k not in ("viewmats", "Ks")}
    colors, alphas, meta = rasterize_splats(leaves["means"], leaves["quats"], leaves["scales"],
                                            leaves["opacities"], leaves["colors"], scene["viewmats"],
                                            scene["Ks"], WIDTH, HEIGHT, backend=backend, **kwargs)
    meta["means2d"].retain_grad()
    g = torch.Generator(device="cuda").manual_seed(3)
    weights = torch.randn(colors.shape, generator=g, device="cuda")
    ((colors * weights).sum() + (alphas * weights[..., :1]).sum()).backward()
    grads = {k: v.grad for k, v in leaves.items()}
    grads["means2d"] = meta["means2d"].grad
    return colors.detach(), alphas.detach(), meta, grads


def _close_almost_everywhere(a: torch.Tensor, b: torch.Tensor, atol: float, frac: float = 0.999):
    """Equal within atol for all but a sliver of entries (alpha-threshold flips under fast math)."""
    ok = (a - b).abs() <= atol + 1e-3 * b.abs()
    assert ok.float().mean() >= frac, f"only {ok.float().mean():.5f} of entries within {atol}"


@pytest.mark.parametrize("sh_degree", [None, 3])
def test_gsplat_and_torch_backends_agree(sh_degree):
    scene = _scene_on_cuda(seed=21 + (sh_degree or 0), sh_degree=sh_degree)
    backgrounds = torch.rand(N_CAMS, 3, device="cuda")
    kwargs = dict(sh_degree=sh_degree, backgrounds=backgrounds, render_mode="RGB+ED")
    ours = _render(scene, "torch", **kwargs)
    theirs = _render(scene, "gsplat", **kwargs)
    assert ours[2]["backend"] == "torch" and theirs[2]["backend"] == "gsplat"
    assert ours[0].shape == theirs[0].shape == (N_CAMS, HEIGHT, WIDTH, 4)
    _close_almost_everywhere(ours[1], theirs[1], atol=1e-4)  # alphas
    _close_almost_everywhere(ours[0][..., :3], theirs[0][..., :3], atol=1e-4)  # colours
    depth_ok = ours[1][..., 0] > 0.05  # expected depth is only meaningful where something was drawn
    _close_almost_everywhere(ours[0][..., 3][depth_ok], theirs[0][..., 3][depth_ok], atol=1e-3)
    # Same culling and (up to float rounding at ceil) the same radii.
    radii_ours, radii_theirs = ours[2]["radii_xy"], theirs[2]["radii_xy"]
    assert torch.equal(radii_ours > 0, radii_theirs > 0)
    assert ((radii_ours - radii_theirs).abs() <= 1).all()
    visible = ours[2]["radii"] > 0
    torch.testing.assert_close(ours[2]["means2d"][visible], theirs[2]["means2d"][visible], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(ours[2]["depths"][visible], theirs[2]["depths"][visible], atol=1e-5, rtol=1e-5)
    for name in ("means", "quats", "scales", "opacities", "colors", "means2d"):
        a, b = ours[3][name].flatten(), theirs[3][name].flatten()
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=0)
        rel = (a - b).norm() / b.norm().clamp_min(1e-12)
        assert cosine > 0.999 and rel < 0.03, f"{name}: cosine {cosine:.5f}, relative error {rel:.4f}"


def test_auto_backend_uses_gsplat_for_cuda_tensors_and_torch_path_runs_on_cuda():
    scene = _scene_on_cuda(seed=5, sh_degree=None)
    args = [scene[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")]
    _, _, meta = rasterize_splats(*args, WIDTH, HEIGHT)
    assert meta["backend"] == "gsplat"
    colors_cuda, alphas_cuda, _ = rasterize_splats(*args, WIDTH, HEIGHT, backend="torch")
    colors_cpu, alphas_cpu, _ = rasterize_splats(*[a.cpu() for a in args], WIDTH, HEIGHT, backend="torch")
    torch.testing.assert_close(colors_cuda.cpu(), colors_cpu, atol=1e-4, rtol=0)
    torch.testing.assert_close(alphas_cuda.cpu(), alphas_cpu, atol=1e-4, rtol=0)

"""One entry point for rendering Gaussian splats, whichever backend does the work.

``rasterize_splats`` mirrors ``gsplat.rasterization`` (classic mode, pinhole cameras,
unpacked results) so code written against it runs unchanged on a CUDA server (gsplat's
kernels) and on a CPU-only machine (our pure-torch rasterizer, ``raster_torch``). The two
agree to float32 rounding; see ``raster_torch``'s docstring for the few deliberate
differences and ``docs/rendering.md`` for conventions.

Rendering normals: pass per-camera features ``(C, N, 3 + 3)`` = RGB and camera-space
normals (``normals.splat_normals_world`` -> ``orient_towards`` -> ``normals_to_camera``),
with a zero background for the normal channels, then ``normals.normalize_rendered_normals``
divides the composited normals by alpha where alpha is above a threshold.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .raster_torch import DEFAULT_MAX_MEMORY_BYTES, composite_splats, project_splats
from .sh import MAX_SH_DEGREE, colors_for_cameras, num_sh_bases

RenderMode = Literal["RGB", "RGB+ED"]
Backend = Literal["auto", "torch", "gsplat"]


def rasterize_splats(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
    near_plane: float = 0.01, far_plane: float = 1e10, sh_degree: int | None = None,
    backgrounds: Tensor | None = None, render_mode: RenderMode = "RGB", eps2d: float = 0.3,
    radius_clip: float = 0.0, tile_size: int = 16, backend: Backend = "auto",
    max_memory_bytes: int | None = None,
) -> tuple[Tensor, Tensor, dict]:
    """Rasterize N Gaussians into C images.

    Args:
        means: (N, 3) centres in head space (metres).
        quats: (N, 4) rotations (w, x, y, z), not necessarily normalized.
        scales: (N, 3) standard deviations along the rotated axes, linear (already exp'ed).
        opacities: (N,) in [0, 1] (already sigmoid'ed).
        colors: (N, D) or (C, N, D) post-activation features (RGB, RGB + normals, ...), or
            SH coefficients (N, K, 3) / (C, N, K, 3) when ``sh_degree`` is given.
        viewmats: (C, 4, 4) world_to_camera, OpenCV camera axes.
        Ks: (C, 3, 3) pinhole intrinsics in pixels (pixel centres at integer + 0.5).
        width, height: image size in pixels.
        near_plane, far_plane: Gaussians whose centre depth is outside are culled (metres).
        sh_degree: evaluate SH bands 0..sh_degree (<= 3) for the view direction from the
            camera centre to each mean; colour = max(sh + 0.5, 0).
        backgrounds: (C, D) colour blended behind each image with weight 1 - alpha.
        render_mode: "RGB" or "RGB+ED" (expected depth sum(w z) / alpha, metres, appended
            as the last channel; 0 behind empty pixels, whatever the background).
        eps2d: low-pass added to the projected covariance's diagonal (pixels^2).
        radius_clip: cull Gaussians whose projected radii are both <= this (pixels).
        tile_size: gsplat's tile size (the torch path does not use tiles).
        backend: "auto" (gsplat for CUDA tensors, torch otherwise), "torch" or "gsplat".
        max_memory_bytes: working-set budget of the torch path (default 512 MiB).

    Returns:
        render_colors (C, H, W, D) or (C, H, W, D + 1) for "RGB+ED"; render_alphas
        (C, H, W, 1); meta with "means2d" (C, N, 2) (retain_grad() it before backward for
        densification), "radii" (C, N) int32 (max of the two axes, 0 = culled),
        "radii_xy" (C, N, 2) (gsplat 1.5's per-axis radii), "depths" (C, N), "conics"
        (C, N, 3), "opacities" (C, N), "width", "height", "n_cameras", "tile_size",
        "packed" (False), "gaussian_ids" (None: results are per camera and splat),
        "backend", and backend statistics.
    """
    check_splat_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                       sh_degree, backgrounds, render_mode)
    chosen = choose_backend(backend, means)
    if chosen == "gsplat":
        from .raster_gsplat import rasterize_splats_gsplat
        return rasterize_splats_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
            backgrounds=backgrounds, render_mode=render_mode, eps2d=eps2d,
            radius_clip=radius_clip, tile_size=tile_size)
    return rasterize_splats_torch(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
        backgrounds=backgrounds, render_mode=render_mode, eps2d=eps2d,
        radius_clip=radius_clip, tile_size=tile_size, max_memory_bytes=max_memory_bytes)


def rasterize_splats_torch(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
    near_plane: float = 0.01, far_plane: float = 1e10, sh_degree: int | None = None,
    backgrounds: Tensor | None = None, render_mode: RenderMode = "RGB", eps2d: float = 0.3,
    radius_clip: float = 0.0, tile_size: int = 16, max_memory_bytes: int | None = None,
) -> tuple[Tensor, Tensor, dict]:
    """The pure-torch backend of ``rasterize_splats`` (same arguments and results)."""
    projected = project_splats(means, quats, scales, opacities, viewmats, Ks, width, height,
                               near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
                               radius_clip=radius_clip)
    features = colors_for_cameras(colors, means, viewmats, sh_degree)
    features, backgrounds = append_depth_channel(features, projected.depths, backgrounds, render_mode)
    render_colors, render_alphas, stats = composite_splats(
        projected, opacities, features, backgrounds, width, height,
        max_memory_bytes or DEFAULT_MAX_MEMORY_BYTES)
    meta = build_meta(projected.means2d, projected.conics, projected.depths, projected.radii_xy,
                      opacities, width, height, tile_size, backend="torch")
    meta.update(stats)
    return finish_render_mode(render_colors, render_alphas, render_mode), render_alphas, meta


def choose_backend(backend: str, means: Tensor) -> str:
    """'auto' -> gsplat for CUDA tensors, torch otherwise; validate explicit choices."""
    if backend == "auto":
        return "gsplat" if means.is_cuda else "torch"
    if backend == "gsplat" and not means.is_cuda:
        raise ValueError("backend='gsplat' needs CUDA tensors; use backend='torch' (or 'auto') on CPU")
    if backend not in ("torch", "gsplat"):
        raise ValueError(f"unknown rasterizer backend {backend!r}; use 'auto', 'torch' or 'gsplat'")
    return backend


def check_splat_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                       colors: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                       sh_degree: int | None, backgrounds: Tensor | None, render_mode: str) -> None:
    """Raise ValueError naming the first argument whose shape or value is wrong."""
    n = means.shape[0] if means.dim() == 2 else -1
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be (N, 3), got {tuple(means.shape)}")
    for name, tensor, shape in (("quats", quats, (n, 4)), ("scales", scales, (n, 3)),
                                ("opacities", opacities, (n,))):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must be {shape}, got {tuple(tensor.shape)}")
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be (C, 4, 4), got {tuple(viewmats.shape)}")
    c = viewmats.shape[0]
    if tuple(Ks.shape) != (c, 3, 3):
        raise ValueError(f"Ks must be ({c}, 3, 3), got {tuple(Ks.shape)}")
    if not (int(width) > 0 and int(height) > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if render_mode not in ("RGB", "RGB+ED"):
        raise ValueError(f"render_mode must be 'RGB' or 'RGB+ED', got {render_mode!r}")
    if sh_degree is None:
        ok = (colors.dim() == 2 and colors.shape[0] == n) or (colors.dim() == 3 and colors.shape[:2] == (c, n))
        if not ok:
            raise ValueError(f"colors must be (N, D) or (C, N, D) with N={n}, C={c}, got {tuple(colors.shape)}")
        channels = colors.shape[-1]
    else:
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {sh_degree}")
        ok = ((colors.dim() == 3 and colors.shape[0] == n) or (colors.dim() == 4 and colors.shape[:2] == (c, n)))
        if not ok or colors.shape[-1] != 3 or colors.shape[-2] < num_sh_bases(sh_degree):
            raise ValueError(f"SH colors must be (N, K>={num_sh_bases(sh_degree)}, 3) or (C, N, K, 3), "
                             f"got {tuple(colors.shape)}")
        channels = 3
    if backgrounds is not None and tuple(backgrounds.shape) != (c, channels):
        raise ValueError(f"backgrounds must be ({c}, {channels}), got {tuple(backgrounds.shape)}")


def append_depth_channel(features: Tensor, depths: Tensor, backgrounds: Tensor | None,
                         render_mode: str) -> tuple[Tensor, Tensor | None]:
    """For "RGB+ED", append camera depth (C, N) as a last feature channel (background 0)."""
    if render_mode != "RGB+ED":
        return features, backgrounds
    features = torch.cat([features, depths.unsqueeze(-1)], dim=-1)
    if backgrounds is not None:
        backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(backgrounds.shape[0], 1)], dim=-1)
    return features, backgrounds


def finish_render_mode(render_colors: Tensor, render_alphas: Tensor, render_mode: str) -> Tensor:
    """Turn the accumulated depth channel into expected depth (divide by alpha, like gsplat)."""
    if render_mode != "RGB+ED":
        return render_colors
    return torch.cat([render_colors[..., :-1],
                      render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1)


def build_meta(means2d: Tensor, conics: Tensor, depths: Tensor, radii_xy: Tensor,
               opacities: Tensor, width: int, height: int, tile_size: int, backend: str) -> dict:
    """The ``meta`` dict every backend returns (see ``rasterize_splats``)."""
    n_cams = depths.shape[0]
    return {
        "means2d": means2d, "conics": conics, "depths": depths,
        "radii": radii_xy.max(dim=-1).values.to(torch.int32), "radii_xy": radii_xy,
        "opacities": opacities.expand(n_cams, -1) if opacities.dim() == 1 else opacities,
        "width": int(width), "height": int(height), "n_cameras": n_cams,
        "tile_size": int(tile_size), "packed": False, "gaussian_ids": None,
        "camera_ids": None, "backend": backend,
    }


def meta_for_gsplat_strategy(meta: dict) -> dict:
    """A view of ``meta`` for gsplat's densification strategies, which expect gsplat 1.5's
    per-axis radii (C, N, 2) under "radii"."""
    return {**meta, "radii": meta["radii_xy"]}

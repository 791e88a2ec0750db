"""The CUDA backend: gsplat's fused kernels behind ``rasterize_splats``' interface.

Why a wrapper: gsplat is imported lazily (it JIT-compiles its CUDA kernels on first use,
which must never happen at import time or on CPU-only machines), its absence on a GPU
server becomes an error a user can act on, and its results are reshaped into our meta
contract: unpacked (``packed=False``) so ``meta["means2d"]`` is (C, N, 2) exactly like the
torch path's, and ``meta["radii"]`` is (C, N) (gsplat 1.5 returns per-axis (C, N, 2),
kept as ``meta["radii_xy"]``).
"""

from __future__ import annotations

from torch import Tensor

from compute_server.errors import UserError

from .rasterize import build_meta

GSPLAT_REQUIREMENT = "gsplat==1.5.3"


def load_gsplat_rasterization():
    """Import ``gsplat.rasterization`` or raise a UserError that says how to fix it."""
    try:
        from gsplat import rasterization
    except Exception as exc:  # ImportError, or a broken build/toolchain raising anything
        raise UserError(
            "unavailable",
            f"The CUDA splat rasterizer needs {GSPLAT_REQUIREMENT}, which could not be loaded "
            f"({type(exc).__name__}: {exc}). Install it with pip install 'headsplat[gpu]' "
            f"(CUDA toolkit and ninja required for its first-use compile), or render with "
            f"backend='torch' / --device cpu.") from exc
    return rasterization


def rasterize_splats_gsplat(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
    near_plane: float = 0.01, far_plane: float = 1e10, sh_degree: int | None = None,
    backgrounds: Tensor | None = None, render_mode: str = "RGB", eps2d: float = 0.3,
    radius_clip: float = 0.0, tile_size: int = 16,
) -> tuple[Tensor, Tensor, dict]:
    """Same arguments and results as ``rasterize.rasterize_splats`` (CUDA tensors only)."""
    rasterization = load_gsplat_rasterization()
    render_colors, render_alphas, info = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height),
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d,
        sh_degree=sh_degree, packed=False, tile_size=tile_size, backgrounds=backgrounds,
        render_mode=render_mode, rasterize_mode="classic")
    radii_xy = info["radii"]
    if radii_xy.dim() == 2:  # gsplat < 1.5 returned one radius per Gaussian
        radii_xy = radii_xy.unsqueeze(-1).expand(*radii_xy.shape, 2)
    meta = build_meta(info["means2d"], info["conics"], info["depths"], radii_xy, opacities,
                      width, height, tile_size, backend="gsplat")
    meta["gsplat_info"] = info  # tile lists etc., for gsplat-specific tools
    return render_colors, render_alphas, meta

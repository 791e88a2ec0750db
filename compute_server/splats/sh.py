"""Real spherical harmonics for view-dependent splat colour (3DGS / gsplat convention).

Why here: the torch rasterizer, the dense reference and anything that bakes splat colours
for one view (PLY export previews, the Blender side) must turn SH coefficients into RGB
exactly the way gsplat does on the GPU, or the CPU and CUDA paths disagree.

Convention (identical to 3DGS and gsplat 1.5): real SH basis up to degree 3 with the
constants below, coefficient k of band l at index l*l + m (K = (degree + 1)**2 bases),
directions from the camera centre to the Gaussian mean, normalized. The rasterizers add
0.5 to the evaluated colour and clamp it at 0 (``colors_for_cameras``), so an SH DC term
of ``(rgb - 0.5) / SH_C0`` reproduces ``rgb``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for bands 0..degree."""
    return (degree + 1) ** 2


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis values at unit directions.

    dirs: (..., 3) unit vectors. Returns (..., (degree + 1)**2) in the coefficient order
    used by 3DGS/gsplat.
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    x, y, z = dirs.unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        bases += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2.0 * zz - xx - yy),
                  SH_C2[3] * xz, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        bases += [SH_C3[0] * y * (3.0 * xx - yy), SH_C3[1] * xy * z,
                  SH_C3[2] * y * (4.0 * zz - xx - yy),
                  SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                  SH_C3[4] * x * (4.0 * zz - xx - yy), SH_C3[5] * z * (xx - yy),
                  SH_C3[6] * x * (xx - 3.0 * yy)]
    return torch.stack(bases, dim=-1)


def eval_sh(degree: int, sh_coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Evaluate SH colour for viewing directions (no +0.5 offset, no clamp).

    degree: bands to use (0..3); coefficients beyond (degree + 1)**2 are ignored.
    sh_coeffs: (..., K, 3) with K >= (degree + 1)**2.
    dirs: (..., 3) directions (any length; normalized here, like gsplat).
    Returns (..., 3).
    """
    n_bases = num_sh_bases(degree)
    if sh_coeffs.shape[-1] != 3 or sh_coeffs.shape[-2] < n_bases:
        raise ValueError(f"sh_coeffs must be (..., K>={n_bases}, 3) for degree {degree}, "
                         f"got {tuple(sh_coeffs.shape)}")
    basis = sh_basis(degree, F.normalize(dirs, dim=-1))  # (..., n_bases)
    return (basis.unsqueeze(-1) * sh_coeffs[..., :n_bases, :]).sum(dim=-2)


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """DC coefficient that renders as ``rgb`` after the +0.5 offset. (..., 3) -> (..., 3)."""
    return (rgb - 0.5) / SH_C0


def colors_for_cameras(colors: Tensor, means: Tensor, viewmats: Tensor,
                       sh_degree: int | None) -> Tensor:
    """Per-camera splat features as the rasterizers composite them.

    colors: (N, D) or (C, N, D) post-activation features when ``sh_degree`` is None, else
        SH coefficients (N, K, 3) or (C, N, K, 3).
    means: (N, 3) head space; viewmats: (C, 4, 4) world_to_camera.
    Returns (C, N, D) (D = 3 for SH): SH colours get gsplat's ``clamp_min(sh + 0.5, 0)``.
    """
    n_cams, n_splats = viewmats.shape[0], means.shape[0]
    if sh_degree is None:
        if colors.dim() == 2:
            return colors.unsqueeze(0).expand(n_cams, n_splats, colors.shape[-1])
        return colors
    camera_centers = torch.linalg.inv(viewmats)[:, :3, 3]  # (C, 3)
    dirs = means.unsqueeze(0) - camera_centers.unsqueeze(1)  # (C, N, 3)
    if colors.dim() == 3:
        colors = colors.unsqueeze(0).expand(n_cams, *colors.shape)
    return torch.clamp_min(eval_sh(sh_degree, colors, dirs) + 0.5, 0.0)

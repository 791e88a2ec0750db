"""The simplest possible splat rasterizer: every Gaussian against every pixel.

Why: a reference that is easy to read and check by eye, written independently of the
fast paths (own projection, plain autograd, an (H*W, N) alpha matrix per camera), used by
the tests to validate ``raster_torch`` and by ``bench/raster.py`` as the baseline. It
follows gsplat's classic math rule for rule (see ``raster_torch``'s docstring). Memory is
O(H * W * N): tiny scenes only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from compute_server.splats.rasterize import append_depth_channel, build_meta, check_splat_inputs, finish_render_mode
from compute_server.splats.sh import colors_for_cameras

_ALPHA_MIN, _ALPHA_MAX, _T_MIN = 1.0 / 255.0, 0.999, 1e-4


def _quat_matrix(quats: Tensor) -> Tensor:
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _project_one_camera(means, covars, opacities, viewmat, K, width, height, near, far, eps2d,
                        radius_clip):
    """Means/covariances of one camera: returns means2d (N,2), cov2d (N,2,2), depth (N,), radii (N,2)."""
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    p_cam = means @ rot.T + trans
    cov_cam = rot @ covars @ rot.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    z = p_cam[:, 2]
    ok_depth = (z >= near) & (z <= far)
    z = torch.where(ok_depth, z, torch.ones_like(z))
    u, v = p_cam[:, 0] / z, p_cam[:, 1] / z
    # gsplat clamps the direction used in the Jacobian to 1.3x the half field of view.
    u_j = u.clamp(-(cx / fx + 0.15 * width / fx), (width - cx) / fx + 0.15 * width / fx)
    v_j = v.clamp(-(cy / fy + 0.15 * height / fy), (height - cy) / fy + 0.15 * height / fy)
    zero = torch.zeros_like(z)
    jac = torch.stack([torch.stack([fx / z, zero, -fx * u_j / z], -1),
                       torch.stack([zero, fy / z, -fy * v_j / z], -1)], -2)
    cov2d = jac @ cov_cam @ jac.transpose(1, 2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    means2d = torch.stack([fx * u + cx, fy * v + cy], -1)
    det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    with torch.no_grad():
        op = opacities.detach()
        extend = torch.sqrt(2 * torch.log(op.clamp_min(_ALPHA_MIN) * 255.0)).clamp_max(3.33)
        radii = torch.ceil(extend[:, None] * torch.sqrt(torch.diagonal(cov2d, dim1=1, dim2=2).clamp_min(0)))
        m = means2d.detach()
        keep = ok_depth & (det > 0) & (op >= _ALPHA_MIN) & (radii > radius_clip).any(-1)
        keep &= (m[:, 0] + radii[:, 0] > 0) & (m[:, 0] - radii[:, 0] < width)
        keep &= (m[:, 1] + radii[:, 1] > 0) & (m[:, 1] - radii[:, 1] < height)
        radii = (radii * keep[:, None]).to(torch.int32)
    return means2d, cov2d, p_cam[:, 2], radii


def _composite_one_camera(means2d, cov2d, depth, radii, opacities, features, background, width, height):
    """(H, W, D) colours and (H, W, 1) alpha from an (H*W, N) alpha matrix."""
    visible = (radii > 0).all(-1)
    order = torch.sort(torch.where(visible, depth.detach(), torch.full_like(depth, math.inf)), stable=True).indices
    order = order[visible[order]]
    grid = dict(dtype=means2d.dtype, device=means2d.device)
    ys, xs = torch.meshgrid(torch.arange(height, **grid), torch.arange(width, **grid), indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1) + 0.5  # (P, 2)
    delta = means2d[order][None, :, :] - pix[:, None, :]  # (P, N, 2)
    conic = torch.linalg.inv(cov2d[order])  # (N, 2, 2)
    power = 0.5 * torch.einsum("pni,nij,pnj->pn", delta, conic, delta)
    alpha = torch.clamp_max(opacities[order][None, :] * torch.exp(-power), _ALPHA_MAX)
    alpha = torch.where((power >= 0) & (alpha >= _ALPHA_MIN), alpha, torch.zeros_like(alpha))
    t_after = torch.cumprod(1 - alpha, dim=1)
    alpha = torch.where(t_after > _T_MIN, alpha, torch.zeros_like(alpha))  # stop before T <= 1e-4
    t_after = torch.cumprod(1 - alpha, dim=1)
    weights = alpha * torch.cat([torch.ones_like(alpha[:, :1]), t_after[:, :-1]], dim=1)
    image = weights @ features[order]
    t_final = t_after[:, -1:] if order.numel() else torch.ones_like(pix[:, :1])
    if background is not None:
        image = image + t_final * background
    return image.reshape(height, width, -1), (1 - t_final).reshape(height, width, 1)


def rasterize_splats_dense_reference(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
    near_plane: float = 0.01, far_plane: float = 1e10, sh_degree: int | None = None,
    backgrounds: Tensor | None = None, render_mode: str = "RGB", eps2d: float = 0.3,
    radius_clip: float = 0.0, tile_size: int = 16,
) -> tuple[Tensor, Tensor, dict]:
    """Same arguments and results as ``rasterize.rasterize_splats`` (tiny scenes only)."""
    check_splat_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                       sh_degree, backgrounds, render_mode)
    rot_scale = _quat_matrix(quats) * scales[:, None, :]
    covars = rot_scale @ rot_scale.transpose(1, 2)
    features_all = colors_for_cameras(colors, means, viewmats, sh_degree)
    outputs = {"img": [], "alpha": [], "means2d": [], "conics": [], "depths": [], "radii": []}
    for cam in range(viewmats.shape[0]):
        means2d, cov2d, depth, radii = _project_one_camera(
            means, covars, opacities, viewmats[cam], Ks[cam], width, height, near_plane, far_plane,
            eps2d, radius_clip)
        features, background = append_depth_channel(
            features_all[cam], depth, None if backgrounds is None else backgrounds[cam:cam + 1], render_mode)
        img, alpha = _composite_one_camera(means2d, cov2d, depth, radii, opacities, features,
                                           background, width, height)
        det = (cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] ** 2).clamp_min(1e-12)
        conics = torch.stack([cov2d[:, 1, 1], -cov2d[:, 0, 1], cov2d[:, 0, 0]], -1) / det[:, None]
        for key, value in (("img", img), ("alpha", alpha), ("means2d", means2d), ("depths", depth),
                           ("conics", conics),
                           ("radii", radii)):
            outputs[key].append(value)
    stacked = {k: torch.stack(v) for k, v in outputs.items()}
    meta = build_meta(stacked["means2d"], stacked["conics"], stacked["depths"], stacked["radii"],
                      opacities, width, height, tile_size, backend="dense")
    render_alphas = stacked["alpha"]
    return finish_render_mode(stacked["img"], render_alphas, render_mode), render_alphas, meta

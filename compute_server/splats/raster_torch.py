"""Pure-torch differentiable Gaussian-splat rasterizer (the CPU path).

Why: avatars are trained on CPU-only machines too (the "draft" preset), and tests need a
rasterizer that runs anywhere. It reproduces gsplat's "classic" 3DGS math so a model
trained on one backend renders the same on the other:

- EWA projection ``J W Sigma W^T J^T`` with gsplat's clamped Jacobian (the projected
  centre is clamped to 1.3x the field of view when building J), ``eps2d`` added to the
  diagonal of the 2-D covariance, conic = its inverse.
- gsplat 1.5's opacity-aware radii: ``extend = min(3.33, sqrt(2 ln(255 * opacity)))``,
  ``radius = ceil(extend * sqrt(Sigma2d_ii))`` per axis; culled (radius 0) when the depth is
  outside [near_plane, far_plane], det <= 0, opacity < 1/255, both radii <= radius_clip,
  or the box misses the image.
- Per pixel (centre at +0.5), Gaussians front to back by camera depth (ties by index):
  ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, ``alpha = min(0.999, o exp(-sigma))``,
  skipped when sigma < 0 or alpha < 1/255; compositing stops before the first Gaussian
  that would take the transmittance to <= 1e-4; background blended with T_final.

How it differs from gsplat (deliberately, results agree to float32 rounding):

- No tile lists. Each Gaussian enumerates, row by row of its opacity-aware box, the span
  of pixels where alpha >= 1/255 is possible (nothing outside the box can pass, so the
  result is the one tiles would give); the (pixel, Gaussian) pairs are stably sorted by
  pixel, so each pixel's list stays in depth order. For the few-pixel Gaussians of a head
  this evaluates ~10x fewer pairs than padded 16x16 tiles (a 13 px footprint touches ~3
  tiles = 768 evaluations instead of ~130). ``tile_size`` only feeds ``meta``.
- Transmittance is a segmented cumulative sum of ``log(1 - alpha)`` in float64 instead
  of a float32 running product; the 1e-4 stopping test can therefore flip for a pixel
  sitting exactly on the threshold, which changes that pixel by < 1e-4.
- Memory is bounded by processing the box rows of the depth-sorted Gaussians in chunks
  whose pair count fits half of ``max_memory_bytes`` (transmittance and a "done" flag per
  pixel carry over from chunk to chunk, as gsplat carries them from batch to batch; a big
  Gaussian's rows may straddle chunks). The other half caches contributing pairs for the
  backward pass, which recomputes the chunks that did not fit, back to front; for each of
  those, 4 bytes per pixel (float32) of carried-in state are kept.
- Backward is a custom autograd.Function with gsplat's analytic compositing gradients,
  vectorized with segmented suffix sums; projection and SH use autograd.
- No ``absgrad``, ``packed`` mode, antialiased mode or distortion models.

Gradients flow to means, quats, scales, opacities, colors, backgrounds and viewmats
(not Ks), through ``meta["means2d"]`` (retain_grad() it for densification, as gsplat's
strategies do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
TRANSMITTANCE_MIN = 1e-4
MAX_EXTEND = 3.33
# Peak bytes of working memory per (pixel, Gaussian) pair in one chunk (forward or
# backward): int64 ids and sort indices, a dozen float32/float64 per-pair values.
BYTES_PER_PAIR = 160
DEFAULT_MAX_MEMORY_BYTES = 512 * 2**20


@dataclass
class ProjectedSplats:
    """Gaussians projected into C cameras.

    means2d: (C, N, 2) pixel coordinates of the centres (differentiable).
    conics: (C, N, 3) upper triangle (a, b, c) of the inverse 2-D covariance, eps2d included.
    depths: (C, N) camera-space z in metres.
    radii_xy: (C, N, 2) int32 pixel half-extents of the opacity-aware box; 0 = culled.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii_xy: Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(..., 4) quaternions (w, x, y, z), any length -> (..., 3, 3) rotation matrices."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(quats.shape[:-1] + (3, 3))


def project_splats(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                   viewmats: Tensor, Ks: Tensor, width: int, height: int, *,
                   near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
                   radius_clip: float = 0.0) -> ProjectedSplats:
    """EWA-project N Gaussians into C pinhole cameras (gsplat's fully_fused_projection).

    means (N, 3) head space, quats (N, 4) wxyz, scales (N, 3) linear metres,
    opacities (N,) in [0, 1], viewmats (C, 4, 4) world_to_camera (OpenCV), Ks (C, 3, 3).
    """
    rot_w2c, trans_w2c = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_cam = torch.einsum("cij,nj->cni", rot_w2c, means) + trans_w2c[:, None, :]
    x, y, z = means_cam.unbind(-1)  # (C, N) each
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    in_depth = (z >= near_plane) & (z <= far_plane)
    z_safe = torch.where(in_depth, z, torch.ones_like(z))  # culled splats: finite, no grad
    # gsplat clamps the centre to 1.3x the half field of view when forming the Jacobian.
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)
    zeros = torch.zeros_like(z_safe)
    jac = torch.stack([fx / z_safe, zeros, -fx * tx / z_safe**2,
                       zeros, fy / z_safe, -fy * ty / z_safe**2], dim=-1).reshape(z.shape + (2, 3))
    # Sigma2d = (J W R S)(J W R S)^T: one (C, N, 2, 3) factor, symmetric by construction.
    rot_scale = quat_to_rotmat(quats) * scales[:, None, :]  # (N, 3, 3)
    factor = jac @ rot_w2c[:, None] @ rot_scale[None]  # (C, N, 2, 3)
    cov_a = (factor[..., 0, :] ** 2).sum(-1) + eps2d
    cov_b = (factor[..., 0, :] * factor[..., 1, :]).sum(-1)
    cov_c = (factor[..., 1, :] ** 2).sum(-1) + eps2d
    det = cov_a * cov_c - cov_b**2
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([cov_c / det_safe, -cov_b / det_safe, cov_a / det_safe], dim=-1)
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)
    with torch.no_grad():
        radii_xy = _opacity_aware_radii(means2d, cov_a, cov_c, opacities,
                                        in_depth & (det > 0), width, height, radius_clip)
    return ProjectedSplats(means2d=means2d, conics=conics, depths=z, radii_xy=radii_xy)


def _opacity_aware_radii(means2d: Tensor, cov_a: Tensor, cov_c: Tensor, opacities: Tensor,
                         valid: Tensor, width: int, height: int, radius_clip: float) -> Tensor:
    """(C, N, 2) int32 radii as gsplat 1.5 computes them with opacities given; 0 = culled."""
    opacity = opacities.detach().expand_as(cov_a)
    valid = valid & (opacity >= ALPHA_THRESHOLD)
    extend = torch.sqrt(2.0 * torch.log(torch.clamp_min(opacity, ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
    extend = torch.clamp_max(extend, MAX_EXTEND)
    radius_x = torch.ceil(extend * torch.sqrt(cov_a.detach().clamp_min(0)))
    radius_y = torch.ceil(extend * torch.sqrt(cov_c.detach().clamp_min(0)))
    mx, my = means2d.detach().unbind(-1)
    valid &= (radius_x > radius_clip) | (radius_y > radius_clip)
    valid &= (mx + radius_x > 0) & (mx - radius_x < width) & (my + radius_y > 0) & (my - radius_y < height)
    radii = torch.stack([radius_x, radius_y], dim=-1)
    return torch.where(valid[..., None], radii, torch.zeros_like(radii)).to(torch.int32)


@dataclass
class CompositePlan:
    """Which pixels each visible splat may touch, in compositing order, and the chunks.

    Per-splat tensors are indexed by position in ``order`` (depth order within each
    camera, cameras one after another); ``order`` holds flattened (C * N) splat ids.
    """

    order: Tensor  # (V,) splat ids
    x0: Tensor  # (V,) first pixel column of the box
    y0: Tensor  # (V,) first pixel row of the box
    box_w: Tensor  # (V,) box width in pixels (>= 1)
    box_h: Tensor  # (V,) box height in pixels (>= 1)
    pixel_base: Tensor  # (V,) first pixel id of the splat's camera image (camera * H * W)
    row_end: Tensor  # (V,) int64 cumulative box rows: splat v owns global rows [row_end - box_h, row_end)
    chunks: list[tuple[int, int]]  # [first, last) ranges of global box rows
    width: int
    height: int
    n_cameras: int
    max_pairs: int  # per chunk, from the memory budget
    keep_for_backward: bool = True  # False when no input needs a gradient: no snapshots, no cache
    stats: dict = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        return self.n_cameras * self.height * self.width


@torch.no_grad()
def plan_composite(projected: ProjectedSplats, width: int, height: int,
                   max_memory_bytes: int | None = None) -> CompositePlan:
    """Sort visible splats by depth per camera, box them in pixels, split into chunks."""
    n_cams, n_splats = projected.depths.shape
    device = projected.depths.device
    # int32 ids sort and gather faster; fall back to int64 for enormous batches.
    id_dtype = torch.int32 if max(n_cams * n_splats, n_cams * height * width) < 2**31 - 1 else torch.int64
    radii = projected.radii_xy.reshape(-1, 2).to(projected.means2d.dtype)
    visible = (radii > 0).all(dim=-1)
    depth_key = torch.where(visible.view(n_cams, n_splats), projected.depths.detach(),
                            torch.full_like(projected.depths, math.inf))
    depth_order = torch.sort(depth_key, dim=1, stable=True).indices  # ties: lower index first
    order = (depth_order + torch.arange(n_cams, device=device)[:, None] * n_splats).reshape(-1)
    order = order[visible[order]]
    centre = projected.means2d.detach().reshape(-1, 2)[order]
    # Pixel p (centre p + 0.5) lies in the box when |p + 0.5 - mean| <= radius.
    lo = torch.ceil(centre - radii[order] - 0.5).clamp_min(0)
    hi = torch.minimum(torch.floor(centre + radii[order] - 0.5),
                       torch.tensor([width - 1.0, height - 1.0], device=device, dtype=centre.dtype))
    extent = (hi - lo + 1).clamp_min(0).to(torch.int64)
    keep = (extent > 0).all(-1)
    order, lo, extent = order[keep], lo[keep].to(torch.int64), extent[keep]
    # Chunks are ranges of box rows (a splat's rows may straddle two chunks: each pixel
    # still gets its pairs in depth order), sized by their box widths.
    row_pairs_end = torch.cumsum(torch.repeat_interleave(extent[:, 0], extent[:, 1]), 0)
    # Half the budget for one chunk's working set, half for pairs cached for backward.
    max_pairs = max(1, (max_memory_bytes or DEFAULT_MAX_MEMORY_BYTES) // (2 * BYTES_PER_PAIR))
    chunks = _split_chunks(row_pairs_end, max_pairs)
    camera = torch.div(order, n_splats, rounding_mode="floor")
    plan = CompositePlan(order=order.to(id_dtype), x0=lo[:, 0], y0=lo[:, 1], box_w=extent[:, 0],
                         box_h=extent[:, 1], pixel_base=(camera * (height * width)).to(id_dtype),
                         row_end=torch.cumsum(extent[:, 1], 0), chunks=chunks, width=width, height=height,
                         n_cameras=n_cams, max_pairs=max_pairs)
    plan.stats.update(n_visible=int(order.numel()), n_chunks=len(chunks),
                      n_box_pairs=int(row_pairs_end[-1]) if row_pairs_end.numel() else 0)
    return plan


def _split_chunks(pair_end: Tensor, max_pairs: int) -> list[tuple[int, int]]:
    """Greedy [first, last) row ranges whose pair totals stay <= max_pairs (one row at least)."""
    chunks, first, n = [], 0, int(pair_end.numel())
    while first < n:
        before = int(pair_end[first - 1]) if first > 0 else 0
        last = max(int(torch.searchsorted(pair_end, before + max_pairs, right=True)), first + 1)
        chunks.append((first, last))
        first = last
    return chunks


@dataclass
class _ChunkPairs:
    """The contributing (pixel, splat) pairs of one chunk, sorted by pixel, then depth."""

    splat: Tensor  # (M,) flattened splat ids
    pixel: Tensor  # (M,) flattened (camera, row, col) pixel ids
    dx: Tensor  # (M,) mean2d.x - pixel centre x
    dy: Tensor  # (M,) mean2d.y - pixel centre y
    vis: Tensor  # (M,) exp(-sigma)
    alpha: Tensor  # (M,) min(0.999, opacity * vis)
    log_t_before: Tensor  # (M,) float64 log transmittance in front of the pair
    log_one_minus_alpha: Tensor  # (M,) float64
    done_pixels: Tensor  # pixel ids whose compositing stops inside this chunk

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in vars(self).values())


def _span_pairs(plan: CompositePlan, chunk: tuple[int, int], cols: dict[str, Tensor]):
    """The (pixel, splat) pairs of a chunk that can reach alpha >= 1/255, in depth order.

    Per box row, the pixels where ``o exp(-sigma) >= 1/255`` form one span (sigma is a
    convex quadratic in dx); it is solved in float64 and widened by 0.01 px, and the exact
    test is applied afterwards, so only pairs near the ellipse are evaluated (about 60%
    of the box on average). ``chunk`` is a range of global box rows. Returns the chunk's
    splat ids and, per pair, slot (index into those ids), pixel, dx, dy, sigma.
    """
    first_row, last_row = chunk
    lo = int(torch.searchsorted(plan.row_end, first_row, right=True))
    hi = int(torch.searchsorted(plan.row_end, last_row - 1, right=True)) + 1
    ids, id_dtype, dtype = plan.order[lo:hi], plan.order.dtype, cols["mx"].dtype
    device = ids.device
    starts = plan.row_end[lo:hi] - plan.box_h[lo:hi]
    begin = starts.clamp_min(first_row)
    rows_here = plan.row_end[lo:hi].clamp_max(last_row) - begin  # rows of each splat in this chunk
    n_rows = last_row - first_row
    row_slot = torch.repeat_interleave(torch.arange(hi - lo, device=device), rows_here, output_size=n_rows)
    row_in_box = torch.arange(n_rows, device=device) \
        - (torch.cumsum(rows_here, 0) - rows_here - (begin - starts)).index_select(0, row_slot)
    py = plan.y0[lo:hi].index_select(0, row_slot) + row_in_box
    splat_vals = {k: cols[k].index_select(0, ids).double().index_select(0, row_slot) for k in cols}
    dy = splat_vals["my"] - (py.double() + 0.5)
    a, b, c = splat_vals["ca"], splat_vals["cb"], splat_vals["cc"]
    sigma_max = torch.log(splat_vals["op"].clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)
    disc = (b * dy) ** 2 - a * (c * dy * dy - 2.0 * sigma_max)
    root = torch.sqrt(disc.clamp_min(0))
    centre_px = splat_vals["mx"] - 0.5  # px where dx == 0
    x0 = plan.x0[lo:hi].index_select(0, row_slot)
    x1 = x0 + plan.box_w[lo:hi].index_select(0, row_slot) - 1
    # dx = mean.x - (px + 0.5) lies in [(-b dy - root) / a, (-b dy + root) / a]
    first = torch.maximum(torch.ceil(centre_px - (root - b * dy) / a - 0.01), x0.double()).to(torch.int64)
    last = torch.minimum(torch.floor(centre_px + (root + b * dy) / a + 0.01), x1.double()).to(torch.int64)
    counts = torch.where(disc >= 0, (last - first + 1).clamp_min(0), torch.zeros_like(first))
    n_pairs = int(counts.sum())
    pair_row = torch.repeat_interleave(torch.arange(n_rows, device=device, dtype=id_dtype), counts,
                                       output_size=n_pairs)
    local = torch.arange(n_pairs, device=device, dtype=id_dtype) \
        - (torch.cumsum(counts, 0) - counts).to(id_dtype).index_select(0, pair_row)
    row_pixel = (plan.pixel_base[lo:hi].index_select(0, row_slot) + py * plan.width + first).to(id_dtype)
    pixel = row_pixel.index_select(0, pair_row) + local
    dx = (centre_px - first).to(dtype).index_select(0, pair_row) - local.to(dtype)
    dy_row = dy.to(dtype)
    # sigma = 0.5 a dx^2 + b dy dx + 0.5 c dy^2 with per-row coefficients
    quad_a = (0.5 * a).to(dtype).index_select(0, pair_row)
    quad_b = (b * dy).to(dtype).index_select(0, pair_row)
    quad_c = (0.5 * c * dy * dy).to(dtype).index_select(0, pair_row)
    sigma = (quad_a * dx + quad_b) * dx + quad_c
    slot = row_slot.to(id_dtype).index_select(0, pair_row)
    return ids, slot, pixel, dx, dy_row.index_select(0, pair_row), sigma


def _chunk_pairs(plan: CompositePlan, chunk: tuple[int, int], cols: dict[str, Tensor],
                 log_t: Tensor | None) -> _ChunkPairs:
    """Evaluate, filter and sort one chunk's pairs against the carried-in transmittance.

    log_t: (P,) log transmittance per pixel in front of this chunk, -inf for pixels whose
    compositing already stopped; None for the first chunk (all zero).
    """
    ids, slot, pixel, dx, dy, sigma = _span_pairs(plan, chunk, cols)
    opacity = cols["op"].index_select(0, ids)
    keep = (sigma >= 0) & (opacity.index_select(0, slot) * torch.exp(-sigma) >= ALPHA_THRESHOLD)
    if log_t is None:
        log_t = torch.zeros(plan.n_pixels, dtype=torch.float64, device=pixel.device)
    else:
        keep &= ~torch.isneginf(log_t).index_select(0, pixel)
    idx = torch.nonzero(keep).squeeze(1)
    # Pairs were generated in depth order; a stable sort by pixel keeps that order per pixel.
    pixel, perm = torch.sort(pixel.index_select(0, idx), stable=True)
    idx = idx.index_select(0, perm)
    slot, dx, dy = slot.index_select(0, idx), dx.index_select(0, idx), dy.index_select(0, idx)
    vis = torch.exp(-sigma.index_select(0, idx))
    alpha = torch.clamp_max(opacity.index_select(0, slot) * vis, MAX_ALPHA)
    log_1ma = torch.log1p(-alpha.to(torch.float64))
    log_t_before = log_t.index_select(0, pixel).to(torch.float64) + _segment_exclusive_cumsum(log_1ma, pixel)
    contributes = log_t_before + log_1ma > math.log(TRANSMITTANCE_MIN)
    splat = ids.index_select(0, slot)
    if bool(contributes.all()):
        return _ChunkPairs(splat, pixel, dx, dy, vis, alpha, log_t_before, log_1ma, pixel[:0])
    done_pixels = pixel[~contributes]
    sel = torch.nonzero(contributes).squeeze(1)
    return _ChunkPairs(*(t.index_select(0, sel) for t in (splat, pixel, dx, dy, vis, alpha, log_t_before,
                                                         log_1ma)), done_pixels)


def _segment_exclusive_cumsum(values: Tensor, segment: Tensor) -> Tensor:
    """Exclusive prefix sum of ``values`` restarting wherever the sorted ``segment`` changes."""
    if values.numel() == 0:
        return values
    exclusive = torch.cumsum(values, 0) - values
    is_first = torch.ones_like(segment, dtype=torch.bool)
    is_first[1:] = segment[1:] != segment[:-1]
    segment_index = torch.cumsum(is_first, 0, dtype=torch.int64) - 1
    return exclusive - exclusive[is_first].index_select(0, segment_index)


def _columns(means2d: Tensor, conics: Tensor, opacities: Tensor) -> dict[str, Tensor]:
    """Contiguous 1-D per-splat columns: 1-D gathers are far faster than row gathers on CPU."""
    return {"mx": means2d[:, 0].contiguous(), "my": means2d[:, 1].contiguous(),
            "ca": conics[:, 0].contiguous(), "cb": conics[:, 1].contiguous(),
            "cc": conics[:, 2].contiguous(), "op": opacities.contiguous()}


def _composite_forward(plan: CompositePlan, cols: dict[str, Tensor], color_cols: list[Tensor],
                       keep_for_backward: bool = True):
    """Run all chunks front to back.

    Returns per-channel sums (D, P), log T_final (P,) float64, the state carried into each
    chunk that the backward pass must recompute (log T with -inf where done, in the colour
    dtype: 4 bytes per pixel per such chunk in float32; None for the first chunk and for
    cached ones), and the pairs cached for the backward pass (None where recomputed).
    """
    n_pix, device, dtype = plan.n_pixels, color_cols[0].device, color_cols[0].dtype
    accum = torch.zeros(len(color_cols), n_pix, dtype=dtype, device=device)
    log_t = torch.zeros(n_pix, dtype=torch.float64, device=device)
    done, states, cache, n_pairs = None, [], [], 0
    cache_budget = plan.max_pairs * BYTES_PER_PAIR if keep_for_backward else -1
    for index, chunk in enumerate(plan.chunks):
        state = None
        if index > 0:
            state = (log_t if done is None else log_t.masked_fill(done, -math.inf)).to(dtype, copy=True)
        states.append(state if keep_for_backward else None)
        pairs = _chunk_pairs(plan, chunk, cols, state)
        weight = (pairs.alpha.to(torch.float64) * torch.exp(pairs.log_t_before)).to(dtype)
        for k, color in enumerate(color_cols):
            accum[k].index_add_(0, pairs.pixel, weight * color.index_select(0, pairs.splat))
        log_t.index_add_(0, pairs.pixel, pairs.log_one_minus_alpha)
        if pairs.done_pixels.numel():
            done = torch.zeros(n_pix, dtype=torch.bool, device=device) if done is None else done
            done[pairs.done_pixels] = True
        n_pairs += pairs.splat.numel()
        cache_budget -= pairs.nbytes
        cache.append(pairs if cache_budget >= 0 else None)
        if cache[-1] is not None:
            states[-1] = None  # cached pairs already hold their transmittance
    plan.stats["n_pairs"] = n_pairs
    return accum, log_t, states, cache


class _CompositeSplats(torch.autograd.Function):
    """Front-to-back alpha compositing of projected splats, chunked, with a manual backward.

    Inputs (S = C * N flattened splats): means2d (S, 2), conics (S, 3), opacities (S,),
    colors (S, D), backgrounds (C, D) or None; the plan is not differentiable.
    Outputs: colors (C*H*W, D) with the background blended in, alphas (C*H*W,).
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, backgrounds, plan: CompositePlan):
        cols = _columns(means2d, conics, opacities)
        color_cols = [colors[:, k].contiguous() for k in range(colors.shape[1])]
        accum, log_t, states, cache = _composite_forward(plan, cols, color_cols, plan.keep_for_backward)
        t_final = torch.exp(log_t)
        out = accum.t()
        if backgrounds is not None:
            bg = backgrounds.repeat_interleave(plan.height * plan.width, dim=0)  # (P, D)
            out = out + t_final.to(colors.dtype)[:, None] * bg
        ctx.plan, ctx.states, ctx.cache = plan, states, cache
        ctx.save_for_backward(means2d, conics, opacities, colors, backgrounds, t_final)
        return out.contiguous(), (1.0 - t_final).to(colors.dtype)

    @staticmethod
    def backward(ctx, grad_colors, grad_alphas):
        means2d, conics, opacities, colors, backgrounds, t_final = ctx.saved_tensors
        plan, dtype = ctx.plan, colors.dtype
        cols = _columns(means2d, conics, opacities)
        color_cols = [colors[:, k].contiguous() for k in range(colors.shape[1])]
        grad_colors = grad_colors.contiguous()
        grad_cols = [grad_colors[:, k].contiguous() for k in range(colors.shape[1])]
        # behind[p]: d loss / d (transmittance after the pairs handled so far) * that
        # transmittance, i.e. sum over later pairs of w_j (c_j . g_p) + T_final (bg . g_p - g_alpha_p).
        behind = -grad_alphas.to(torch.float64)
        grad_bg = None
        if backgrounds is not None:
            bg = backgrounds.repeat_interleave(plan.height * plan.width, dim=0)
            behind = behind + (bg * grad_colors).sum(-1).to(torch.float64)
            grad_bg = (grad_colors * t_final.to(dtype)[:, None]).view(plan.n_cameras, -1, colors.shape[1]).sum(1)
        behind = behind * t_final
        grads = {name: torch.zeros_like(col) for name, col in cols.items()}
        grad_color_cols = [torch.zeros_like(c) for c in color_cols]
        for chunk, state, cached in zip(reversed(plan.chunks), reversed(ctx.states), reversed(ctx.cache)):
            pairs = cached if cached is not None else _chunk_pairs(plan, chunk, cols, state)
            _chunk_backward(pairs, cols, color_cols, grad_cols, behind, grads, grad_color_cols)
        return (torch.stack([grads["mx"], grads["my"]], -1), torch.stack([grads["ca"], grads["cb"], grads["cc"]], -1),
                grads["op"], torch.stack(grad_color_cols, -1), grad_bg, None)


def _chunk_backward(p: _ChunkPairs, cols, color_cols, grad_cols, behind: Tensor, grads: dict,
                    grad_color_cols: list[Tensor]) -> None:
    """Accumulate one chunk's gradients (in place) and move ``behind`` in front of it.

    For pair i of pixel p: d/d alpha_i = T_i (c_i . g_p) - behind_i / (1 - alpha_i), where
    behind_i sums w_j (c_j . g_p) over the pairs behind i plus the final (background,
    alpha) term; alpha = min(0.999, o exp(-sigma)) passes no gradient where clamped.
    """
    dtype = p.alpha.dtype
    t_before = torch.exp(p.log_t_before)
    weight = (p.alpha.to(torch.float64) * t_before).to(dtype)
    color_dot_grad = torch.zeros_like(p.alpha)
    for color, grad, grad_color in zip(color_cols, grad_cols, grad_color_cols):
        grad_at_pair = grad.index_select(0, p.pixel)
        color_dot_grad += color.index_select(0, p.splat) * grad_at_pair
        grad_color.index_add_(0, p.splat, weight * grad_at_pair)
    weighted = weight.to(torch.float64) * color_dot_grad.to(torch.float64)
    chunk_total = torch.zeros_like(behind).index_add_(0, p.pixel, weighted)
    # pairs behind i within the chunk = chunk total - inclusive prefix
    inclusive_prefix = _segment_exclusive_cumsum(weighted, p.pixel) + weighted
    behind_pair = (chunk_total + behind).index_select(0, p.pixel) - inclusive_prefix
    behind += chunk_total
    one_minus_alpha = 1.0 - p.alpha.to(torch.float64)
    grad_alpha = (t_before * color_dot_grad.to(torch.float64) - behind_pair / one_minus_alpha).to(dtype)
    opacity = cols["op"].index_select(0, p.splat)
    grad_alpha = grad_alpha * (opacity * p.vis <= MAX_ALPHA).to(dtype)
    grad_sigma = -opacity * p.vis * grad_alpha
    ca, cb, cc = (cols[k].index_select(0, p.splat) for k in ("ca", "cb", "cc"))
    grads["op"].index_add_(0, p.splat, p.vis * grad_alpha)
    grads["mx"].index_add_(0, p.splat, grad_sigma * (ca * p.dx + cb * p.dy))
    grads["my"].index_add_(0, p.splat, grad_sigma * (cb * p.dx + cc * p.dy))
    grads["ca"].index_add_(0, p.splat, 0.5 * grad_sigma * p.dx * p.dx)
    grads["cb"].index_add_(0, p.splat, grad_sigma * p.dx * p.dy)
    grads["cc"].index_add_(0, p.splat, 0.5 * grad_sigma * p.dy * p.dy)


def composite_splats(projected: ProjectedSplats, opacities: Tensor, colors: Tensor,
                     backgrounds: Tensor | None, width: int, height: int,
                     max_memory_bytes: int | None = None) -> tuple[Tensor, Tensor, dict]:
    """Alpha-composite projected splats into images.

    opacities (N,) or (C, N); colors (C, N, D); backgrounds (C, D) or None.
    Returns colors (C, H, W, D), alphas (C, H, W, 1) and the plan's statistics.
    """
    n_cams, n_splats = projected.depths.shape
    plan = plan_composite(projected, width, height, max_memory_bytes)
    inputs = (projected.means2d.reshape(-1, 2), projected.conics.reshape(-1, 3),
              opacities.expand(n_cams, n_splats).reshape(-1), colors.reshape(n_cams * n_splats, -1), backgrounds)
    plan.keep_for_backward = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    out_colors, out_alphas = _CompositeSplats.apply(*inputs, plan)
    return (out_colors.view(n_cams, height, width, -1), out_alphas.view(n_cams, height, width, 1),
            plan.stats)

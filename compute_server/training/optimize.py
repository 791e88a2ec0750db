"""Optimize triangle-bound Gaussians against training views (GaussianAvatars / GAF recipe).

Per iteration one training view is drawn (the photo most often, its mirror and the
synthesized views otherwise), the avatar is posed with that view's head parameters and
rendered, and the loss is

    w_view * [ (1 - l) L1 + l D-SSIM  +  w_alpha |alpha - matte|  +  w_n (1 - |cos|)(normals) ]
    + w_pos L_pos + w_scale L_scale

(GAF eq. 5-8 with GaussianAvatars' thresholds, GeoDiff4D's normal term), restricted to
each view's loss mask. The photo's own expression, jaw and eyes are fine-tuned with small
learning rates. Densification follows ``strategy.BindingDensifyStrategy``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from shared.splat_format import SH_C0

from ..camera_torch import stack_cameras
from ..head.model import HeadModel, HeadParams
from ..splats.binding import triangle_frames
from ..splats.losses import (masked_mean, normal_consistency_loss, photometric_loss, position_regularizer, psnr,
                            scale_regularizer, ssim_map)
from ..splats.model import SplatModel, expression_code
from ..splats.render_avatar import render_avatar
from ..splats.strategy import BindingDensifyStrategy
from ..views.records import TrainingView
from ..views.sampling import head_centre, random_views
from ..views.synthesis import DenoisingPrior, PriorRequest

Progress = Callable[[float, str, "bytes | None"], None]


@dataclass
class OptimizeSettings:
    iterations: int = 6000
    sh_increase_every: int = 1000       # grow the SH degree by one every this many iterations
    lr_means: float = 5e-3              # local units (multiples of the triangle scale), decays to lr_means_final
    lr_means_final: float = 5e-5
    lr_scales: float = 1.7e-2
    lr_quats: float = 1e-3
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    lr_opacities: float = 5e-2
    lr_expr: float = 1e-3               # fine-tuning the photos' own head parameters (GAF)
    lr_joints: float = 1e-5
    refine_pose: bool = False           # also fine-tune each input's head rotation and translation (GAF, clips)
    lr_translation: float = 1e-6        # metres, when refine_pose (GAF section 5)
    max_eval_views: int = 16            # final metrics on at most this many inputs, spread over them
    ssim_weight: float = 0.2
    alpha_weight: float = 0.2
    normal_weight: float = 0.02
    normal_start_fraction: float = 0.1
    pos_weight: float = 0.01
    pos_threshold: float = 1.0
    scale_weight: float = 1.0
    scale_threshold: float = 0.6
    input_probability: float = 0.5      # share of iterations on the photos
    mirror_probability: float = 0.15    # ... on their mirror images (the rest: synthesized views)
    prior_probability: float = 0.2      # ... on the denoising prior's pseudo views, when a prior is used
    prior_start_fraction: float = 0.1   # no prior views before this share of the iterations
    random_background: bool = True
    # Gaussians on these regions keep view-independent colour (their higher SH bands stay
    # zero): no photo sees them, or they turn against the head (eyes, jaw's teeth), so any
    # view-dependent colour learned at the photo's pose would be a glossy blotch elsewhere.
    view_independent_regions: tuple = ("mouth_interior", "teeth", "eyeball", "iris", "eye_socket")
    # > 0: each Gaussian's colour also moves linearly with the view's expression code (issue 12,
    # item 4: smile lines, teeth and the mouth's inside where a clip shows them), with this
    # weight on the mean squared colour change it makes at that code (the term starts at zero)
    expression_colour_weight: float = 0.0
    # progressive resolution (nerfstudio's splatfacto schedule, one step): the first
    # ``coarse_fraction`` of the iterations render and compare every view at 1/coarse_factor of
    # its size. The CPU rasterizer's cost grows with the (pixel, Gaussian) pairs, so such an
    # iteration costs about a third of a full one (docs/results.md), while the coarse colours
    # and shape it learns are what those early iterations learn anyway; fine detail comes after.
    coarse_fraction: float = 0.0
    coarse_factor: int = 2
    densify: BindingDensifyStrategy = field(default_factory=BindingDensifyStrategy)
    preview_every: int = 50
    preview_size: int = 160


@dataclass
class OptimizeResult:
    model: SplatModel
    head_params: list[dict]         # the training views' head parameters after fine-tuning
    metrics: dict
    iterations: int
    seconds: float


class _PreparedView:
    """A TrainingView as tensors, with its head parameters (fine-tuned for photos)."""

    def __init__(self, view: TrainingView, head_model: HeadModel, device, trainable: bool, pose: bool = False):
        t = lambda a: None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
        self.view = view
        self.image, self.mask = t(view.image)[None], t(view.mask)[None]
        self.loss_mask = t(view.loss_mask)[None] if view.loss_mask is not None else None
        self.normals = t(view.normals)[None] if view.normals is not None else None
        self.viewmats, self.Ks = stack_cameras([view.camera], device=device)
        self.width, self.height = view.camera.width, view.camera.height
        self.params = HeadParams.from_numpy({k: np.asarray(v)[None] for k, v in view.head_params.items()}, device=device)
        self.trainable = trainable
        if trainable:
            for name in ("expr", "jaw_pose", "eyes_pose") + (("rotation", "translation") if pose else ()):
                setattr(self.params, name, torch.nn.Parameter(getattr(self.params, name).clone()))
        self._head_model = head_model
        self._vertices = None
        self._scaled: dict[int, _ViewTargets] = {}

    def targets(self, factor: int) -> "_ViewTargets":
        """The view's images and camera at 1/factor of its size (area-averaged), cached."""
        if factor <= 1:
            return _ViewTargets(self.image, self.mask, self.loss_mask, self.normals, self.Ks, self.width, self.height)
        if factor not in self._scaled:
            self._scaled[factor] = _downscaled(self, factor)
        return self._scaled[factor]

    def vertices(self) -> torch.Tensor:
        if self.trainable or self._vertices is None:
            v = self._head_model(self.params).vertices[0]
            if not self.trainable:
                self._vertices = v.detach()
            return v
        return self._vertices


@dataclass
class _ViewTargets:
    """What one iteration renders and compares against: a view's targets at one resolution."""

    image: torch.Tensor                 # (1, H, W, 3)
    mask: torch.Tensor                  # (1, H, W)
    loss_mask: torch.Tensor | None
    normals: torch.Tensor | None        # (1, H, W, 3) unit camera-space normals, zero where none
    Ks: torch.Tensor                    # (1, 3, 3)
    width: int
    height: int


def _downscaled(view: "_PreparedView", factor: int) -> _ViewTargets:
    """Area-average a view's images to 1/factor of its size, with its camera resized to match
    (intrinsics scaled with the image: pixel edges map onto pixel edges, so the render and the
    averaged pixels line up)."""
    width, height = max(1, round(view.width / factor)), max(1, round(view.height / factor))

    def pool(a: torch.Tensor | None) -> torch.Tensor | None:
        if a is None:
            return None
        chw = a.permute(0, 3, 1, 2) if a.dim() == 4 else a[:, None]
        out = torch.nn.functional.interpolate(chw, size=(height, width), mode="area")
        return out.permute(0, 2, 3, 1).contiguous() if a.dim() == 4 else out[:, 0].contiguous()

    normals = pool(view.normals)
    if normals is not None:  # averaged unit vectors are shorter; pixels with none stay zero
        length = torch.linalg.norm(normals, dim=-1, keepdim=True)
        normals = torch.where(length > 1e-3, normals / length.clamp(min=1e-3), torch.zeros_like(normals))
    _, Ks = stack_cameras([view.view.camera.resized(width, height)], device=view.Ks.device)
    return _ViewTargets(pool(view.image), pool(view.mask), pool(view.loss_mask), normals, Ks, width, height)


def optimize_splats(model: SplatModel, head_model: HeadModel, views: Sequence[TrainingView],
                    settings: OptimizeSettings, *, seed: int = 0, progress: Progress | None = None,
                    prior: DenoisingPrior | None = None,
                    check_cancel: Callable[[], None] | None = None,
                    preview_view: TrainingView | None = None) -> OptimizeResult:
    """Train ``model`` in place on ``views``; returns it with metrics on the photo views.

    prior: GAF's iteratively-denoised pseudo ground truth; every ``prior.refresh_every``
    iterations the avatar is rendered at random novel views, the prior turns the renders
    into pseudo ground truth, and those views join the training set (replacing the last).
    preview_view: a view never trained on (a held-out clip frame) whose real image the
    progress previews show beside the avatar's render of it, so the user judges the avatar
    on something it has not learned; without it the preview is the first view's render.
    """
    started = time.perf_counter()
    device = model.device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    faces = head_model.faces
    prepared = [_PreparedView(v, head_model, device, trainable=v.kind == "input", pose=settings.refine_pose)
                for v in views]
    groups = _view_groups(prepared, settings)
    if settings.expression_colour_weight > 0 and not model.has_expression_colour:
        model.add_expression_colour(_code(prepared[0]).numel())
    optimizers = _make_optimizers(model, settings)
    head_optimizer = _head_optimizer(prepared, settings)
    strategy = settings.densify
    state = strategy.initialize_state(model)
    flat_faces = _region_faces(head_model, settings.view_independent_regions).to(device)
    _zero_view_dependence(model, flat_faces)
    with torch.no_grad():
        rest = prepared[0].vertices()
        head_size = float(torch.linalg.norm(rest.max(0).values - rest.min(0).values))
    means_decay = (settings.lr_means_final / settings.lr_means) ** (1.0 / max(1, settings.iterations))
    report = progress or (lambda f, m, p: None)
    photo = next(p for p in prepared if p.view.kind == "input")
    shown = _PreparedView(preview_view, head_model, device, trainable=False) if preview_view is not None else None
    t0 = time.perf_counter()
    for step in range(settings.iterations):
        if prior is not None and step >= settings.prior_start_fraction * settings.iterations \
                and (step - int(settings.prior_start_fraction * settings.iterations)) % prior.refresh_every == 0:
            prepared = [p for p in prepared if p.view.kind != "prior"]
            prior_views = _prior_views(model, photo, faces, prior, step, seed, rng, check_cancel)
            prepared += [_PreparedView(v, head_model, device, trainable=False) for v in prior_views]
            groups = _view_groups(prepared, settings)
        view = prepared[_pick(groups, rng)]
        coarse = step < settings.coarse_fraction * settings.iterations
        at = view.targets(settings.coarse_factor if coarse else 1)
        sh_degree = min(step // max(1, settings.sh_increase_every), model.sh_degree)
        background = torch.as_tensor(rng.random(3) if settings.random_background else np.zeros(3),
                                     dtype=torch.float32, device=device)
        use_normals = (settings.normal_weight > 0 and at.normals is not None
                       and step >= settings.normal_start_fraction * settings.iterations)
        vertices = view.vertices()
        code = _code(view)
        out = render_avatar(model, vertices, faces, view.viewmats, at.Ks, at.width, at.height,
                            background=background, with_normals=use_normals, sh_degree=sh_degree,
                            colour_code=code)
        out.meta["means2d"].retain_grad()
        target = at.image * at.mask[..., None] + background * (1 - at.mask[..., None])
        loss = photometric_loss(out.rgb, target, at.loss_mask, settings.ssim_weight)
        loss = loss + settings.alpha_weight * masked_mean((out.alpha - at.mask).abs(), at.loss_mask)
        if use_normals:
            normal_mask = out.normals_valid.float() * at.mask
            if at.loss_mask is not None:
                normal_mask = normal_mask * at.loss_mask
            loss = loss + settings.normal_weight * normal_consistency_loss(out.normals, at.normals, normal_mask)
        loss = loss * view.view.weight
        if settings.expression_colour_weight > 0:   # the model has the term: added at the start
            change = SH_C0 * model.expression_dc(code)           # the colour change at this expression
            loss = loss + settings.expression_colour_weight * change.square().sum(-1).mean()
        loss = loss + settings.pos_weight * position_regularizer(model.params["means"], settings.pos_threshold)
        loss = loss + settings.scale_weight * scale_regularizer(model.params["scales"], settings.scale_threshold)
        loss.backward()
        with torch.no_grad():
            _, _, k = triangle_frames(vertices.detach()[None], faces)
            world_scales = torch.exp(model.params["scales"]) * k[0, model.binding][:, None]
        strategy.step_post_backward(model, optimizers, state, step, out.meta, world_scales, head_size,
                                    head_model.n_faces)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        _zero_view_dependence(model, flat_faces)
        if head_optimizer is not None:
            head_optimizer.step()
            head_optimizer.zero_grad(set_to_none=True)
        for group in optimizers["means"].param_groups:
            group["lr"] *= means_decay
        if step % 10 == 0 or step == settings.iterations - 1:
            preview = None
            if settings.preview_every and step % settings.preview_every == 0:
                preview = (_preview_png(model, shown, faces, settings.preview_size, beside_target=True)
                           if shown is not None else _preview_png(model, prepared[0], faces, settings.preview_size))
            rate = (step + 1) / max(time.perf_counter() - t0, 1e-9)
            report((step + 1) / settings.iterations,
                   f"iteration {step + 1}/{settings.iterations}, {model.count} Gaussians, {rate:.1f} it/s", preview)
    inputs = [p for p in prepared if p.view.kind == "input"]
    spread = np.unique(np.linspace(0, len(inputs) - 1, num=min(len(inputs), settings.max_eval_views)).round().astype(int))
    metrics = evaluate_views(model, [inputs[i] for i in spread] if inputs else [], faces)
    metrics["gaussians"] = model.count
    metrics["iterations_per_s"] = settings.iterations / max(time.perf_counter() - t0, 1e-9)
    head_params = [{k: v.detach().cpu().numpy()[0] for k, v in p.params.__dict__.items()} for p in prepared
                   if p.view.kind == "input"]
    return OptimizeResult(model=model, head_params=head_params, metrics=metrics, iterations=settings.iterations,
                          seconds=time.perf_counter() - started)


def _region_faces(head_model: HeadModel, names: Sequence[str]) -> torch.Tensor:
    """(F,) bool: the head model's faces in any of the regions ``names``."""
    region_ids = [head_model.region_names.index(n) for n in names if n in head_model.region_names]
    return torch.isin(head_model.face_region.long(), torch.as_tensor(region_ids, dtype=torch.long,
                                                                       device=head_model.face_region.device))


@torch.no_grad()
def _zero_view_dependence(model: SplatModel, flat_faces: torch.Tensor) -> None:
    """Set the higher SH bands of the Gaussians bound to ``flat_faces`` (F,) bool to zero."""
    if model.params["shN"].shape[1] and flat_faces.any():
        model.params["shN"][flat_faces[model.binding]] = 0.0


def _view_groups(prepared: list[_PreparedView], settings: OptimizeSettings) -> list[tuple[float, list[int]]]:
    """(probability, view indices) per group; empty groups give their share to the others."""
    by_kind = {"input": [], "mirror": [], "prior": [], "other": []}
    for i, p in enumerate(prepared):
        by_kind[p.view.kind if p.view.kind in by_kind else "other"].append(i)
    prior_share = settings.prior_probability if by_kind["prior"] else 0.0
    shares = {"input": settings.input_probability, "mirror": settings.mirror_probability, "prior": prior_share,
              "other": max(0.0, 1.0 - settings.input_probability - settings.mirror_probability - prior_share)}
    groups = [(shares[k], idx) for k, idx in by_kind.items() if idx and shares[k] > 0]
    if not groups:
        raise ValueError("no training views to optimize against")
    total = sum(s for s, _ in groups)
    return [(s / total, idx) for s, idx in groups]


def _pick(groups, rng: np.random.Generator) -> int:
    u = rng.random()
    for share, idx in groups:
        if u < share:
            return idx[int(rng.integers(len(idx)))]
        u -= share
    idx = groups[-1][1]
    return idx[int(rng.integers(len(idx)))]


def _make_optimizers(model: SplatModel, s: OptimizeSettings) -> dict[str, torch.optim.Optimizer]:
    """One Adam per parameter, the layout gsplat's strategy ops keep in sync."""
    lrs = {"means": s.lr_means, "scales": s.lr_scales, "quats": s.lr_quats, "opacities": s.lr_opacities,
           "sh0": s.lr_sh0, "shN": s.lr_shN, "expression_colour": s.lr_sh0}
    return {name: torch.optim.Adam([{"params": model.params[name], "lr": lr, "name": name}], eps=1e-15)
            for name, lr in lrs.items() if name in model.params}


def _code(view: "_PreparedView") -> torch.Tensor:
    """(E + 3,) the expression code of a view's (possibly refined) head parameters."""
    return expression_code(view.params.expr[0], view.params.jaw_pose[0])


def _head_optimizer(prepared: list[_PreparedView], s: OptimizeSettings) -> torch.optim.Optimizer | None:
    groups = []
    for p in prepared:
        if p.trainable:
            groups.append({"params": [p.params.expr], "lr": s.lr_expr})
            groups.append({"params": [p.params.jaw_pose, p.params.eyes_pose], "lr": s.lr_joints})
            if isinstance(p.params.rotation, torch.nn.Parameter):
                groups.append({"params": [p.params.rotation], "lr": s.lr_joints})
                groups.append({"params": [p.params.translation], "lr": s.lr_translation})
    return torch.optim.Adam(groups) if groups else None


@torch.no_grad()
def _prior_views(model: SplatModel, photo: _PreparedView, faces: torch.Tensor, prior: DenoisingPrior, step: int,
                 seed: int, rng: np.random.Generator, check_cancel) -> list[TrainingView]:
    """Render the avatar at random novel views (the photo's pose) and let the prior turn the
    renders into pseudo ground truth (GAF section 4.2)."""
    from ..views.surface import render_surface

    vertices = photo.vertices().detach()
    verts_np = vertices.cpu().numpy()
    cameras = [c for _, _, c in random_views(photo.view.camera, head_centre(verts_np), prior.views_per_refresh, rng)]
    viewmats, Ks = stack_cameras(cameras, device=vertices.device)
    width, height = cameras[0].width, cameras[0].height
    out = render_avatar(model, vertices, faces, viewmats, Ks, width, height,
                        background=torch.ones(3, device=vertices.device),
                        colour_code=_code(photo))
    surfaces = render_surface(verts_np, faces.cpu().numpy(), cameras)
    request = PriorRequest(
        renders=out.rgb.clamp(0, 1).cpu().numpy(), alphas=out.alpha.cpu().numpy(),
        normal_maps=np.stack([s.normals_camera for s in surfaces]).astype(np.float32),
        mesh_masks=np.stack([s.mask for s in surfaces]).astype(np.float32), cameras=cameras,
        reference_image=photo.view.image, reference_mask=photo.view.mask, step=step, seed=seed + step)
    targets = prior.pseudo_ground_truth(request, check_cancel or (lambda: None))
    views = []
    for k, camera in enumerate(cameras):
        mask = np.maximum(request.mesh_masks[k], (request.alphas[k] > 0.5).astype(np.float32))
        views.append(TrainingView(image=np.clip(targets[k], 0, 1).astype(np.float32), mask=mask, camera=camera,
                                  head_params=photo.view.head_params, weight=prior.weight, loss_mask=mask,
                                  normals=surfaces[k].normals_camera.astype(np.float32), kind="prior",
                                  name=f"prior view {k} at step {step}"))
    return views


@torch.no_grad()
def _preview_png(model: SplatModel, view: _PreparedView, faces: torch.Tensor, size: int,
                 beside_target: bool = False) -> bytes:
    """The avatar's render of ``view`` (RGBA), or with ``beside_target`` the view's real image
    (its matte as alpha) on the left and the render on the right."""
    from PIL import Image

    scale = size / max(view.width, view.height)
    w, h = max(1, round(view.width * scale)), max(1, round(view.height * scale))
    Ks = view.Ks.clone()
    Ks[:, :2] *= scale
    out = render_avatar(model, view.vertices().detach(), faces, view.viewmats, Ks, w, h,
                        colour_code=_code(view))
    rgba = torch.cat([out.rgb[0], out.alpha[0, ..., None]], dim=-1).clamp(0, 1)
    if beside_target:
        real = torch.cat([view.image[0] * view.mask[0, ..., None], view.mask[0, ..., None]], dim=-1)
        real = torch.nn.functional.interpolate(real.permute(2, 0, 1)[None], size=(h, w), mode="area")[0].permute(1, 2, 0)
        rgba = torch.cat([real.to(rgba), rgba], dim=1)
    buf = io.BytesIO()
    Image.fromarray((rgba.cpu().numpy() * 255).round().astype(np.uint8), "RGBA").save(buf, "PNG")
    return buf.getvalue()


@torch.no_grad()
def evaluate_views(model: SplatModel, views: list[_PreparedView], faces: torch.Tensor) -> dict:
    """PSNR / SSIM of the avatar against its photos, on the foreground (alpha target > 0.5:
    the photo's matte within the head region, see views.masks)."""
    psnrs, ssims = [], []
    for view in views:
        out = render_avatar(model, view.vertices().detach(), faces, view.viewmats, view.Ks, view.width, view.height,
                            colour_code=_code(view))
        fg = (view.mask > 0.5).float()
        target = view.image * view.mask[..., None]
        psnrs.append(psnr(out.rgb, target, fg))
        ssims.append(float(masked_mean(ssim_map(out.rgb, target), fg)))
    if not psnrs:
        return {}
    return {"input_psnr_db": float(np.mean(psnrs)), "input_ssim": float(np.mean(ssims))}

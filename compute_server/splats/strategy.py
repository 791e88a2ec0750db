"""Adaptive density control for triangle-bound Gaussians (GaussianAvatars' rules).

Modelled on gsplat's ``DefaultStrategy``: running state in an explicit dict, parameter
surgery through ``gsplat.strategy.ops`` so optimizer moments stay in sync. What differs:

- the triangle binding is strategy state, so clones and split children inherit their
  parent's triangle (ops.duplicate/split/remove carry every state tensor along);
- clone/split is decided on the Gaussian's *world* size at the training pose (local scale
  times its triangle's k), as GaussianAvatars does;
- pruning never leaves a triangle without a Gaussian: where every Gaussian of a
  triangle would go, its most opaque one stays, so every part of the mesh can still be
  rendered and re-grown.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gsplat.strategy import ops

from .model import SplatModel


@dataclass
class BindingDensifyStrategy:
    grad_threshold: float = 2e-4          # mean screen-space gradient (NDC units) that triggers growth
    clone_scale_fraction: float = 0.01    # world scale below this fraction of the head size: clone, else split
    prune_opacity: float = 0.005
    prune_scale_fraction: float = 0.2     # Gaussians larger than this fraction of the head size are pruned
    refine_start: int = 500
    refine_stop: int = 5000
    refine_every: int = 300
    reset_opacity_every: int = 3000
    reset_opacity_value: float = 0.01
    max_count: int = 200_000

    def initialize_state(self, model: SplatModel) -> dict:
        n = model.count
        dev = model.device
        return {"binding": model.binding.clone(), "grad2d": torch.zeros(n, device=dev),
                "count": torch.zeros(n, device=dev)}

    @torch.no_grad()
    def accumulate(self, state: dict, meta: dict) -> None:
        """Add this step's screen-space gradient of meta['means2d'] (C, N, 2) to the running state."""
        means2d = meta["means2d"]
        if means2d.grad is None:
            return
        grads = means2d.grad.clone()
        n_cameras = grads.shape[0]
        grads[..., 0] *= meta["width"] / 2.0 * n_cameras
        grads[..., 1] *= meta["height"] / 2.0 * n_cameras
        visible = meta["radii"] > 0                            # (C, N)
        if visible.dim() == 3:                                 # gsplat may return (C, N, 2)
            visible = visible.all(-1)
        norms = torch.linalg.norm(grads, dim=-1) * visible
        state["grad2d"] += norms.sum(0)
        state["count"] += visible.sum(0).float()

    @torch.no_grad()
    def step_post_backward(self, model: SplatModel, optimizers: dict, state: dict, step: int, meta: dict,
                           world_scales: torch.Tensor, head_size: float, n_faces: int) -> dict:
        """Call after loss.backward() and before optimizer.step(). Returns counts of what changed.

        world_scales: (N, 3) current world-space scales; head_size: metres (e.g. the mesh's
        bounding-box diagonal); n_faces: faces of the bound mesh.
        """
        changes = {"cloned": 0, "split": 0, "pruned": 0}
        if step >= self.refine_stop:
            return changes
        self.accumulate(state, meta)
        if step > self.refine_start and step % self.refine_every == 0:
            grown, world_scales = self._grow(model, optimizers, state, world_scales, head_size)
            changes.update(grown)
            changes["pruned"] = self._prune(model, optimizers, state, world_scales, head_size, n_faces)
            state["grad2d"].zero_()
            state["count"].zero_()
            model.binding = state["binding"]
        if step > 0 and self.reset_opacity_every and step % self.reset_opacity_every == 0:
            ops.reset_opa(model.params, optimizers, state, value=self.reset_opacity_value)
        return changes

    def _grow(self, model, optimizers, state, world_scales, head_size) -> tuple[dict, torch.Tensor]:
        """Clone small and split large high-gradient Gaussians; returns the counts and the
        world scales of the grown set in the order the ops leave the Gaussians (clones are
        appended, split parents are replaced by two children at the end)."""
        avg_grad = state["grad2d"] / state["count"].clamp(min=1)
        high = avg_grad > self.grad_threshold
        small = world_scales.max(dim=-1).values <= self.clone_scale_fraction * head_size
        room = self.max_count - model.count
        if room <= 0 or not high.any():
            return {"cloned": 0, "split": 0}, world_scales
        if int(high.sum()) > room:  # keep the strongest gradients within the budget
            cutoff = torch.topk(avg_grad, room).values.min()
            high = high & (avg_grad >= cutoff)
        clone_mask = high & small
        n_clone = int(clone_mask.sum())
        if n_clone:
            ops.duplicate(model.params, optimizers, state, clone_mask)
            world_scales = torch.cat([world_scales, world_scales[clone_mask]])
        # the split mask must cover the grown set; clones were appended at the end
        split_mask = torch.cat([high & ~small, torch.zeros(n_clone, dtype=torch.bool, device=high.device)])
        n_split = int(split_mask.sum())
        if n_split:
            ops.split(model.params, optimizers, state, split_mask)
            world_scales = torch.cat([world_scales[~split_mask], (world_scales[split_mask] / 1.6).repeat(2, 1)])
        return {"cloned": n_clone, "split": n_split}, world_scales

    def _prune(self, model, optimizers, state, world_scales, head_size, n_faces) -> int:
        opacity = torch.sigmoid(model.params["opacities"])
        remove = opacity < self.prune_opacity
        remove |= world_scales.max(dim=-1).values > self.prune_scale_fraction * head_size
        remove = keep_one_per_face(remove, opacity, state["binding"], n_faces)
        n = int(remove.sum())
        if n:
            ops.remove(model.params, optimizers, state, remove)
        return n


def keep_one_per_face(remove: torch.Tensor, score: torch.Tensor, binding: torch.Tensor, n_faces: int) -> torch.Tensor:
    """Un-mark, for every face that would lose all its Gaussians, its highest-``score`` one.

    remove, score: (N,); binding: (N,) long face ids. Returns the corrected remove mask.
    """
    kept_per_face = torch.bincount(binding[~remove], minlength=n_faces)
    has_any = torch.bincount(binding, minlength=n_faces) > 0
    orphaned = has_any & (kept_per_face == 0)
    if not orphaned.any():
        return remove
    best = torch.full((n_faces,), -float("inf"), device=score.device)
    best = best.scatter_reduce(0, binding, score.float(), reduce="amax")
    candidate = orphaned[binding] & (score.float() == best[binding])
    # several Gaussians may tie for a face's best score: keep only the first of each
    idx = torch.nonzero(candidate).squeeze(1)
    first = torch.full((n_faces,), binding.numel(), device=score.device, dtype=torch.long)
    first = first.scatter_reduce(0, binding[idx], idx, reduce="amin")
    keep = torch.zeros_like(remove)
    keep[first[orphaned]] = True
    return remove & ~keep

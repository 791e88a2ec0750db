"""Novel training views from a diffusion backend (the ``ViewSynthesizer`` of a model).

For each target the photo is reprojected onto the mesh as the baseline does; that image
(over white) is the start of img2img at the model's ``strength``, the mesh's normal map
at the target camera is the condition, and the pixels the photo really saw are pinned in
latent space and pasted back at full resolution afterwards (feathered), so diffusion
paints only what the photo could not show. Views generated together share one call (a
multi-view model sees them jointly); GeoDiff4D-style models also return normals, which
become the views' normal targets, otherwise the mesh's normals are.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from shared.camera import Camera

from ..views.records import TrainingView
from ..views.synthesis import Progress, SynthesisInput
from .config import ModelConfig
from .denoising import DenoiseJob, ViewDenoiser
from .images import feathered, over_background
from .variations import ViewTarget, reprojected_variant_view

LOADING_SHARE = 0.1       # of the progress bar, for reprojection and loading the model
FEATHER_FRACTION = 0.01   # of the image's long side: how far pasted photo pixels blend out


class DiffusionSynthesizer:
    """``ViewSynthesizer`` of a configured model. ``get_denoiser(progress_message)``
    returns the loaded ``ViewDenoiser`` (loading it on first use)."""

    def __init__(self, model: ModelConfig, get_denoiser: Callable[..., ViewDenoiser]):
        self.name = model.name
        self.model = model
        self._get_denoiser = get_denoiser

    def synthesize(self, inp: SynthesisInput, cameras: list[Camera], *, weight: float,
                   progress: Progress | None = None) -> list[TrainingView]:
        """Views of the photo's expression at ``cameras`` (the ViewSynthesizer protocol)."""
        targets = [ViewTarget(camera, inp.head_params, None, name=f"novel view {i}")
                   for i, camera in enumerate(cameras)]
        return self.synthesize_targets(inp, targets, weight=weight, progress=progress)

    def synthesize_targets(self, inp: SynthesisInput, targets: list[ViewTarget], *, weight: float,
                           progress: Progress | None = None) -> list[TrainingView]:
        """Views for arbitrary targets (other expressions: ``variations.expression_targets``).

        progress(fraction, message) is called after every denoising step; it may raise
        (the job's cancel), which stops sampling within that step.
        """
        report = progress or (lambda fraction, message: None)
        if not targets:
            return []
        base = []
        for i, target in enumerate(targets):
            base.append(self._base_view(inp, target, weight))
            report(LOADING_SHARE * 0.5 * (i + 1) / len(targets), f"reprojecting novel view {i + 1} of {len(targets)}")
        denoiser = self._get_denoiser(lambda message: report(LOADING_SHARE, message))
        out: list[TrainingView | None] = [None] * len(base)
        done_views = 0
        for indices in _by_size(base):
            views = [base[i] for i in indices]

            def on_step(done: int, total: int, offset=done_views, n=len(views)) -> None:
                fraction = (offset + n * done / total) / len(base)
                report(LOADING_SHARE + (1 - LOADING_SHARE) * fraction, f"diffusion: step {done} of {total} "
                                                                       f"({len(base)} novel views)")

            result = denoiser.denoise(self._job(inp, views, denoiser), on_step)
            for k, i in enumerate(indices):
                normals = result.normals[k] if result.normals is not None else base[i].normals
                out[i] = self._training_view(base[i], result.images[k], normals, denoiser)
            done_views += len(views)
        return out

    @staticmethod
    def _base_view(inp: SynthesisInput, target: ViewTarget, weight: float) -> TrainingView:
        if target.vertices is None:
            return inp.reprojected(target.camera, target.head_params, weight, name=target.name)
        return reprojected_variant_view(inp, target, weight)

    def _job(self, inp: SynthesisInput, views: list[TrainingView], denoiser: ViewDenoiser) -> DenoiseJob:
        m = self.model
        masks = np.stack([v.mask for v in views])
        init = over_background(np.stack([v.image for v in views]), masks) if denoiser.supports_init_images else None
        return DenoiseJob(
            normals_camera=np.stack([v.normals for v in views]), masks=masks, cameras=[v.camera for v in views],
            reference_image=inp.image, reference_mask=inp.matte, reference_camera=inp.camera, init_images=init,
            known=np.stack([v.known for v in views]) if m.keep_known else None,
            strength=m.strength if init is not None else 1.0,
            steps=max(1, int(round(m.steps * (m.strength if init is not None else 1.0)))), seed=inp.seed)

    def _training_view(self, base: TrainingView, generated: np.ndarray, normals: np.ndarray,
                       denoiser: ViewDenoiser) -> TrainingView:
        """The generated image with the photo's own pixels pasted back (feathered)."""
        image = generated
        if self.model.keep_known and base.known is not None:
            h, w = base.mask.shape
            keep = feathered(base.known[None], max(1, int(round(FEATHER_FRACTION * max(h, w)))))[0][..., None]
            image = keep * base.image + (1.0 - keep) * generated
        image = (np.clip(image, 0.0, 1.0) * base.mask[..., None]).astype(np.float32)
        return TrainingView(image=image, mask=base.mask, camera=base.camera, head_params=base.head_params,
                            weight=base.weight, loss_mask=base.loss_mask, normals=normals.astype(np.float32),
                            known=base.known, kind="diffusion", name=base.name,
                            meta={**base.meta, **denoiser.describe(),
                                  "normals_from": "model" if denoiser.outputs_normals else "mesh"})


def _by_size(views: list[TrainingView]) -> list[list[int]]:
    """Indices of views grouped by image size (one denoising call per size)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, view in enumerate(views):
        groups.setdefault(view.mask.shape, []).append(i)
    return list(groups.values())

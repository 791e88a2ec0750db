"""The ``multiview`` backend: any diffusers-format multi-view pipeline, through an adapter.

Loads the adapter a folder's manifest names (``multiview_contract``), then serves
``ViewDenoiser.denoise`` by cutting the K views into calls of at most ``views_per_call``
(padding to exactly that many when the manifest says ``fixed_views``), building each
``MultiviewRequest`` at the model's resolution, and resizing the answers back; generated
normals are decoded from the manifest's encoding into OpenCV camera-frame unit vectors.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import torch

from ..errors import UserError
from .config import ModelConfig
from .denoising import DenoiseJob, DenoiseResult, StepCallback, seeded_generator
from ..gpu_memory import oom_guard
from .gpu import apply_attention_slicing, resolve_dtype
from .images import from_model, model_size, over_background, to_model
from .loading import go_offline, loading_errors
from .multiview_contract import Manifest, ManifestError, MultiviewRequest, read_manifest, view_angles_deg
from .normal_encoding import decode_normals, encode_normals

SIZE_MULTIPLE = 8


def adapter_class(folder: str, manifest: Manifest):
    """The adapter class named by the manifest: built-in, or loaded from the folder's file."""
    if manifest.builtin == "grid":
        from .multiview_grid import GridMultiviewAdapter
        return GridMultiviewAdapter
    module_name = f"headsplat_multiview_adapter_{abs(hash(manifest.adapter_file)):x}"
    spec = importlib.util.spec_from_file_location(module_name, manifest.adapter_file)
    if spec is None or spec.loader is None:
        raise UserError("bad_model", f"the multi-view adapter {manifest.adapter_file} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any failure is a bad model, with its reason
        sys.modules.pop(module_name, None)
        raise UserError("bad_model", f"the multi-view adapter {manifest.adapter_file} failed to import: "
                                     f"{type(exc).__name__}: {str(exc)[:300]}") from None
    cls = getattr(module, manifest.adapter_class, None)
    if cls is None or not callable(getattr(cls, "generate", None)):
        raise UserError("bad_model", f"the multi-view adapter file {manifest.adapter_file} has no class "
                                     f"{manifest.adapter_class} with a generate(request) method")
    return cls


def load_multiview(model: ModelConfig, device: torch.device, progress=None) -> "MultiviewDenoiser":
    """Build the adapter for ``model.pipeline`` on ``device`` (hub offline)."""
    go_offline()
    try:
        manifest = read_manifest(model.pipeline)
    except ManifestError as exc:
        raise UserError("bad_model", f"the multi-view pipeline folder {model.pipeline} {exc}") from None
    cls = adapter_class(model.pipeline, manifest)
    dtype = resolve_dtype(model.dtype, device)
    if progress:
        progress(f"loading the multi-view pipeline {model.name!r}")
    with oom_guard(f"loading the diffusion model {model.name!r}", device), loading_errors("multi-view pipeline",
                                                                                           model.pipeline):
        adapter = cls(model.pipeline, device=device, dtype=dtype, options=dict(manifest.options))
    apply_attention_slicing([getattr(adapter, "unet", None)], model.attention_slicing, device)
    return MultiviewDenoiser(adapter, manifest, model, device)


class MultiviewDenoiser:
    """``ViewDenoiser`` over a multi-view adapter (see the module docstring)."""

    def __init__(self, adapter, manifest: Manifest, model: ModelConfig, device: torch.device):
        self.adapter, self.manifest, self.model, self.device = adapter, manifest, model, device
        self.name = model.name
        self.outputs_normals = manifest.outputs_normals
        self.supports_init_images = manifest.supports_init_images
        self.num_train_timesteps = int(getattr(adapter, "num_train_timesteps", 1000))

    def describe(self) -> dict:
        return {"backend": "multiview", "model": self.model.name, "adapter": self.manifest.adapter,
                "resolution": self.manifest.resolution, "views_per_call": self.manifest.views_per_call,
                "steps": self.model.steps, "strength": self.model.strength,
                "guidance_scale": self.model.guidance_scale, "outputs_normals": self.outputs_normals}

    def release(self) -> None:
        release = getattr(self.adapter, "release", None)
        if callable(release):
            release()
        self.adapter = None

    @torch.no_grad()
    def denoise(self, job: DenoiseJob, on_step: StepCallback) -> DenoiseResult:
        m = self.manifest
        height, width = job.masks.shape[1:3]
        size = model_size(width, height, m.resolution, SIZE_MULTIPLE)
        per_call = m.views_per_call
        calls = [list(range(i, min(i + per_call, job.count))) for i in range(0, job.count, per_call)]
        guidance = self.model.guidance_scale if job.guidance_scale is None else job.guidance_scale
        ref_size = model_size(job.reference_image.shape[1], job.reference_image.shape[0], m.resolution, SIZE_MULTIPLE)
        reference = self._tensor(over_background(job.reference_image[None], job.reference_mask[None]), ref_size)
        reference_mask = self._tensor(job.reference_mask[None, ..., None], ref_size)
        images, normals = [], []
        for c, views in enumerate(calls):
            pad = per_call - len(views) if m.fixed_views else 0
            idx = views + [views[-1]] * pad

            def step(done: int, total: int, c=c) -> None:
                on_step(c * total + done, total * len(calls))

            request = self._request(job, idx, size, reference[0], reference_mask[0, ..., 0], guidance,
                                    seeded_generator(job.seed, c), step)
            with oom_guard(f"running the multi-view model {self.model.name!r} on {len(idx)} view"
                           f"{'s' if len(idx) != 1 else ''}", self.device):
                result = self.adapter.generate(request)
            images.append(self._numpy(result.images, len(idx), (width, height))[:len(views)])
            if m.outputs_normals:
                if result.normal_images is None:
                    raise UserError("bad_model", f"the multi-view adapter of {self.model.name!r} declares "
                                                 "outputs_normals but returned no normal_images")
                normals.append(self._numpy(result.normal_images, len(idx), (width, height))[:len(views)])
        out_images = np.concatenate(images).clip(0.0, 1.0)
        out_normals = None
        if normals:
            out_normals = decode_normals(np.concatenate(normals), m.normal_encoding) * (job.masks[..., None] > 0.5)
        return DenoiseResult(images=out_images, normals=out_normals)

    def _request(self, job: DenoiseJob, idx: list[int], size, reference, reference_mask, guidance, generator,
                 step) -> MultiviewRequest:
        m = self.manifest
        normal_rgb = encode_normals(job.normals_camera[idx], job.masks[idx], m.normal_encoding, m.normal_background)
        init = None
        if job.init_images is not None and m.supports_init_images:
            init = self._tensor(job.init_images[idx], size)
        strength = job.strength if init is not None else 1.0
        cameras = [job.cameras[i] for i in idx]
        return MultiviewRequest(
            reference_image=reference, reference_mask=reference_mask, normal_maps=self._tensor(normal_rgb, size),
            normals_camera=torch.nn.functional.normalize(self._tensor(job.normals_camera[idx], size), dim=-1)
            * (self._tensor(job.masks[idx][..., None], size) > 0.5),
            masks=self._tensor(job.masks[idx][..., None], size)[..., 0], cameras=cameras,
            reference_camera=job.reference_camera,
            view_angles_deg=torch.as_tensor(view_angles_deg(cameras), dtype=torch.float32, device=self.device),
            init_images=init, strength=strength, steps=job.steps, guidance_scale=guidance, seed=job.seed,
            generator=generator, on_step=step,
            known=self._tensor(job.known[idx][..., None], size)[..., 0] if job.known is not None else None)

    def _tensor(self, images: np.ndarray, size) -> torch.Tensor:
        """(K, H, W, C) numpy -> (K, h, w, C) float32 tensor on the device at size (w, h)."""
        return to_model(images, size, self.device).permute(0, 2, 3, 1).contiguous()

    def _numpy(self, images, count: int, size) -> np.ndarray:
        """An adapter's (K, h, w, 3) output -> (K, H, W, 3) numpy at the cameras' size."""
        x = torch.as_tensor(images).float()
        if x.dim() != 4 or x.shape[0] != count or x.shape[-1] != 3:
            raise UserError("bad_model", f"the multi-view adapter of {self.model.name!r} returned images of shape "
                                         f"{tuple(x.shape)}; the contract is ({count}, H, W, 3)")
        return from_model(x.permute(0, 3, 1, 2), size)

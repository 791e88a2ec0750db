"""Diffusion: every configured model passes ``headsplat models check``, and where CUDA is
present a one-step denoise at 64 px runs on the device in half precision.

Why a real denoise on the GPU: the folder checks read configs and weight headers only,
so a model whose weights load but whose fp16 kernels fail (old driver, no memory, a
dtype the card lacks) would otherwise only show up mid-job. On the CPU the check is
skipped: loading an SD-1.5-sized model there takes minutes and the CPU computes in
float32 anyway.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from ..errors import UserError
from .records import FAIL, NO_CUDA, OK, SKIPPED, Check, DoctorSettings

GROUP = "diffusion"
CHECK_SIZE_PX = 64
NO_MODELS = ("no diffusion models are configured (avatars use the 'none' synthesizer: reprojection and mirror); "
             "see docs/diffusion.md to add one with --models-config")


def _check(name: str, verdict: str, detail: str, fix: str = "", seconds: float | None = None) -> Check:
    return Check(name, verdict, detail, fix, GROUP, None if seconds is None else round(seconds, 3))


def sphere_denoise_job(size: int = CHECK_SIZE_PX):
    """A DenoiseJob of one size x size view of a unit-normal sphere (no photo needed)."""
    from shared.camera import Camera

    from ..diffusion.denoising import DenoiseJob

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y = (xs + 0.5) / size * 2 - 1, (ys + 0.5) / size * 2 - 1
    mask = (x * x + y * y) < 0.8
    normals = np.zeros((size, size, 3), np.float32)   # OpenCV camera frame: towards the camera is -Z
    normals[..., 0], normals[..., 1] = x * mask, y * mask
    normals[..., 2] = -np.sqrt(np.clip(1 - x * x - y * y, 0, 1)) * mask
    camera = Camera(np.array([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.0], [0, 0, 0, 1]]),
                    size * 2.0, size * 2.0, size / 2, size / 2, size, size)
    image = np.where(mask[..., None], 0.5 + 0.3 * normals, 1.0).astype(np.float32)
    return DenoiseJob(normals_camera=normals[None], masks=mask[None].astype(np.float32), cameras=[camera],
                      reference_image=image, reference_mask=mask.astype(np.float32), strength=1.0, steps=1, seed=0)


def denoise_check(models, name: str, device: torch.device) -> Check:
    """Load ``name`` on ``device`` (at CHECK_SIZE_PX) and run one denoising step."""
    from ..diffusion.registry import DiffusionBackend

    check_name = f"diffusion {name}: one-step denoise"
    backend = DiffusionBackend(replace(models.model(name), resolution=CHECK_SIZE_PX), device)
    start = time.perf_counter()
    try:
        denoiser = backend.denoiser()
        loaded = time.perf_counter() - start
        result = denoiser.denoise(sphere_denoise_job(), lambda done, total: None)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except UserError as exc:
        return _check(check_name, FAIL, exc.message, "see docs/diffusion.md; a smaller model or more GPU memory",
                      time.perf_counter() - start)
    except Exception as exc:
        return _check(check_name, FAIL, f"{type(exc).__name__}: {exc}",
                      "check the model with `headsplat models check` and the CUDA line above",
                      time.perf_counter() - start)
    finally:
        backend.unload()
    seconds = time.perf_counter() - start
    dtype = str(getattr(getattr(denoiser, "parts", None), "dtype", "") or denoiser.describe().get("dtype", "")
                or "its configured dtype").replace("torch.", "")
    if not np.isfinite(result.images).all():
        return _check(check_name, FAIL, f"the denoised image has non-finite pixels in {dtype}",
                      "set dtype = \"float32\" (or \"bfloat16\") for this model in the models config", seconds)
    return _check(check_name, OK, f"{CHECK_SIZE_PX} px on {device} in {dtype}: loaded in {loaded:.1f} s, "
                                  f"one step in {seconds - loaded:.2f} s", seconds=seconds)


def checks(settings: DoctorSettings, device: torch.device, *, cheap: bool = False) -> list[Check]:
    if not settings.models_config:
        return [_check("diffusion models", SKIPPED, NO_MODELS)]
    try:
        from ..diffusion.registry import DiffusionModels
    except ModuleNotFoundError as exc:
        return [_check("diffusion models", FAIL, f"the diffusion backends cannot be imported ({exc})",
                       "pip install headsplat again (diffusers, transformers, safetensors, accelerate)")]
    try:
        models = DiffusionModels.from_config(settings.models_config)
    except UserError as exc:
        return [_check("models config", FAIL, exc.message, "fix the file (docs/diffusion.md)")]
    found = [_check("models config", OK, f"{models.source}: {len(models.names)} model(s)")]
    usable = []
    for name in models.names:
        status = models.status(name)
        if status.usable:
            usable.append(name)
            found.append(_check(f"diffusion {name}", OK, status.summary or "usable"))
        else:
            found.append(_check(f"diffusion {name}", FAIL, status.problem or "not usable",
                                f"fix the folders named for {name!r} in {models.source} and run "
                                "`headsplat models check DIR` on each"))
    for name in usable:
        if device.type != "cuda":
            found.append(_check(f"diffusion {name}: one-step denoise", SKIPPED,
                                f"{NO_CUDA}: the fp16 denoise runs only on a GPU (on the CPU this model computes "
                                "in float32, slowly)"))
        elif cheap:
            found.append(_check(f"diffusion {name}: one-step denoise", SKIPPED,
                                "not run for the server's summary (run `headsplat doctor`)"))
        else:
            found.append(denoise_check(models, name, device))
    return found

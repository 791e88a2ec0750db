"""What every backend does, stated once: denoise K views of the head, conditioned on the
mesh's normals and the photo, from a start image at some noise level.

``DenoiseJob`` is the request (numpy, camera resolution), ``ViewDenoiser`` the interface
the ControlNet and multi-view backends implement, and ``run_ddim`` the sampling loop
(DDIM, eta = 0, so a seed fixes the result) with a cancel/progress call at every step.
The synthesizer (novel views: start from the reprojected photo at ``strength``) and the
prior (GAF: start from the avatar's renders at a random t, round(t T / k) steps) are
two uses of the same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from shared.camera import Camera

StepCallback = Callable[[int, int], None]   # (steps done, steps in total); raises to cancel


@dataclass
class DenoiseJob:
    """K views to denoise. Arrays are numpy float32 at the views' camera resolution.

    normals_camera (K, H, W, 3): mesh normals in each camera's OpenCV frame, 0 off the
    mesh; masks (K, H, W): mesh coverage; cameras: the K cameras.
    init_images (K, H, W, 3) or None: start images over a white background.
    known (K, H, W) or None: pixels of init_images that come from the photo (kept).
    reference_image (Hr, Wr, 3) / reference_mask (Hr, Wr) / reference_camera: the photo
    (the camera may be None where the caller does not know it, e.g. the prior).
    strength: noise level to start from, in (0, 1] (1 = pure noise); steps: denoising
    steps to run from there. seed: all noise comes from it.
    """

    normals_camera: np.ndarray
    masks: np.ndarray
    cameras: list[Camera]
    reference_image: np.ndarray
    reference_mask: np.ndarray
    reference_camera: Camera | None = None
    init_images: np.ndarray | None = None
    known: np.ndarray | None = None
    strength: float = 1.0
    steps: int = 30
    seed: int = 0
    guidance_scale: float | None = None   # None: the model's configured value

    @property
    def count(self) -> int:
        return len(self.cameras)


@dataclass
class DenoiseResult:
    """images (K, H, W, 3) float32 in [0, 1] at the cameras' size; normals (K, H, W, 3)
    unit OpenCV-camera-frame normals when the model generates them (else None)."""

    images: np.ndarray
    normals: np.ndarray | None = None


class ViewDenoiser(Protocol):
    """A loaded backend's sampler. ``describe()`` is a small JSON-safe map for metadata."""

    name: str
    outputs_normals: bool
    supports_init_images: bool
    num_train_timesteps: int

    def denoise(self, job: DenoiseJob, on_step: StepCallback) -> DenoiseResult: ...

    def describe(self) -> dict: ...


def gaf_denoising_steps(t_fraction: float, num_train_timesteps: int, k: int) -> int:
    """GAF section 4.2: from noise level t (a fraction of the T training timesteps), run
    t T / k DDIM steps (k = 20 in the paper), at least one."""
    return max(1, int(round(t_fraction * num_train_timesteps / k)))


def make_scheduler(scheduler_config: dict):
    """A fresh DDIM scheduler (set_timesteps mutates it) from the checkpoint's scheduler
    config: its betas, prediction type and timestep spacing, deterministic sampling."""
    from diffusers import DDIMScheduler

    config = {k: v for k, v in dict(scheduler_config).items() if not k.startswith("_")}
    config.setdefault("clip_sample", False)
    return DDIMScheduler.from_config(config)


def tail_timesteps(scheduler, strength: float, steps: int, device) -> torch.Tensor:
    """The last ``steps`` timesteps of a DDIM schedule whose first one is at about
    ``strength`` of the training timesteps (diffusers' img2img rule)."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    total = max(steps, int(round(steps / strength)))
    scheduler.set_timesteps(total, device=device)
    return scheduler.timesteps[-steps:]


def seeded_generator(*seeds: int) -> torch.Generator:
    """A CPU generator seeded from several integers (job seed, chunk, refresh...):
    noise is drawn on the CPU so a seed gives the same result on any device."""
    mixed = int(np.random.SeedSequence([int(s) & 0xFFFFFFFF for s in seeds]).generate_state(1)[0])
    return torch.Generator(device="cpu").manual_seed(mixed)


def run_ddim(latents: torch.Tensor, timesteps: torch.Tensor, scheduler, predict: Callable, *,
             on_step: Callable[[], None], keep: torch.Tensor | None = None,
             keep_latents: torch.Tensor | None = None, keep_noise: torch.Tensor | None = None) -> torch.Tensor:
    """Denoise ``latents`` (B, C, h, w) float32 through ``timesteps``.

    predict(latents, t) -> the model output (noise or v, as the scheduler was configured)
    in float32. After each step ``on_step()`` is called (progress and cancel). keep
    (B, 1, h, w): latent cells pinned to ``keep_latents`` re-noised with ``keep_noise`` to
    the next step's level (clean after the last step), which keeps the photo's pixels and
    lets the model paint around them (RePaint-style blending).
    """
    for i, t in enumerate(timesteps):
        output = predict(latents, t)
        latents = scheduler.step(output, t, latents, eta=0.0).prev_sample.float()
        if keep is not None:
            if i + 1 < len(timesteps):
                target = scheduler.add_noise(keep_latents, keep_noise, timesteps[i + 1:i + 2])
            else:
                target = keep_latents
            latents = keep * target + (1.0 - keep) * latents
        on_step()
    return latents

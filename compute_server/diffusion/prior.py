"""GAF's iterative-denoising prior (section 4.2), the ``DenoisingPrior`` the optimizer calls.

Not score distillation: every ``refresh_every`` iterations the optimizer renders the
avatar at ``views`` random cameras; here those renders are encoded, noised to a random
t ~ U[t_min, t_max] (a fraction of the model's T training timesteps) and denoised with
DDIM in round(t T / k) steps, conditioned on the mesh's normal maps (and the photo);
the decoded images are the pseudo ground truth of those views until the next refresh.
Small t keeps the render and sharpens it; large t lets the model repaint. The noise and
t of a refresh come from the seed and the optimizer step, so a run repeats exactly.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from ..views.synthesis import PriorRequest
from .config import ModelConfig
from .denoising import DenoiseJob, ViewDenoiser, gaf_denoising_steps

log = logging.getLogger(__name__)


class IterativeDenoisingPrior:
    """See the module docstring. ``get_denoiser()`` returns the loaded backend sampler.

    After each refresh ``last_refresh`` holds {"step", "t", "denoising_steps", "seconds"}
    and ``history`` all of them (for logs and the benchmark).
    """

    def __init__(self, model: ModelConfig, get_denoiser: Callable[..., ViewDenoiser], *, seed: int):
        cfg = model.prior
        self.model = model
        self.refresh_every = cfg.refresh_every
        self.views_per_refresh = cfg.views
        self.weight = cfg.weight
        self.seed = int(seed)
        self._get_denoiser = get_denoiser
        self.history: list[dict] = []

    @property
    def last_refresh(self) -> dict | None:
        return self.history[-1] if self.history else None

    def noise_level(self, request_seed: int) -> float:
        """The t of the refresh with this request seed (uniform in [t_min, t_max])."""
        cfg = self.model.prior
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(request_seed) & 0xFFFFFFFF, 1])
        return float(rng.uniform(cfg.t_min, cfg.t_max))

    def pseudo_ground_truth(self, request: PriorRequest, check_cancel: Callable[[], None]) -> np.ndarray:
        """(K, H, W, 3) float32 pseudo ground truth for ``request``'s renders; calls
        ``check_cancel`` before starting and after every denoising step."""
        check_cancel()
        started = time.perf_counter()
        denoiser = self._get_denoiser(None)
        t = self.noise_level(request.seed)
        steps = gaf_denoising_steps(t, denoiser.num_train_timesteps, self.model.prior.k)
        job = DenoiseJob(
            normals_camera=np.asarray(request.normal_maps, dtype=np.float32),
            masks=np.asarray(request.mesh_masks, dtype=np.float32), cameras=list(request.cameras),
            reference_image=request.reference_image, reference_mask=request.reference_mask,
            init_images=np.clip(np.asarray(request.renders, dtype=np.float32), 0.0, 1.0), known=None,
            strength=t, steps=steps, seed=_mix(self.seed, request.seed),
            guidance_scale=self.model.prior.guidance_scale)
        result = denoiser.denoise(job, lambda done, total: check_cancel())
        self.history.append({"step": int(request.step), "t": round(t, 4), "denoising_steps": steps,
                             "seconds": round(time.perf_counter() - started, 4)})
        log.info("denoising prior %s at iteration %d: %d views, t = %.3f, %d DDIM steps, %.2f s", self.model.name,
                 request.step, len(request.cameras), t, steps, self.history[-1]["seconds"])
        return result.images.astype(np.float32)


def _mix(*seeds: int) -> int:
    return int(np.random.SeedSequence([int(s) & 0xFFFFFFFF for s in seeds]).generate_state(1)[0])

"""What the pipeline's jobs share across requests: the head-model catalog and the
diffusion models (both configured once when the server starts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from .head_models import HeadModelCatalog


@dataclass
class PipelineServices:
    head_models: HeadModelCatalog
    diffusion: Any = None      # compute_server.diffusion.registry.DiffusionModels, when configured

    def diffusion_check(self, name: str) -> None:
        """At submission: UserError unless ``name`` is a usable diffusion model here."""
        if self.diffusion is None:
            raise UserError("unavailable", f"diffusion model {name!r} is not available: this server has no "
                                           "diffusion models configured (headsplat serve --models-config FILE); "
                                           "use diffusion 'none'")
        self.diffusion.check(name)

    def diffusion_synthesizer(self, name: str, device):
        return self.diffusion.backend(name, device).synthesizer

    def diffusion_prior(self, name: str, device, seed: int):
        return self.diffusion.backend(name, device).make_prior(seed=seed)

    def release_diffusion(self, name: str, device) -> None:
        if self.diffusion is not None and name != "none":
            self.diffusion.backend(name, device).release()

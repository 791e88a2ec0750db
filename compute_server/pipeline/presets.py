"""Quality presets of avatar creation: what each one trains, at what size, for how long.

``draft`` is sized for a 2-core CPU (a few minutes at 256 px); ``standard`` follows GAF /
GaussianAvatars (6000 iterations at 512 px) and wants a GPU; ``high`` trains longer at
a higher resolution with more Gaussians. Every setting is saved with the avatar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..splats.strategy import BindingDensifyStrategy
from ..tracking.portrait_fit import FitSettings
from ..training.init import InitSettings
from ..training.optimize import OptimizeSettings


@dataclass
class AvatarPreset:
    name: str
    image_size: int                     # training resolution of the aligned crop (pixels)
    init: InitSettings
    optimize: OptimizeSettings
    fit: FitSettings = field(default_factory=FitSettings)
    novel_view_weight: float = 0.3      # synthesized views relative to the photo
    mirror_weight: float = 0.5
    include_back_views: bool = True
    # views of the photo's head with the jaw opened and the eyes turned (``pipeline.hidden_part_views``)
    hidden_part_views: bool = True

    def to_config(self) -> dict:
        return asdict(self)


def _densify(iterations: int, *, every: int, max_count: int, reset_every: int = 0) -> BindingDensifyStrategy:
    return BindingDensifyStrategy(refine_start=max(every, iterations // 10), refine_stop=int(iterations * 0.7),
                                  refine_every=every, reset_opacity_every=reset_every, max_count=max_count)


def _draft() -> AvatarPreset:
    iterations = 1500
    return AvatarPreset(
        name="draft", image_size=256,
        init=InitSettings(count=16_000, sh_degree=1, region_weights={"face": 2.0}),
        optimize=OptimizeSettings(iterations=iterations, sh_increase_every=500, lr_means=2e-3, lr_means_final=2e-4,
                                  lr_sh0=5e-3, lr_shN=2.5e-4, densify=_densify(iterations, every=150, max_count=40_000),
                                  preview_every=100, coarse_fraction=0.7))


def _standard() -> AvatarPreset:
    iterations = 6000
    return AvatarPreset(
        name="standard", image_size=512,
        init=InitSettings(count=40_000, sh_degree=3, region_weights={"face": 2.0}),
        optimize=OptimizeSettings(iterations=iterations, densify=_densify(iterations, every=300, max_count=200_000,
                                                                         reset_every=3000)))


def _high() -> AvatarPreset:
    iterations = 15000
    return AvatarPreset(
        name="high", image_size=768,
        init=InitSettings(count=80_000, sh_degree=3, region_weights={"face": 2.0}),
        optimize=OptimizeSettings(iterations=iterations, densify=_densify(iterations, every=300, max_count=500_000,
                                                                         reset_every=3000)))


PRESETS = {"draft": _draft, "standard": _standard, "high": _high}


def preset(name: str, *, iterations: int | None = None, image_size: int | None = None) -> AvatarPreset:
    """A fresh preset by name, with optional overrides (tests, benchmarks, power users)."""
    p = PRESETS[name]()
    if image_size is not None:
        p.image_size = image_size
    if iterations is not None and iterations != p.optimize.iterations:
        every = max(10, p.optimize.densify.refine_every * iterations // p.optimize.iterations)
        p.optimize = replace(p.optimize, iterations=iterations,
                             sh_increase_every=max(1, p.optimize.sh_increase_every * iterations // p.optimize.iterations),
                             preview_every=max(10, p.optimize.preview_every * iterations // p.optimize.iterations),
                             densify=_densify(iterations, every=every, max_count=p.optimize.densify.max_count,
                                              reset_every=p.optimize.densify.reset_opacity_every))
    return p

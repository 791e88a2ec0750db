"""The server's diffusion models: what the config offers, whether each is usable, and the
loaded backends the avatar.create job uses.

Lifecycle: ``register(server_ctx)`` at start reads ``--models-config`` (a broken file
stops the server with its reason; a broken model only marks that model unusable), lists
the models in ``server.info``; ``check(name)`` at job submission answers in milliseconds
(configs and weight headers, cached until the folders change); ``backend(name, device)``
on the worker returns a handle whose weights load on first use and stay loaded until
``release()`` (or across jobs with ``keep_warm``).
"""

from __future__ import annotations

import logging
import os
import threading

import torch

from ..errors import UserError
from .checkpoints import CheckResult, check_model
from .config import ModelConfig, load_models_config
from .denoising import ViewDenoiser
from ..gpu_memory import free_device_memory
from .loading import go_offline
from .multiview_contract import ManifestError, read_manifest
from .prior import IterativeDenoisingPrior
from .synthesizer import DiffusionSynthesizer

log = logging.getLogger(__name__)


class DiffusionBackend:
    """One configured model on one device: ``synthesizer`` (novel views), ``make_prior``
    (GAF's prior), ``release()``. Weights load lazily, once, under a lock."""

    def __init__(self, model: ModelConfig, device: torch.device):
        self.name = model.name
        self.model = model
        self.device = torch.device(device)
        self._denoiser: ViewDenoiser | None = None
        self._lock = threading.Lock()
        self.synthesizer = DiffusionSynthesizer(model, self.denoiser)

    @property
    def loaded(self) -> bool:
        return self._denoiser is not None

    def denoiser(self, progress=None) -> ViewDenoiser:
        """The loaded sampler (loads the weights on first use; progress(message) while loading)."""
        with self._lock:
            if self._denoiser is None:
                log.info("loading diffusion model %s on %s", self.name, self.device)
                if self.model.backend == "multiview":
                    from .multiview import load_multiview
                    self._denoiser = load_multiview(self.model, self.device, progress)
                else:
                    from .controlnet_normal import ControlNetNormalDenoiser, load_stable_diffusion
                    parts = load_stable_diffusion(self.model, self.device, progress)
                    self._denoiser = ControlNetNormalDenoiser(parts, self.model)
            return self._denoiser

    def make_prior(self, *, seed: int) -> IterativeDenoisingPrior | None:
        """GAF's prior with this model, or None when the config disables it or the model
        cannot start from an image (a multi-view adapter without ``supports_init_images``)."""
        if not self.model.prior.enabled:
            return None
        if self.model.backend == "multiview":
            try:
                if not read_manifest(self.model.pipeline).supports_init_images:
                    return None
            except ManifestError as exc:
                raise UserError("bad_model", f"the multi-view pipeline folder {self.model.pipeline} {exc}") from None
        return IterativeDenoisingPrior(self.model, self.denoiser, seed=seed)

    def release(self) -> None:
        """Free the weights (and the GPU memory they hold) unless the model is ``keep_warm``."""
        if not self.model.keep_warm:
            self.unload()

    def unload(self) -> None:
        """Free the weights whatever ``keep_warm`` says (server shutdown, tests)."""
        with self._lock:
            denoiser, self._denoiser = self._denoiser, None
        if denoiser is None:
            return
        release = getattr(denoiser, "release", None)
        if callable(release):
            release()
        del denoiser
        free_device_memory(self.device)
        log.info("released diffusion model %s", self.name)


class DiffusionModels:
    """The configured models (see the module docstring). Thread-safe: ``describe`` and
    ``check`` run on the network thread, ``backend`` on the worker."""

    def __init__(self, models: list[ModelConfig], source: str | None = None):
        self.source = source
        self._models = {m.name: m for m in models}
        self._checks: dict[str, tuple[tuple, CheckResult]] = {}
        self._backends: dict[tuple[str, str], DiffusionBackend] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, path: str | None) -> "DiffusionModels":
        """None -> no models; otherwise the file's models (UserError for a bad file)."""
        if path is None:
            return cls([], None)
        return cls(load_models_config(path), os.path.abspath(os.path.expanduser(str(path))))

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> ModelConfig:
        if name not in self._models:
            offered = ", ".join(self._models) or "none (the server has no --models-config)"
            raise UserError("unavailable", f"there is no diffusion model named {name!r} on this server; it offers: "
                                           f"{offered} (see `headsplat info`), or use diffusion 'none'")
        return self._models[name]

    def status(self, name: str) -> CheckResult:
        """The quick check of one model, recomputed only when its folders changed."""
        model = self.model(name)
        stamp = _fingerprint(model)
        with self._lock:
            cached = self._checks.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        result = check_model(model)
        with self._lock:
            self._checks[name] = (stamp, result)
        return result

    def forget_checks(self) -> None:
        """Drop the cached checks: the next ``check``/``describe`` reads every folder again."""
        with self._lock:
            self._checks.clear()

    def describe(self) -> list[dict]:
        """For ``server.info``: one map per model."""
        out = []
        for name, model in self._models.items():
            status = self.status(name)
            with self._lock:
                loaded = any(b.loaded for (n, _), b in self._backends.items() if n == name)
            out.append({"name": name, "backend": model.backend, "usable": status.usable, "problem": status.problem,
                        "summary": status.summary, "resolution": model.resolution,
                        "prior": model.prior.enabled, "keep_warm": model.keep_warm, "loaded": loaded})
        return out

    def check(self, name: str) -> None:
        """At job submission: UserError("unavailable") for an unknown name,
        UserError("bad_model") for missing or broken weights. No weights are loaded."""
        status = self.status(name)
        if not status.usable:
            raise UserError("bad_model", f"diffusion model {name!r} cannot be used: {status.problem}")

    def backend(self, name: str, device) -> DiffusionBackend:
        """The backend handle for ``name`` on ``device``: the same handle on every call (a
        job asks for it for the synthesizer, the prior and the release); its weights load
        on first use. A new handle is only made for a model that passes ``check``."""
        key = (name, str(torch.device(device)))
        with self._lock:
            existing = self._backends.get(key)
        if existing is not None:
            return existing
        self.check(name)
        with self._lock:
            return self._backends.setdefault(key, DiffusionBackend(self._models[name], torch.device(device)))

    def release_all(self) -> None:
        """Unload every backend, warm or not (shutdown)."""
        with self._lock:
            backends = list(self._backends.values())
        for backend in backends:
            backend.unload()


def _fingerprint(model: ModelConfig) -> tuple:
    """Sizes and modification times of the files in the model's folders (two levels):
    any download, copy or deletion there changes it, so cached checks are redone."""
    entries = []
    roots = list(model.folders().values())
    if model.ip_adapter is not None:
        roots += [os.path.dirname(model.ip_adapter.weight_file), model.ip_adapter.image_encoder_dir]
    for root in roots:
        for folder in [root] + _subfolders(root):
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        if entry.is_file():
                            st = entry.stat()
                            entries.append((entry.path, st.st_size, st.st_mtime_ns))
            except OSError:
                entries.append((folder, None, None))
    return tuple(sorted(entries, key=lambda e: e[0]))


def _subfolders(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return [e.path for e in it if e.is_dir()]
    except OSError:
        return []


def register(server_ctx) -> DiffusionModels:
    """The server plugin hook: read ``server_ctx.config.models_config``, list the models in
    ``server.info`` and return them."""
    go_offline()
    models = DiffusionModels.from_config(server_ctx.config.models_config)
    server_ctx.providers.diffusion_models = models.describe
    for entry in models.describe():
        if entry["usable"]:
            log.info("diffusion model %s (%s): %s", entry["name"], entry["backend"], entry["summary"])
        else:
            log.warning("diffusion model %s is not usable: %s", entry["name"], entry["problem"])
    return models

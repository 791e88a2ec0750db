"""Shared material of the diffusion tests (no tests here): the tiny random-weight
checkpoints (written once per session), models configs, and synthesis inputs — a cheap
synthetic one and the real chain (astronaut photo -> prepared portrait -> fitted head)."""

from __future__ import annotations

import io
import os
import threading
from functools import lru_cache

import numpy as np
import pytest

from tests.diffusion_models import TinyModels, tiny_model_entries, write_models_config, write_tiny_models

_lock = threading.Lock()
_models: dict[str, TinyModels] = {}


def tiny_models(tmp_path_factory) -> TinyModels:
    """The tiny checkpoints, written once per test session (every module's fixture shares them)."""
    with _lock:
        if "models" not in _models:
            _models["models"] = write_tiny_models(str(tmp_path_factory.mktemp("tiny-diffusion")))
        return _models["models"]


def models_config(folder, models: TinyModels, name: str = "models.json", **overrides) -> str:
    return write_models_config(os.path.join(str(folder), name), tiny_model_entries(models, **overrides))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyModels:
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny):
    """The configured tiny models of one test module, released after it."""
    from compute_server.diffusion.registry import DiffusionModels

    configured = DiffusionModels.from_config(models_config(tmp_path_factory.mktemp("config"), tiny))
    yield configured
    configured.release_all()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny networks run thousands of microsecond kernels; on a shared 2-core machine
    two OpenMP threads wait on each other for most of that time (16 views took 2-49 s
    with two threads under load, a steady 0.35 s with one). Restored after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@lru_cache(maxsize=4)
def _synthetic(size: int):
    from tests.diffusion_models import synthetic_synthesis_input

    return synthetic_synthesis_input(size)


def synthetic_input(size: int = 64):
    """(head model, SynthesisInput): the built-in head, neutral, seen from the front,
    with a shaded image standing in for the photo. Cheap (under a second), cached."""
    return _synthetic(size)


@lru_cache(maxsize=1)
def astronaut_input(size: int = 128):
    """(head model, SynthesisInput) from the real chain: scikit-image's astronaut photo,
    prepared (crop, matte, landmarks) and fitted with the built-in head, built the way
    avatar.create builds it."""
    from PIL import Image
    from skimage import data as skdata

    from compute_server.face import prepare_portrait
    from compute_server.head.model import load_head_model
    from compute_server.tracking.portrait_fit import FitSettings, fit_portraits
    from compute_server.diffusion.variations import pose_vertices
    from compute_server.views.surface import render_surface
    from compute_server.views.synthesis import SynthesisInput
    from compute_server.views.vertex_colors import complete_vertex_colors

    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buffer, "PNG")
    portrait = prepare_portrait(buffer.getvalue(), "astronaut.png", size=size)
    head = load_head_model()
    fit = fit_portraits(head, [portrait], settings=FitSettings(rigid_iterations=60, full_iterations=80))
    params = fit.head_params(0)
    faces, regions = head.faces.numpy(), head.face_region.numpy()
    vertices = pose_vertices(head, params)
    rest = pose_vertices(head, {**params, "expr": np.zeros(head.n_expr, np.float32),
                                "jaw_pose": np.zeros(3, np.float32), "eyes_pose": np.zeros(6, np.float32)})
    camera = fit.images[0].camera
    surface = render_surface(vertices, faces, [camera])[0]
    matte = (portrait.matte * portrait.valid).astype(np.float32)
    colors = complete_vertex_colors(vertices, faces, regions, head.region_names, rest, portrait.image, portrait.matte,
                                    camera, surface)
    return head, SynthesisInput(image=portrait.image, matte=matte, camera=camera, head_params=params,
                                vertices=vertices, faces=faces, rest_vertices=rest, face_region=regions,
                                region_names=head.region_names, vertex_colors=colors, surface=surface,
                                expression_names=list(head.expression_names), seed=3)


def ring_cameras(inp, count: int = 3):
    """``count`` cameras of the GAF ring around the input's head (sides first)."""
    from compute_server.views.sampling import fixed_ring, head_centre

    return [c for _, _, c in fixed_ring(inp.camera, head_centre(inp.vertices))][:count]


class StepCounter:
    """A progress/cancel callback that raises ``exc`` once ``limit`` denoising steps were
    reported (None: never), counting the calls."""

    def __init__(self, limit: int | None = None, exc: Exception | None = None):
        self.limit, self.exc, self.steps, self.messages = limit, exc, 0, []

    def progress(self, fraction: float, message: str) -> None:
        self.messages.append((fraction, message))
        if message.startswith("diffusion: step"):
            self.steps += 1
            if self.limit is not None and self.steps >= self.limit:
                raise self.exc

"""The CUDA paths of the diffusion backends: half precision, attention slicing, a real
out-of-memory error turned into a job error (the server stays usable), freeing memory on
release. Skipped without a CUDA GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.diffusion.registry import DiffusionModels
from compute_server.errors import UserError
from tests.test_diffusion_support import (models_config, one_torch_thread, ring_cameras, synthetic_input,  # noqa: F401
                                          tiny)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture()
def models(tmp_path, tiny):
    models = DiffusionModels.from_config(models_config(tmp_path, tiny))
    yield models
    models.release_all()


def test_half_precision_and_attention_slicing_on_cuda(models):
    from diffusers.models.attention_processor import SlicedAttnProcessor

    _, inp = synthetic_input(64)
    backend = models.backend("tiny-sd", "cuda")
    views = backend.synthesizer.synthesize(inp, ring_cameras(inp, 3), weight=0.5)
    parts = backend.denoiser().parts
    assert parts.dtype == torch.float16 and next(parts.unet.parameters()).dtype == torch.float16
    assert next(parts.unet.parameters()).is_cuda
    assert any(isinstance(p, SlicedAttnProcessor) for p in parts.unet.attn_processors.values())
    for view in views:
        assert view.image.shape == (64, 64, 3) and np.isfinite(view.image).all()
    again = backend.synthesizer.synthesize(inp, ring_cameras(inp, 3), weight=0.5)
    for a, b in zip(views, again):
        np.testing.assert_allclose(a.image, b.image, atol=2e-3)   # seeded noise is drawn on the CPU
    prior = backend.make_prior(seed=0)
    assert prior is not None


def test_real_out_of_memory_is_a_job_error_and_the_gpu_recovers(models):
    _, inp = synthetic_input(64)
    backend = models.backend("tiny-mv", "cuda")
    backend.denoiser()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(max(1e-6, (torch.cuda.memory_allocated() + 2**20) / total))
    try:
        with pytest.raises(UserError) as err:
            backend.synthesizer.synthesize(inp, ring_cameras(inp, 4), weight=0.5)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert err.value.code == "out_of_memory" and "smaller preset" in err.value.message
    assert len(backend.synthesizer.synthesize(inp, ring_cameras(inp, 4), weight=0.5)) == 4


def test_release_gives_the_memory_back(models):
    _, inp = synthetic_input(64)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    backend = models.backend("tiny-sd-ip", "cuda")
    backend.synthesizer.synthesize(inp, ring_cameras(inp, 2), weight=0.5)
    assert torch.cuda.memory_allocated() > before
    backend.release()
    assert torch.cuda.memory_allocated() <= before + 2**20

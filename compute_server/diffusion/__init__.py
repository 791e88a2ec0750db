"""View synthesis with diffusion models and GAF's iterative-denoising prior (docs/diffusion.md).

Entry point: ``registry`` (``register(server_ctx)``, ``DiffusionModels``, ``DiffusionBackend``).
Pure parts: ``config`` (the models config file), ``checkpoints`` and ``weights_files``
(quick checks of weight folders), ``multiview_contract`` (the adapter contract),
``normal_encoding``. Torch parts: ``denoising`` (the shared DDIM loop and request
records), ``controlnet_normal`` and ``multiview`` / ``multiview_grid`` (the backends),
``synthesizer`` (novel views), ``variations`` (views with other expressions), ``prior``,
``images``, ``gpu`` (precision, slicing, out-of-memory), ``loading`` (offline
from_pretrained). Tiny random-weight checkpoints for tests live in ``tests/diffusion_models.py``.
"""

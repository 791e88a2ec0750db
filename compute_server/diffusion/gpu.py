"""Device policy for the diffusion models: precision and attention slicing (out-of-memory
handling, for every job, lives in ``compute_server.gpu_memory``).

Why: a diffusion step is the largest allocation a job makes; half precision and attention
slicing are CUDA-only policies that cap it, and the CPU computes in float32.
"""

from __future__ import annotations

import torch



def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto" is float16 on CUDA and float32 elsewhere; half precision on the CPU is
    refused quietly (slow or unsupported kernels) and becomes float32."""
    if device.type != "cuda":
        return torch.float32
    return {"auto": torch.float16, "float16": torch.float16, "bfloat16": torch.bfloat16,
            "float32": torch.float32}[name]


def apply_attention_slicing(modules, mode: str, device: torch.device) -> None:
    """Compute attention in slices on CUDA to cap its peak memory ("auto": two slices
    per head group, "max": one head at a time, "off"). No-op on the CPU."""
    if device.type != "cuda" or mode == "off":
        return
    for module in modules:
        if module is not None and hasattr(module, "set_attention_slice"):
            module.set_attention_slice(mode)

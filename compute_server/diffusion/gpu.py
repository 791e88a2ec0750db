"""Device policy for the diffusion models: precision, attention slicing, freeing memory,
and turning GPU out-of-memory into an error the user can act on.

Why here: a diffusion step is the largest allocation a job makes, and a GPU that runs out
of memory must fail the job with advice while the server keeps serving. Half precision
and attention slicing are CUDA-only policies; the CPU computes in float32.
"""

from __future__ import annotations

import contextlib
import gc
import logging

import torch

from ..errors import UserError

log = logging.getLogger(__name__)

OOM_ADVICE = ("Try a smaller preset, fewer novel views or prior views, a lower model resolution or batch_size in the "
              "models config, keep_warm = false for other models, or a GPU with more memory.")


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


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) allocation failure, whichever class torch used."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text)


def free_device_memory(device: torch.device | None = None) -> None:
    """Collect garbage and hand cached CUDA blocks back, so other jobs (and other
    processes) can use them."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()


def out_of_memory_error(what: str) -> UserError:
    return UserError("out_of_memory", f"The GPU ran out of memory while {what}. {OOM_ADVICE}")


@contextlib.contextmanager
def oom_guard(what: str, device: torch.device | None = None):
    """Turn an out-of-memory error inside the block into UserError("out_of_memory") that
    says what ran out and what to do; the cache is emptied after the failing frames (and
    the tensors they hold) are gone, so the server stays usable."""
    failed = False
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        log.warning("out of GPU memory while %s: %s", what, exc)
        failed = True
    if failed:  # outside the except block: the traceback and its tensors are released
        free_device_memory(device)
        raise out_of_memory_error(what)


def classify_out_of_memory(exc: BaseException):
    """A job-manager error classifier: any out-of-memory error that escaped a job (in the
    optimizer, a renderer, ...) becomes the same actionable job error."""
    if not is_out_of_memory(exc):
        return None
    from shared.protocol import ErrorInfo

    free_device_memory()
    return ErrorInfo("out_of_memory", out_of_memory_error("running the job").message)

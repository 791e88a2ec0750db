"""GPU out-of-memory as an error the user can act on, for every job.

Why: a job that asks for more GPU memory than there is (a large preset, many Gaussians, a
diffusion step) must fail with advice while the server keeps serving the next job. The
job manager's classifier catches what escapes a job; ``oom_guard`` names the step that
ran out where a stage knows it (loading a model, a diffusion batch).
"""

from __future__ import annotations

import contextlib
import gc
import logging

import torch

from .errors import UserError

log = logging.getLogger(__name__)

OOM_ADVICE = ("Try a smaller preset or image size, fewer novel views or prior views, a lower diffusion resolution or "
              "batch_size in the models config, keep_warm = false for other models, or a GPU with more memory.")


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

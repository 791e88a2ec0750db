"""Loading diffusers/transformers components from local folders, never from the network.

Every ``from_pretrained`` goes through here with ``local_files_only=True`` and the Hugging
Face hub switched offline, in the precision the device policy picked, moved to the
device in inference mode. Problems the quick checks could not see (a config a library
version rejects, a weight file that fails to deserialize) become UserError("bad_model").
"""

from __future__ import annotations

import contextlib
import os

import torch

from ..errors import UserError
from .component_checks import DIFFUSERS_STEMS, TRANSFORMERS_STEMS
from .weights_files import find_weights

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}


def go_offline() -> None:
    """Switch the Hugging Face libraries offline for this process (they read these at
    import, so the server calls this before anything imports them)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def loading_errors(what: str, folder: str):
    """Library errors while loading ``folder`` -> UserError("bad_model") naming it."""
    try:
        yield
    except (UserError, torch.OutOfMemoryError):
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError, ImportError) as exc:
        if "out of memory" in str(exc).lower():
            raise
        raise UserError("bad_model", f"the {what} in {folder} could not be loaded: {str(exc)[:300]}; check that the "
                                     "folder is a complete diffusers download (headsplat models check "
                                     f"{folder})") from None


def _variant_for(folder: str, stems, variant: str | None) -> str | None:
    """Use the weight variant (e.g. fp16 files) only where the folder has it."""
    if not variant:
        return None
    found = find_weights(folder, stems, variant)
    return variant if found and any(f".{variant}." in os.path.basename(p) for p in found.files) else None


def _ready(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On ``device``, in inference mode (the precision was set by from_pretrained)."""
    module = module.to(device=device)
    module.eval()
    module.requires_grad_(False)
    return module


def load_diffusers_model(cls, folder: str, subfolder: str | None, device: torch.device, dtype: torch.dtype,
                         variant: str | None = None, what: str = "model"):
    """``cls.from_pretrained(folder, subfolder=...)`` offline, on ``device`` in ``dtype``."""
    go_offline()
    path = os.path.join(folder, subfolder) if subfolder else folder
    kwargs = {"local_files_only": True, "torch_dtype": dtype}
    chosen = _variant_for(path, DIFFUSERS_STEMS, variant)
    if chosen:
        kwargs["variant"] = chosen
    with loading_errors(what, folder):
        model = cls.from_pretrained(folder, subfolder=subfolder, **kwargs) if subfolder else \
            cls.from_pretrained(folder, **kwargs)
    return _ready(model, device)


def load_transformers_model(cls, folder: str, device: torch.device, dtype: torch.dtype, variant: str | None = None,
                            what: str = "model"):
    """A transformers model from a local folder (``dtype=`` or the older ``torch_dtype=``)."""
    go_offline()
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56.0") else "torch_dtype"
    kwargs = {"local_files_only": True, key: dtype}
    chosen = _variant_for(folder, TRANSFORMERS_STEMS, variant)
    if chosen:
        kwargs["variant"] = chosen
    with loading_errors(what, folder):
        model = cls.from_pretrained(folder, **kwargs)
    return _ready(model, device)


def load_tokenizer(folder: str):
    go_offline()
    from transformers import CLIPTokenizer

    with loading_errors("tokenizer", folder):
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def load_scheduler_config(folder: str) -> dict:
    go_offline()
    from diffusers import DDIMScheduler

    with loading_errors("scheduler", folder):
        return dict(DDIMScheduler.load_config(folder, local_files_only=True))

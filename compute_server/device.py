"""Choosing the torch device the worker computes on."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when a GPU is usable, else the CPU; 'cuda' without a GPU is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("bad_request", "device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    raise UserError("bad_request", f"unknown device {name!r}; use auto, cpu or cuda")


def describe_device(device: torch.device) -> str:
    """A human line for server.info, e.g. 'cuda:0 NVIDIA H100 80GB HBM3 (79.2 GiB)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{device} {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    return f"cpu ({torch.get_num_threads()} threads)"

"""Python, torch and the GPU: what this machine computes with.

Why first in the report: every later verdict depends on it (gsplat and fp16 diffusion run
only where CUDA is present), and "is my GPU even seen?" is the first question support
asks. Reading versions and device properties costs milliseconds, so the server's summary
runs these too.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys

import torch

from ..device import resolve_device
from ..errors import UserError
from .records import FAIL, NO_CUDA, OK, WARN, Check, DoctorSettings

GROUP = "system"
MIN_PYTHON = (3, 11)
CUDA_TORCH_FIX = ("install the NVIDIA driver and a CUDA build of torch (https://pytorch.org/get-started/locally/, "
                  "e.g. pip install torch --index-url https://download.pytorch.org/whl/cu121), then "
                  "pip install 'headsplat[gpu]'")


def _check(name: str, verdict: str, detail: str, fix: str = "") -> Check:
    return Check(name, verdict, detail, fix, GROUP)


def python_check() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    detail = f"Python {version} ({platform.python_implementation()}) on {platform.system()} {platform.machine()}"
    if sys.version_info[:2] < MIN_PYTHON:
        return _check("python", FAIL, detail, f"HeadSplat needs Python {'.'.join(map(str, MIN_PYTHON))} or newer")
    return _check("python", OK, detail)


def torch_check() -> Check:
    built_for = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build (no CUDA)"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    detail = f"torch {torch.__version__}, {built_for}" + (f", cuDNN {cudnn}" if cudnn else "")
    return _check("torch", OK, detail)


def driver_version() -> str | None:
    """The NVIDIA driver version from nvidia-smi (torch does not report it), or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def cuda_check(settings: DoctorSettings, *, ask_driver: bool = True) -> Check:
    """CUDA present (device name, memory, compute capability, driver, CUDA torch was built
    for), or a plain sentence that it is absent and what that means for jobs. ask_driver:
    also run nvidia-smi and read free memory (not for the server's cached summary)."""
    if not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if not torch.version.cuda
               else f"torch (built for CUDA {torch.version.cuda}) sees no usable GPU or driver")
        verdict = FAIL if settings.device.lower().startswith("cuda") else WARN
        return _check("CUDA", verdict, f"{NO_CUDA}: {why}; jobs run on the CPU (draft preset: minutes, "
                                       "standard: about an hour; gsplat and fp16 diffusion are not used)",
                      CUDA_TORCH_FIX)
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    total = props.total_memory
    free = f" ({torch.cuda.mem_get_info(index)[0] / 2**30:.1f} GiB free)" if ask_driver else ""
    driver = driver_version() if ask_driver else None
    detail = (f"cuda:{index} {props.name}, {total / 2**30:.1f} GiB{free}, compute "
              f"capability {props.major}.{props.minor}, driver {driver or 'unknown'}, torch built for CUDA "
              f"{torch.version.cuda}; {torch.cuda.device_count()} GPU(s) visible")
    return _check("CUDA", OK, detail)


def device_check(settings: DoctorSettings) -> tuple[Check, torch.device]:
    """The device jobs would compute on, as ``headsplat serve --device`` resolves it."""
    try:
        device = resolve_device(settings.device)
    except UserError as exc:
        return _check("device", FAIL, exc.message, "pass --device auto or cpu"), torch.device("cpu")
    return _check("device", OK, f"jobs compute on {device} ({torch.get_num_threads()} CPU threads for torch)"), device


def checks(settings: DoctorSettings, *, cheap: bool = False) -> tuple[list[Check], torch.device]:
    """The system checks and the device the later checks run on."""
    device_line, device = device_check(settings)
    return [python_check(), torch_check(), cuda_check(settings, ask_driver=not cheap), device_line], device

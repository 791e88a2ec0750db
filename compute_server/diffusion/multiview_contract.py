"""The contract between HeadSplat and a multi-view diffusion pipeline the user supplies.

A multi-view pipeline folder is a diffusers-format folder (``model_index.json`` and its
component subfolders) plus ``headsplat_multiview.json``, the manifest read here:

    {"contract": 1,
     "adapter": "adapter.py:MyAdapter",      # or "headsplat:grid", the built-in reference
     "views_per_call": 4, "fixed_views": false, "resolution": 256,
     "normal_encoding": "opengl", "normal_background": [0.5, 0.5, 1.0],
     "supports_init_images": true, "outputs_normals": false,
     "options": {...}}                        # handed to the adapter unchanged

The adapter is a class in a Python file inside the folder (the server's administrator
chose the folder, so its code is trusted like the server's own). HeadSplat constructs
``MyAdapter(folder, device=..., dtype=..., options=...)`` with the Hugging Face hub
offline (it must load its components with ``from_pretrained(..., local_files_only=True)``)
and calls ``generate(request: MultiviewRequest) -> MultiviewResult`` with at most
``views_per_call`` views (exactly that many when ``fixed_views``). ``release()``, if the
adapter defines it, is called before the server frees the adapter. docs/diffusion.md has
the full contract; this module holds its records and the manifest parser (no torch).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from shared.camera import Camera

from .normal_encoding import parse_normal_encoding

MANIFEST_NAME = "headsplat_multiview.json"
CONTRACT_VERSION = 1
BUILTIN_ADAPTERS = ("headsplat:grid",)


class ManifestError(Exception):
    """A manifest that breaks the contract; the message completes "the folder X ..."."""


@dataclass(frozen=True)
class Manifest:
    """A parsed ``headsplat_multiview.json`` (see the module docstring).

    adapter: "headsplat:grid" or "file.py:ClassName"; builtin: the built-in adapter's name
    or None; adapter_file / adapter_class: for user adapters.
    """

    adapter: str
    views_per_call: int = 4
    fixed_views: bool = False
    resolution: int = 256
    normal_encoding: str = "opengl"
    normal_background: tuple[float, float, float] = (0.5, 0.5, 1.0)
    supports_init_images: bool = True
    outputs_normals: bool = False
    options: dict = field(default_factory=dict)
    builtin: str | None = None
    adapter_file: str | None = None
    adapter_class: str | None = None


def read_manifest(folder: str) -> Manifest:
    """Parse and validate ``folder/headsplat_multiview.json``; raises ManifestError."""
    path = os.path.join(folder, MANIFEST_NAME)
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ManifestError(f"has no {MANIFEST_NAME} (the HeadSplat multi-view adapter manifest, "
                            "see docs/diffusion.md)") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"has a {MANIFEST_NAME} that cannot be read ({exc})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"has a {MANIFEST_NAME} that is not a JSON object")
    known = {"contract", "adapter", "views_per_call", "fixed_views", "resolution", "normal_encoding",
             "normal_background", "supports_init_images", "outputs_normals", "options"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ManifestError(f"has unknown key(s) {', '.join(unknown)} in {MANIFEST_NAME}")
    if raw.get("contract", CONTRACT_VERSION) != CONTRACT_VERSION:
        raise ManifestError(f"follows multi-view contract {raw.get('contract')!r}; this server supports "
                            f"{CONTRACT_VERSION}")

    def typed(key, kind, default, check=lambda v: True, what=""):
        value = raw.get(key, default)
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind) or not check(value):
            raise ManifestError(f"has a bad '{key}' in {MANIFEST_NAME}: {value!r} (expected {what or kind.__name__})")
        return value

    if "adapter" not in raw:
        raise ManifestError(f"has no 'adapter' in {MANIFEST_NAME} ('headsplat:grid' or 'file.py:ClassName')")
    adapter = typed("adapter", str, None, lambda v: bool(v.strip()), "'headsplat:grid' or 'file.py:ClassName'")
    manifest = Manifest(
        adapter=adapter,
        views_per_call=typed("views_per_call", int, 4, lambda v: 1 <= v <= 64, "an integer 1-64"),
        fixed_views=typed("fixed_views", bool, False),
        resolution=typed("resolution", int, 256, lambda v: 32 <= v <= 2048 and v % 8 == 0,
                         "a multiple of 8 between 32 and 2048"),
        normal_encoding=typed("normal_encoding", str, "opengl"),
        normal_background=tuple(float(c) for c in typed(
            "normal_background", list, [0.5, 0.5, 1.0],
            lambda v: len(v) == 3 and all(isinstance(c, (int, float)) and 0 <= c <= 1 for c in v),
            "three numbers in [0, 1]")),
        supports_init_images=typed("supports_init_images", bool, True),
        outputs_normals=typed("outputs_normals", bool, False),
        options=typed("options", dict, {}),
        **_adapter_location(folder, adapter))
    try:
        parse_normal_encoding(manifest.normal_encoding)
    except ValueError as exc:
        raise ManifestError(f"has a bad 'normal_encoding' in {MANIFEST_NAME}: it {exc}") from None
    return manifest


def _adapter_location(folder: str, adapter: str) -> dict:
    if adapter.startswith("headsplat:"):
        if adapter not in BUILTIN_ADAPTERS:
            raise ManifestError(f"names the built-in adapter {adapter!r}; the built-in ones are "
                                f"{', '.join(BUILTIN_ADAPTERS)}")
        return {"builtin": adapter.split(":", 1)[1]}
    file_name, sep, class_name = adapter.rpartition(":")
    if not sep or not file_name.endswith(".py") or not class_name.isidentifier():
        raise ManifestError(f"has adapter {adapter!r}; write it as 'file.py:ClassName' (a file in the folder)")
    path = os.path.normpath(os.path.join(folder, file_name))
    if os.path.dirname(path) != os.path.normpath(folder) and not path.startswith(os.path.normpath(folder) + os.sep):
        raise ManifestError(f"has adapter file {file_name!r} outside the folder")
    if not os.path.isfile(path):
        raise ManifestError(f"has no adapter file {file_name} (named in {MANIFEST_NAME})")
    return {"adapter_file": path, "adapter_class": class_name}


@dataclass
class MultiviewRequest:
    """What an adapter's ``generate`` gets. Tensors are float32 on the adapter's device,
    channels last, K views of H x W (the long side is the manifest's ``resolution``, both
    sides multiples of 8).

    reference_image (Hr, Wr, 3) in [0, 1] over white, reference_mask (Hr, Wr): the photo.
    normal_maps (K, H, W, 3): the mesh's normals as RGB in the manifest's encoding, the
        manifest's background off the mesh. normals_camera (K, H, W, 3): the same normals
        as unit vectors in each camera's OpenCV frame (0 off the mesh). masks (K, H, W).
    cameras / reference_camera: shared.camera.Camera (head space, intrinsics at the
        views' original size; reference_camera is None inside the prior);
        view_angles_deg (K, 2): azimuth, elevation of each camera
        around the head's front (0, 0 = frontal; azimuth > 0 = the subject's left).
    init_images (K, H, W, 3) or None: start images (renders or reprojections over white);
        strength in (0, 1]: the noise level to start from (1 = pure noise, ignore
        init_images); steps: how many denoising steps to run from there.
    known (K, H, W) or None: pixels taken from the photo that may be kept.
    guidance_scale, seed, generator (a seeded CPU torch.Generator: draw all noise from
        it, so runs repeat). on_step(done, total): call after every denoising step; it
        raises to cancel, let that exception pass.
    """

    reference_image: Any
    reference_mask: Any
    normal_maps: Any
    normals_camera: Any
    masks: Any
    cameras: list[Camera]
    reference_camera: Camera | None
    view_angles_deg: Any
    init_images: Any
    strength: float
    steps: int
    guidance_scale: float
    seed: int
    generator: Any
    on_step: Callable[[int, int], None]
    known: Any = None


@dataclass
class MultiviewResult:
    """What ``generate`` returns: images (K, H, W, 3) in [0, 1] (any device); and when
    the manifest says ``outputs_normals``, normal_images (K, H, W, 3) in [0, 1], normals
    encoded like the request's normal maps (GeoDiff4D-style joint generation)."""

    images: Any
    normal_images: Any = None


def view_angles_deg(cameras: list[Camera]) -> np.ndarray:
    """(K, 2) azimuth and elevation in degrees of each camera's viewing direction around
    the head's front (+Z): a camera on +Z looking at the head is (0, 0); one on +X (the
    subject's left) is (90, 0); one above looking down has elevation > 0."""
    out = np.zeros((len(cameras), 2))
    for i, camera in enumerate(cameras):
        forward = camera.world_to_camera[2, :3]     # the camera's +Z (viewing direction) in head space
        back = -forward / max(float(np.linalg.norm(forward)), 1e-12)
        out[i] = (math.degrees(math.atan2(back[0], back[2])), math.degrees(math.asin(float(np.clip(back[1], -1, 1)))))
    return out

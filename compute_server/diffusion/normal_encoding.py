"""Normal maps as RGB images, in whatever axis convention a model was trained on.

Why configurable: the mesh's normals are in the OpenCV camera frame (+X right, +Y down,
+Z away from the viewer), but every normal-conditioned model learned from some estimator's
or renderer's colours. An encoding is written as three signed OpenCV axes, one per colour
channel (value * 0.5 + 0.5):

- "normalbae" = "-x,-y,-z": what ControlNet 1.1's normal model
  (``lllyasviel/control_v11p_sd15_normalbae``, the checkpoint docs/diffusion.md recommends)
  was trained on. Its annotator (lllyasviel/ControlNet-v1-1-nightly,
  ``annotator/normalbae/__init__.py``) writes Bae et al.'s ScanNet-trained estimate as
  (n + 1) / 2 per channel with no axis change, and the README's section on the model says
  "blue is front, red is left, green is top" (ScanNet's protocol, pictured in
  baegwangbin/surface_normal_uncertainty ``figs/readme_scannet.png``: walls facing image
  left are magenta, floors green). So a normal facing the camera is (0.5, 0.5, 1), facing
  image left (1, 0.5, 0.5), facing up (0.5, 1, 0.5). The default of the
  ``controlnet-normal`` backend.
- "opengl" = "x,-y,-z": +X right, +Y up, +Z towards the viewer (renderers' normal passes;
  red is image *right*): it differs from "normalbae" in the sign of red.
- "opencv" = "x,y,z": the OpenCV components unchanged.

GeoDiff4D-style models that output normals are decoded with the same convention.
"""

from __future__ import annotations

import numpy as np

NAMED_ENCODINGS = {"normalbae": "-x,-y,-z", "opengl": "x,-y,-z", "opencv": "x,y,z"}
_AXES = {"x": 0, "y": 1, "z": 2}


def parse_normal_encoding(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """"normalbae", "opengl", "opencv" or "±a,±b,±c" (a permutation of x, y, z) -> (axis index (3,),
    sign (3,)) per RGB channel. Raises ValueError with the accepted forms."""
    text = NAMED_ENCODINGS.get(spec.strip().lower(), spec.strip().lower())
    parts = [p.strip() for p in text.split(",")]
    axes, signs = [], []
    for part in parts:
        sign = -1.0 if part.startswith("-") else 1.0
        name = part.lstrip("+-")
        if name not in _AXES:
            break
        axes.append(_AXES[name])
        signs.append(sign)
    if len(parts) != 3 or len(axes) != 3 or sorted(axes) != [0, 1, 2]:
        raise ValueError(f"must be 'normalbae', 'opengl', 'opencv' or three signed axes like 'x,-y,-z' "
                         f"(each of x, y, z once), not {spec!r}")
    return np.array(axes), np.array(signs, dtype=np.float32)


def encode_normals(normals_camera: np.ndarray, mask: np.ndarray, encoding: str,
                   background=(0.5, 0.5, 1.0)) -> np.ndarray:
    """OpenCV-camera-frame normals (..., H, W, 3) -> RGB (..., H, W, 3) float32 in [0, 1].

    mask (..., H, W) in [0, 1] selects the surface; elsewhere the pixel is ``background``
    (soft masks blend, which keeps silhouettes anti-aliased after resizing).
    """
    axes, signs = parse_normal_encoding(encoding)
    rgb = np.clip(normals_camera[..., axes] * signs * 0.5 + 0.5, 0.0, 1.0)
    m = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)[..., None]
    return (rgb * m + np.asarray(background, dtype=np.float32) * (1.0 - m)).astype(np.float32)


def decode_normals(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The inverse of ``encode_normals`` on the surface: RGB (..., 3) in [0, 1] -> unit
    OpenCV-camera-frame normals (..., 3) (zero where the colour decodes to a null vector)."""
    axes, signs = parse_normal_encoding(encoding)
    encoded = (np.asarray(rgb, dtype=np.float32) * 2.0 - 1.0) * signs
    normals = np.zeros_like(encoded)
    normals[..., axes] = encoded
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    return np.where(length > 1e-6, normals / np.maximum(length, 1e-6), 0.0).astype(np.float32)

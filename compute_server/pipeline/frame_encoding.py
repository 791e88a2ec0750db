"""Encoding rendered frames as files: 8-bit PNG, 16-bit PNG and half-float EXR (RGBA).

Renders are premultiplied by nature (colour composited over a black background with
alpha); files get straight (un-premultiplied) colour, which is what PNG means and what
Blender's Alpha Over expects by default. EXR stays premultiplied, as EXR files are.
"""

from __future__ import annotations

import io
import os

import numpy as np

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read by OpenCV at first EXR use

FORMATS = {"png": ".png", "png16": ".png", "exr": ".exr", "ply": ".ply"}  # ply: posed splats, not an image


def straight_alpha(rgb_premultiplied: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W, 3) premultiplied colour and (H, W) alpha -> straight colour in [0, 1]."""
    safe = np.where(alpha > 1e-6, alpha, 1.0)[..., None]
    return np.clip(np.where(alpha[..., None] > 1e-6, rgb_premultiplied / safe, 0.0), 0.0, 1.0)


def encode_frame(rgb_premultiplied: np.ndarray, alpha: np.ndarray, fmt: str) -> bytes:
    """One RGBA frame as file bytes in ``fmt`` ("png", "png16" or "exr")."""
    import cv2

    if fmt == "exr":
        rgba = np.concatenate([rgb_premultiplied, alpha[..., None]], axis=-1).astype(np.float32)
        ok, buf = cv2.imencode(".exr", rgba[..., [2, 1, 0, 3]], [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_HALF])
    else:
        rgba = np.concatenate([straight_alpha(rgb_premultiplied, alpha), np.clip(alpha, 0, 1)[..., None]], axis=-1)
        if fmt == "png":
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(buf, "PNG", compress_level=4)
            return buf.getvalue()
        if fmt != "png16":
            raise ValueError(f"unknown frame format {fmt!r}")
        ok, buf = cv2.imencode(".png", (rgba * 65535).round().astype(np.uint16)[..., [2, 1, 0, 3]])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {fmt} frame")
    return buf.tobytes()


def decode_frame(data: bytes) -> np.ndarray:
    """File bytes -> (H, W, 4) float32 RGBA (straight colour for PNG, as stored for EXR)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("not an image OpenCV can read")
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(img.dtype, 1.0)
    img = img.astype(np.float32) / scale
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.shape[-1] == 3:
        img = np.concatenate([img, np.ones_like(img[..., :1])], axis=-1)
    return img[..., [2, 1, 0, 3]]

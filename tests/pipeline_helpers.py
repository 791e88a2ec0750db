"""Inputs and a shared small avatar for the pipeline tests (real server, real photos)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SMALL_CREATE_OPTIONS = {"iterations": 40, "image_size": 96}


def astronaut_jpeg() -> bytes:
    import skimage.data

    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def noise_png(seed: int = 0, size: int = 256) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def create_params(**overrides) -> dict:
    params = {"images": [{"name": "astronaut.jpg", "data": astronaut_jpeg()}], "preset": "draft",
              "name": "astronaut", "seed": 3, "options": dict(SMALL_CREATE_OPTIONS)}
    params.update(overrides)
    return params


def decode_png(data) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(data))))

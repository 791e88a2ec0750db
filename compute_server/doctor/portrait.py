"""The bundled test portrait: scikit-image's astronaut (Eileen Collins, NASA, public
domain), the same photo the tests and benchmarks use.

Why bundled: the doctor must prove the face models and the whole pipeline on a machine
with no network and no photo of the user's own, and scikit-image is already a dependency.
"""

from __future__ import annotations

import io

PORTRAIT_NAME = "astronaut.jpg"


def bundled_portrait_jpeg(quality: int = 95) -> bytes:
    """The astronaut photo (512 x 512) as JPEG bytes."""
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()

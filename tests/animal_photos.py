"""Animal faces that MediaPipe takes for a face, made from a photo already on disk.

scikit-image ships "Chelsea the cat" (``skimage.data.chelsea()``, CC0 by the photographer,
Stefan van der Walt). The whole photo is refused by the face detector already; close crops
of her face are not: MediaPipe finds a face on them, so they exercise the person check
(compute_server/face/person_check.py). Nothing is downloaded.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

# (y0, y1, x0, x1) in the 300 x 451 photo, upscale factor, greyscale: each one found by
# MediaPipe as a face on the machine these were chosen on (docs/results.md, Non-human refusal).
CHELSEA_FACE_CROPS = {
    "chelsea_face.png": ((75, 150, 125, 200), 1, False),        # FaceMesh does not re-find it on the crop
    "chelsea_face_grey_x2.png": ((70, 160, 120, 210), 2, True),  # re-found, and the segmenter says "person"
}


def chelsea_face(name: str) -> np.ndarray:
    """(H, W, 3) uint8 close crop of Chelsea's face, by its name in CHELSEA_FACE_CROPS."""
    import skimage.data

    (y0, y1, x0, x1), scale, grey = CHELSEA_FACE_CROPS[name]
    crop = np.ascontiguousarray(skimage.data.chelsea()[y0:y1, x0:x1])
    if scale != 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    if grey:
        crop = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1)
    return crop


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "PNG")
    return buf.getvalue()

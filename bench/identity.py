"""Face-identity distance with dlib's ResNet face descriptor (offline: the weights ship in
the `face-recognition-models` package; `dlib-bin` provides dlib).

Why dlib and not our own landmarker: identity preservation must be judged by a model that
had nothing to do with making the avatar. The face box comes from dlib's HOG detector,
falling back to MediaPipe's detector on turned faces (HOG misses most beyond ~30 degrees);
the descriptor itself is always dlib's (68-point alignment, 128-D embedding, Euclidean
distance; dlib's "same person" threshold is 0.6).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

import numpy as np

SAME_PERSON_THRESHOLD = 0.6


def _models_dir() -> str:
    # face_recognition_models imports pkg_resources at import time (gone from recent
    # setuptools), so find its data folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed (pip install face-recognition-models)")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    d = _models_dir()
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(os.path.join(d, "shape_predictor_68_face_landmarks.dat")),
            dlib.face_recognition_model_v1(os.path.join(d, "dlib_face_recognition_resnet_model_v1.dat")))


def _mediapipe_box(image: np.ndarray):
    from compute_server.face.landmarker import FaceLandmarker

    with FaceLandmarker(static_image_mode=True, max_faces=1) as landmarker:
        faces = landmarker.detect(image)
    if not faces:
        return None
    x0, y0, x1, y1 = faces[0].box
    return int(x0), int(y0), int(x1), int(y1)


def face_descriptor(image: np.ndarray) -> np.ndarray | None:
    """(128,) descriptor of the largest face in an (H, W, 3) uint8 RGB image, or None."""
    import dlib

    detector, predictor, encoder = _dlib_models()
    image = np.ascontiguousarray(image[..., :3])
    boxes = detector(image, 1)
    if len(boxes):
        box = max(boxes, key=lambda r: r.width() * r.height())
    else:
        found = _mediapipe_box(image)
        if found is None:
            return None
        box = dlib.rectangle(*found)
    shape = predictor(image, box)
    return np.asarray(encoder.compute_face_descriptor(image, shape, 1), dtype=np.float64)


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def composite_on(rgba: np.ndarray, background=(255, 255, 255)) -> np.ndarray:
    """(H, W, 4) uint8 or float RGBA -> (H, W, 3) uint8 over a flat background (0-255),
    what dlib's detector takes."""
    from bench.metrics import composite

    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8:
        rgba = (np.clip(rgba, 0, 1) * 255).round().astype(np.uint8)
    out = composite(rgba, tuple(c / 255.0 for c in background)) * 255.0
    return np.clip(out.round(), 0, 255).astype(np.uint8)

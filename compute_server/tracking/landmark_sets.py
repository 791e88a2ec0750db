"""Groups of MediaPipe face-mesh landmarks and the weights the fitting energies give them.

Why weights: the 36 face-oval points follow the visible cheek/jaw contour, which slides
over the surface as the head turns, so they are trusted less than points on features
(eyes, brows, nose, lips) that sit on fixed anatomy. Iris points only drive the eyes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

N_MEDIAPIPE_LANDMARKS = 478
IRIS_CENTER = {"left": 473, "right": 468}


def _indices(connections) -> np.ndarray:
    return np.array(sorted({i for edge in connections for i in edge}), dtype=np.int64)


@lru_cache(maxsize=1)
def landmark_groups() -> dict[str, np.ndarray]:
    """Index arrays (into the 478 MediaPipe landmarks) per facial feature.

    'left'/'right' are the subject's sides (MediaPipe's naming), so 'left_eye' is at +X in
    head space and on the image's right in a frontal photo.
    """
    from mediapipe.python.solutions import face_mesh_connections as fmc

    groups = {
        "face_oval": _indices(fmc.FACEMESH_FACE_OVAL),
        "lips": _indices(fmc.FACEMESH_LIPS),
        "left_eye": _indices(fmc.FACEMESH_LEFT_EYE),
        "right_eye": _indices(fmc.FACEMESH_RIGHT_EYE),
        "left_brow": _indices(fmc.FACEMESH_LEFT_EYEBROW),
        "right_brow": _indices(fmc.FACEMESH_RIGHT_EYEBROW),
        "nose": _indices(fmc.FACEMESH_NOSE),
        "left_iris": np.array([473, 474, 475, 476, 477], dtype=np.int64),
        "right_iris": np.array([468, 469, 470, 471, 472], dtype=np.int64),
    }
    return groups


@lru_cache(maxsize=1)
def mediapipe_landmark_weights() -> np.ndarray:
    """(478,) weight of each MediaPipe landmark in the shape/expression energy."""
    groups = landmark_groups()
    weights = np.ones(N_MEDIAPIPE_LANDMARKS, dtype=np.float32)
    weights[groups["face_oval"]] = 0.3
    for name in ("lips", "left_eye", "right_eye"):
        weights[groups[name]] = 2.0
    for name in ("left_brow", "right_brow", "nose"):
        weights[groups[name]] = 1.5
    weights[468:] = 0.0  # irises: eye-gaze term only
    return weights


@lru_cache(maxsize=1)
def rigid_landmark_indices() -> np.ndarray:
    """Landmarks on parts of the face that barely move with expression (nose, eye corners,
    upper face): used to find head pose before shape and expression are free."""
    groups = landmark_groups()
    eye_corners = np.array([33, 133, 362, 263], dtype=np.int64)
    forehead = np.array([10, 109, 338, 67, 297, 151, 9, 8], dtype=np.int64)
    return np.unique(np.concatenate([groups["nose"], eye_corners, forehead, np.array([234, 454])]))

"""The face's raw 3-D shape: MediaPipe's face landmarker run on a public-domain portrait.

Why this source: MediaPipe's 478 landmarks are the points our face preprocessing detects
on every user portrait, so building the model's face from the same topology makes the
landmark correspondence exact. The portrait is scikit-image's ``astronaut()`` (NASA,
public domain, ships with scikit-image), so the generator needs no download. The
landmarker runs on the CPU through TFLite/XNNPACK and is deterministic.
"""

from __future__ import annotations

import numpy as np

IRIS_CENTRE_RIGHT = 468  # subject's right eye (image left)
IRIS_CENTRE_LEFT = 473   # subject's left eye (image right)
N_FACE_POINTS = 468
N_POINTS_WITH_IRIS = 478


def source_portrait() -> np.ndarray:
    """(H, W, 3) uint8 RGB: scikit-image's public-domain astronaut portrait (512 x 512)."""
    from skimage import data
    return np.ascontiguousarray(data.astronaut())


def detect_landmarks(image_rgb: np.ndarray) -> np.ndarray:
    """Run MediaPipe Face Mesh (with iris refinement) -> (478, 3) normalised landmarks.

    x, y are fractions of the image width/height (y down); z is depth in roughly the units
    of x (smaller = nearer the camera), MediaPipe's convention.
    """
    from mediapipe.python.solutions import face_mesh

    with face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1,
                            min_detection_confidence=0.5) as mesh:
        result = mesh.process(np.ascontiguousarray(image_rgb))
    if not result.multi_face_landmarks:
        raise RuntimeError("MediaPipe found no face in the source portrait")
    points = np.array([[p.x, p.y, p.z] for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
    if points.shape != (N_POINTS_WITH_IRIS, 3):
        raise RuntimeError(f"expected {N_POINTS_WITH_IRIS} landmarks with iris refinement, got {points.shape[0]}")
    return points


def landmarks_to_head_axes(points_normalised: np.ndarray, width: int, height: int,
                           interpupillary_m: float) -> np.ndarray:
    """Normalised MediaPipe landmarks (478, 3) -> metres in head axes, not yet aligned.

    Image x (right) -> +X (the subject's left), image y (down) -> -Y, depth z (towards the
    camera negative) -> -Z; pixels become metres by making the distance between the iris
    centres ``interpupillary_m``. The result is centred on the mean face point.
    """
    pixels = points_normalised * np.array([width, height, width], dtype=np.float64)
    head = pixels * np.array([1.0, -1.0, -1.0])
    ipd_pixels = np.linalg.norm(head[IRIS_CENTRE_LEFT] - head[IRIS_CENTRE_RIGHT])
    head *= interpupillary_m / ipd_pixels
    return head - head[:N_FACE_POINTS].mean(axis=0)

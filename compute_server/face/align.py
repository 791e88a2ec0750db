"""Where the aligned portrait crop lies: a similarity from landmarks (FFHQ-style).

The convention (documented in docs/preprocessing.md):

- Eye centres ``e_l``, ``e_r``: mean of each eye's 16 contour landmarks (stable under gaze
  and blinks); mouth centre ``m``: midpoint of the mouth corners; ``eye_mid`` between the eyes.
- Roll: the crop is rotated so the line from the subject's right eye to their left eye is
  horizontal (eyes level).
- Face size: ``max(2.0 * |e_l - e_r|, 1.8 * |m - eye_mid|)`` -- FFHQ's formula -- but with
  the 3-D landmark distances (MediaPipe's depth is in the same pixel units as x), so it
  stays the same when the head turns or nods instead of shrinking with the projection.
- Crop side: ``2 * margin * face_size`` (``margin`` 1.0 is FFHQ's framing; the default adds
  room for hair volume, the whole skull and some neck).
- Centre: the point between the eyes (FFHQ uses ``eye_mid + 0.1 * (m - eye_mid)``; a full
  head with hair above and some neck below is centred higher), moved back towards the
  middle of the head by ``HEAD_CENTRE_DEPTH * face_size`` along the face's 3-D forward
  direction (normal of the mesh's best-fit plane), so a turned head stays centred instead
  of the back of the head being cut off.

Everything here is plain numpy on (478, 3) landmark arrays in pixels (x right, y down, z
MediaPipe's depth in pixels, smaller = closer to the camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import landmark_indices as idx
from .warp import similarity_matrix

FFHQ_EYE_FACTOR = 2.0
FFHQ_MOUTH_FACTOR = 1.8
# FFHQ centres at eye_mid + 0.1 * (mouth - eye_mid); a full head with hair and a bit of
# neck is centred closer to the eye line (the eyes sit at half the skull-to-chin height).
CENTRE_TOWARDS_MOUTH = 0.0
# Distance from the eye/mouth plane back to the middle of the head, in face-size units
# (an adult head: eye plane ~8.5 cm in front of the skull's centre, face size ~12.6 cm).
HEAD_CENTRE_DEPTH = 0.6
DEFAULT_MARGIN = 1.4


@dataclass(frozen=True)
class FaceGeometry:
    """Measurements the crop is built from; all in the landmarks' pixel units.

    eye_left, eye_right, mouth: (3,) points (subject's left/right).
    roll_rad: angle of the right-to-left eye line from the image +x axis (y down, so
    positive = the subject's left eye lower in the image).
    face_size_px: FFHQ's face size from 3-D distances. forward: (3,) unit vector out of
    the face (towards the camera has negative z).
    """

    eye_left: np.ndarray
    eye_right: np.ndarray
    mouth: np.ndarray
    roll_rad: float
    face_size_px: float
    forward: np.ndarray

    @property
    def eye_mid(self) -> np.ndarray:
        return (self.eye_left + self.eye_right) / 2.0


def face_geometry(landmarks: np.ndarray) -> FaceGeometry:
    """landmarks: (478, 3) or (468+, 3) pixel coordinates of one face."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < idx.N_MESH_LANDMARKS or points.shape[1] != 3:
        raise ValueError(f"landmarks must be (478, 3), got {points.shape}")
    eye_left = points[list(idx.LEFT_EYE)].mean(axis=0)
    eye_right = points[list(idx.RIGHT_EYE)].mean(axis=0)
    mouth = (points[idx.MOUTH_LEFT_CORNER] + points[idx.MOUTH_RIGHT_CORNER]) / 2.0
    eye_mid = (eye_left + eye_right) / 2.0
    eye_to_eye = eye_left - eye_right
    eye_to_mouth = mouth - eye_mid
    roll_rad = math.atan2(eye_to_eye[1], eye_to_eye[0])
    face_size = max(FFHQ_EYE_FACTOR * float(np.linalg.norm(eye_to_eye)),
                    FFHQ_MOUTH_FACTOR * float(np.linalg.norm(eye_to_mouth)))
    forward = _mesh_normal(points[: idx.N_MESH_LANDMARKS])
    return FaceGeometry(eye_left, eye_right, mouth, roll_rad, face_size, forward)


def _mesh_normal(mesh_points: np.ndarray) -> np.ndarray:
    """(3,) unit normal of the face mesh's best-fit plane, pointing towards the camera (-z).

    The mesh is about half as deep as it is wide or tall, so its least principal axis is
    the face's forward direction; using all 468 points makes it insensitive to expression
    (an open mouth moves a handful of points, not the plane).
    """
    centred = mesh_points - mesh_points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    normal = axes[-1]
    return normal if normal[2] < 0 else -normal


def crop_to_source_transform(landmarks: np.ndarray, size: int, *, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(3, 3) similarity mapping crop pixels (size x size) to the landmarks' image pixels.

    landmarks: (478, 3) in source pixels. margin: crop side in units of FFHQ's crop side.
    """
    if size < 1 or not (margin > 0):
        raise ValueError(f"size must be >= 1 and margin > 0, got {size}, {margin}")
    geometry = face_geometry(landmarks)
    if not geometry.face_size_px > 0:
        raise ValueError("degenerate landmarks: the eyes and mouth coincide")
    centre = (geometry.eye_mid + CENTRE_TOWARDS_MOUTH * (geometry.mouth - geometry.eye_mid))[:2]
    centre = centre - HEAD_CENTRE_DEPTH * geometry.face_size_px * geometry.forward[:2]
    side_px = 2.0 * margin * geometry.face_size_px
    scale = side_px / size  # source px per crop px
    # crop centre (size/2, size/2) -> centre; crop +x -> along the eye line.
    rotation_scale = similarity_matrix(scale, geometry.roll_rad, (0.0, 0.0))
    offset = centre - rotation_scale[:2, :2] @ np.array([size / 2.0, size / 2.0])
    rotation_scale[:2, 2] = offset
    return rotation_scale


def square_box_transform(box: tuple[float, float, float, float], size: int, *, expand: float) -> np.ndarray:
    """(3, 3) axis-aligned crop_to_source for a square of side ``expand * max(w, h)``
    centred on ``box`` (x0, y0, x1, y1, source pixels), sampled at ``size`` pixels."""
    x0, y0, x1, y1 = box
    side = expand * max(x1 - x0, y1 - y0, 1e-6)
    scale = side / size
    return similarity_matrix(scale, 0.0, ((x0 + x1) / 2.0 - side / 2.0, (y0 + y1) / 2.0 - side / 2.0))

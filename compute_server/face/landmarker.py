"""Find faces and their 478 landmarks in an image or a video frame.

Still images take a two-stage path that works for any face size: both BlazeFace detectors
(short range for large faces, full range for small/distant ones) propose face boxes; each
box is cut out as a square three times its size, resampled to ``ROI_SIZE`` pixels, and the
FaceMesh (with iris refinement) runs on that cut-out, so a 60 px face in a 24-megapixel
photo gets the same landmark quality as a selfie. Video frames use FaceMesh's tracking mode
(landmarks of frame t seed the search in frame t+1) and fall back to the still-image path
on frames where the tracker loses the face.

All coordinates are source pixels (centres at +0.5); depth z is MediaPipe's relative depth
scaled like x (normalized z * width), smaller = closer to the camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import landmark_indices as idx
from . import mediapipe_runtime as mp_runtime
from .align import square_box_transform
from .face_boxes import Box, TiledFaceSearch, box_iou
from .visibility import landmark_visibility
from .warp import transform_points, warp_to_crop

ROI_SIZE = 384
ROI_EXPAND = 3.0  # cut-out side / detector box side: the face fills a third of it
DETECTOR_MIN_CONFIDENCE = 0.4
SAME_FACE_IOU = 0.4
MAX_MESH_ATTEMPTS_PER_FACE = 4  # bounds the work on crowds and face-like textures


@dataclass
class FaceDetection:
    """One face in one image.

    landmarks: (478, 3) float32 pixels (x, y, depth z). box: (x0, y0, x1, y1) of the 468
    mesh points in pixels. score: BlazeFace confidence in [0, 1] of the detection the mesh
    was fitted from (in video mode a tracked face keeps its track's score).
    visibility: (478,) float32 in [0, 1], see ``visibility.landmark_visibility``.
    """

    landmarks: np.ndarray
    box: Box
    score: float
    visibility: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.visibility is None:  # built by hand (tests, other tools): trust every landmark
            self.visibility = np.ones(len(self.landmarks), np.float32)

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


def landmark_box(landmarks: np.ndarray) -> Box:
    """(x0, y0, x1, y1) of the 468 mesh points of a (478, 3) array."""
    mesh = landmarks[: idx.N_MESH_LANDMARKS, :2]
    x0, y0 = mesh.min(axis=0)
    x1, y1 = mesh.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _mesh_landmarks(result: Any, width: int, height: int) -> list[np.ndarray]:
    """FaceMesh result -> list of (478, 3) float32 pixel arrays."""
    faces = []
    for face in result.multi_face_landmarks or []:
        normalized = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
        if normalized.shape[0] != idx.N_LANDMARKS:
            raise RuntimeError(f"FaceMesh returned {normalized.shape[0]} landmarks, expected {idx.N_LANDMARKS}")
        faces.append((normalized * np.array([width, height, width])).astype(np.float32))
    return faces


def _detector_boxes(result: Any, width: int, height: int) -> list[tuple[Box, float]]:
    """FaceDetection result -> [(box in pixels, score)]."""
    boxes = []
    for detection in result.detections or []:
        rel = detection.location_data.relative_bounding_box
        box = (rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height)
        if box[2] > box[0] and box[3] > box[1]:
            boxes.append((box, float(detection.score[0])))
    return boxes


def _contains(box: Box, point: tuple[float, float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _check_image(image_rgb: np.ndarray) -> np.ndarray:
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
    return np.ascontiguousarray(image_rgb)


class _StillImagePath:
    """Detectors + a static FaceMesh: the box-then-cut-out path described above."""

    def __init__(self, max_faces: int):
        self.max_faces = max_faces
        self.short_range = mp_runtime.face_detection(full_range=False, min_confidence=DETECTOR_MIN_CONFIDENCE)
        self.full_range = mp_runtime.face_detection(full_range=True, min_confidence=DETECTOR_MIN_CONFIDENCE)
        self.mesh = mp_runtime.face_mesh(static_image_mode=True, max_faces=2)

    def _short(self, image_rgb: np.ndarray) -> list[tuple[Box, float]]:
        return _detector_boxes(self.short_range.process(image_rgb), image_rgb.shape[1], image_rgb.shape[0])

    def _full(self, image_rgb: np.ndarray) -> list[tuple[Box, float]]:
        return _detector_boxes(self.full_range.process(image_rgb), image_rgb.shape[1], image_rgb.shape[0])

    def whole_image_boxes(self, image_rgb: np.ndarray) -> list[tuple[Box, float]]:
        """Both detectors on the whole image only (cheap; for scoring tracked faces)."""
        return self._short(image_rgb) + self._full(image_rgb)

    def search(self, image_rgb: np.ndarray) -> TiledFaceSearch:
        """Candidate boxes at every scale (see face_boxes.py)."""
        return TiledFaceSearch(image_rgb, [self._short, self._full], self._full)

    def mesh_for_box(self, image_rgb: np.ndarray, box: Box) -> np.ndarray | None:
        """(478, 3) landmarks of the face inside ``box`` in image pixels, or None."""
        roi_to_image = square_box_transform(box, ROI_SIZE, expand=ROI_EXPAND)
        roi = warp_to_crop(image_rgb, roi_to_image, ROI_SIZE, border="constant")
        faces = _mesh_landmarks(self.mesh.process(roi), ROI_SIZE, ROI_SIZE)
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        candidates = [transform_points(face, roi_to_image) for face in faces]
        candidates = [c for c in candidates if _contains(landmark_box(c), centre)]  # the box's face, not a neighbour
        if not candidates:
            return None
        return min(candidates, key=lambda c: float(np.linalg.norm(c[:, :2].mean(axis=0) - np.asarray(centre))))

    def detect(self, image_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """[(landmarks (478, 3), score)] of distinct faces, in the order found (large first)."""
        faces: list[tuple[np.ndarray, float]] = []
        attempts = 0
        search = self.search(image_rgb)
        for boxes in search.levels():
            for box, score in sorted(boxes, key=lambda b: -(b[0][2] - b[0][0]) * (b[0][3] - b[0][1])):
                centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
                if attempts >= MAX_MESH_ATTEMPTS_PER_FACE * self.max_faces:
                    return faces
                if any(_contains(landmark_box(other), centre) for other, _ in faces):
                    continue  # a part or a duplicate of a face we have
                attempts += 1
                landmarks = self.mesh_for_box(image_rgb, box)
                if landmarks is None:
                    continue
                if any(box_iou(landmark_box(landmarks), landmark_box(other)) >= SAME_FACE_IOU for other, _ in faces):
                    continue
                faces.append((landmarks, score))
                search.add_verified(box)
        return faces

    def close(self) -> None:
        for solution in (self.short_range, self.full_range, self.mesh):
            solution.close()


class FaceLandmarker:
    """Reusable face finder for still images (``static_image_mode=True``) or video frames.

    Not thread-safe (MediaPipe graphs are not); create one per thread, or use
    ``thread_cache.still_image_landmarker()``. Close it (or use ``with``) to stop its
    native threads. In video mode, call ``reset()`` between unrelated clips.
    """

    def __init__(self, *, static_image_mode: bool, max_faces: int = 4):
        if max_faces < 1:
            raise ValueError("max_faces must be >= 1")
        self.static_image_mode = static_image_mode
        self.max_faces = max_faces
        self._still: _StillImagePath | None = None
        self._tracker: mp_runtime.Solution | None = None
        self._previous: list[FaceDetection] = []
        if static_image_mode:
            self._still = _StillImagePath(max_faces)
        else:
            self._tracker = mp_runtime.face_mesh(static_image_mode=False, max_faces=max_faces)
        self._closed = False

    def _still_path(self) -> _StillImagePath:
        if self._still is None:
            self._still = _StillImagePath(self.max_faces)
        return self._still

    def detect(self, image_rgb: np.ndarray) -> list[FaceDetection]:
        """All faces in ``image_rgb`` (H, W, 3) uint8 RGB, largest box first (at most max_faces)."""
        if self._closed:
            raise RuntimeError("this FaceLandmarker was closed")
        image_rgb = _check_image(image_rgb)
        height, width = image_rgb.shape[:2]
        if self._tracker is not None:
            pairs = self._tracked_faces(image_rgb)
        else:
            pairs = self._still_path().detect(image_rgb)
        faces = [FaceDetection(landmarks=lm, box=landmark_box(lm), score=score,
                               visibility=landmark_visibility(lm, (width, height))) for lm, score in pairs]
        faces.sort(key=lambda f: -f.area)
        faces = faces[: self.max_faces]
        self._previous = faces
        return faces

    def _tracked_faces(self, image_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        height, width = image_rgb.shape[:2]
        tracked = _mesh_landmarks(self._tracker.process(image_rgb), width, height)
        if not tracked:  # the tracker lost the face: search the whole frame again
            return self._still_path().detect(image_rgb)
        pairs: list[tuple[np.ndarray, float]] = []
        unscored: list[np.ndarray] = []
        for landmarks in tracked:
            box = landmark_box(landmarks)
            match = max(self._previous, key=lambda f: box_iou(box, f.box), default=None)
            if match is not None and box_iou(box, match.box) >= 0.3:
                pairs.append((landmarks, match.score))
            else:
                unscored.append(landmarks)
        if unscored:  # a new track: score it with the detectors on this frame
            detector_boxes = self._still_path().whole_image_boxes(image_rgb)
            for landmarks in unscored:
                box = landmark_box(landmarks)
                scores = [s for b, s in detector_boxes if _contains(box, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))]
                # No detector box: FaceMesh's own detector still passed its 0.5 threshold.
                pairs.append((landmarks, max(scores, default=0.5)))
        return pairs

    def landmarks_near(self, image_rgb: np.ndarray, expected_box: Box, *, min_iou: float = 0.5) -> np.ndarray | None:
        """(478, 3) landmarks of the face in ``image_rgb`` overlapping ``expected_box``.

        For an image already framed on one face (an aligned crop): the mesh runs on the
        whole image at full resolution, without the box search. None if no face found
        there overlaps ``expected_box`` (x0, y0, x1, y1) by ``min_iou``.
        """
        image_rgb = _check_image(image_rgb)
        mesh = self._still_path().mesh
        faces = _mesh_landmarks(mesh.process(image_rgb), image_rgb.shape[1], image_rgb.shape[0])
        best = max(faces, key=lambda lm: box_iou(landmark_box(lm), expected_box), default=None)
        if best is None or box_iou(landmark_box(best), expected_box) < min_iou:
            return None
        return best

    def reset(self) -> None:
        """Forget the faces tracked so far (video mode); harmless for still images."""
        self._previous = []
        if self._tracker is not None:
            self._tracker.reset()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tracker is not None:
            self._tracker.close()
        if self._still is not None:
            self._still.close()

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Portrait bytes -> PreparedPortrait: the aligned square crop, its matte and 478 landmarks.

The stages, each in its own module: decode (decode.py) -> find faces at every scale
(landmarker.py) -> pick the largest -> crop transform from its landmarks (align.py) ->
resample (warp.py) -> landmarks again on the upright, well-framed crop (more accurate than
the source pass; the mapped source landmarks are the fallback) -> visibility
(visibility.py) -> matte (matte.py) -> is it a person's face (person_check.py; animals are
refused here, within a second, instead of after minutes of fitting and optimization).
The crop convention is in docs/preprocessing.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from compute_server.errors import UserError

from . import landmark_indices as idx
from . import thread_cache
from .align import DEFAULT_MARGIN, crop_to_source_transform
from .decode import DEFAULT_MAX_PIXELS, decode_image_with_alpha
from .landmarker import FaceDetection, FaceLandmarker, landmark_box
from .letterbox import picture_box
from .matte import foreground_colours, portrait_matte, segment_person
from .person_check import FaceEvidence, face_evidence, refuse_non_person
from .visibility import landmark_visibility
from .warp import crop_validity, transform_points, warp_to_crop

DEFAULT_SIZE = 512
SMALL_FACE_PX = 100  # below this (source pixels), the crop is an upscale: warn
# Warn when the person touches the photo's or the crop's edge above the mouth along more
# than this fraction of the crop side (the head or hair is cut off).
CUT_OFF_FRACTION = 0.03


@dataclass
class PreparedPortrait:
    """A portrait ready for fitting. S = size; all arrays are numpy.

    image: (S, S, 3) float32 in [0, 1], the aligned crop (replicated edge pixels where it
        leaves the photo; see ``valid``), with the person's own colours where the matte is
        soft (``matte.foreground_colours``: no background fringe in the hair).
    matte: (S, S) float32 in [0, 1], person foreground, 0 outside the photo.
    landmarks: (478, 3) float32 crop pixels: x, y (centres at +0.5), z = MediaPipe's
        relative depth in crop pixels (smaller = closer).
    landmarks_visible: (478,) float32 in [0, 1] confidence that each landmark is visible
        (faces the camera and lies on real pixels).
    crop_to_source: (3, 3) float64 similarity, crop pixels -> source pixels.
    source_size: (width, height) of the decoded, upright source.
    source_sha256: hex digest of the original file bytes.
    name: the file name (for messages). warnings: sentences for the user.
    face_box: (x0, y0, x1, y1) of the face's landmarks in source pixels.
    valid: (S, S) float32 in [0, 1], the part of each crop pixel covered by the photo.
    matte_source: "alpha" (the file's transparency) or "segmentation".
    landmarks_source: "crop" (detected on the crop) or "source" (mapped from the photo).
    face_score: detector confidence of the chosen face. margin: the framing used.
    face_evidence: how much the face looks like a person's (person_check.py); None for a
        portrait built by hand.
    """

    image: np.ndarray
    matte: np.ndarray
    landmarks: np.ndarray
    landmarks_visible: np.ndarray
    crop_to_source: np.ndarray
    source_size: tuple[int, int]
    source_sha256: str
    name: str
    warnings: list[str]
    face_box: tuple[float, float, float, float]
    valid: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    matte_source: str = "segmentation"
    landmarks_source: str = "crop"
    face_score: float = 0.0
    margin: float = DEFAULT_MARGIN
    face_evidence: FaceEvidence | None = None

    def __post_init__(self) -> None:
        if self.valid is None:  # a portrait built by hand (tests, other tools): all real pixels
            self.valid = np.ones(self.image.shape[:2], np.float32)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def source_to_crop(self) -> np.ndarray:
        """(3, 3) inverse of ``crop_to_source``."""
        return np.linalg.inv(self.crop_to_source)


def no_face_error(name: str) -> UserError:
    return UserError("no_face", f"No face found in {name}. Use a photo where the face is clearly visible, frontal or "
                                f"up to ~60 degrees turned, and at least ~80 px wide.", name=name)


def prepare_portrait(data: bytes, name: str, *, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
                     max_pixels: int = DEFAULT_MAX_PIXELS, require_person: bool = True) -> PreparedPortrait:
    """Decode, find the largest face, align, matte and landmark one portrait file.

    data: the file's bytes (JPEG, PNG, WebP, ...). name: its file name, used in messages.
    size: crop side in pixels. margin: crop side in units of FFHQ's crop side (1.0 = FFHQ).
    require_person: refuse faces that do not look like a person's (an animal); False only
    to measure the evidence (bench.face_evidence).
    Raises UserError "bad_image" (unreadable/too large/too small) or "no_face" (no face, or
    not a person's).
    """
    if size < 64:
        raise ValueError(f"crop size must be at least 64, got {size}")
    decoded = decode_image_with_alpha(data, name, max_pixels=max_pixels)
    landmarker = thread_cache.still_image_landmarker()
    faces, upside_down = _detect_upright_or_upside_down(landmarker, decoded.rgb)
    if not faces:
        raise no_face_error(name)
    face = faces[0]
    warnings = _face_warnings(name, faces)
    if upside_down:
        warnings.append(f"{name}: the face was upside down in the picture; it was turned upright.")

    crop_to_source = crop_to_source_transform(face.landmarks, size, margin=margin)
    crop_rgb = warp_to_crop(decoded.rgb, crop_to_source, size, border="replicate")
    valid = crop_validity(decoded.size, crop_to_source, size, picture_box(decoded.rgb))
    alpha_crop = None
    if decoded.alpha is not None:
        alpha_crop = warp_to_crop(decoded.alpha.astype(np.float32) / 255.0, crop_to_source, size, border="constant")

    crop_landmarks, landmarks_source = _crop_landmarks(landmarker, crop_rgb, face, crop_to_source)
    if landmarks_source == "source":
        warnings.append(f"{name}: the face landmarks could not be refined on the aligned crop; using those found "
                        "on the full photo (slightly less precise).")
    matte = portrait_matte(crop_rgb, valid, thread_cache.portrait_segmenter(), alpha_crop=alpha_crop)
    person = matte.coarse if matte.coarse is not None else segment_person(crop_rgb, thread_cache.portrait_segmenter())
    evidence = face_evidence(crop_rgb, crop_landmarks, landmarks_source, person, thread_cache.face_cascades())
    if require_person:
        refuse_non_person(evidence, name)
    foreground = matte.coarse if matte.coarse is not None else alpha_crop
    mouth_y = float(crop_landmarks[[idx.MOUTH_LEFT_CORNER, idx.MOUTH_RIGHT_CORNER], 1].mean())
    if head_cut_off_length(foreground, valid, mouth_y) > CUT_OFF_FRACTION * size:
        warnings.append(f"{name}: the head or hair reaches the edge of the photo (or of the crop), so part of it is "
                        "cut off; a photo with more space around the head gives a more complete avatar.")
    return PreparedPortrait(
        image=foreground_colours(crop_rgb.astype(np.float32) / 255.0, matte.matte),
        matte=matte.matte,
        landmarks=crop_landmarks.astype(np.float32),
        landmarks_visible=landmark_visibility(crop_landmarks, (size, size), valid),
        crop_to_source=crop_to_source,
        source_size=decoded.size,
        source_sha256=hashlib.sha256(data).hexdigest(),
        name=name,
        warnings=warnings,
        face_box=face.box,
        valid=valid,
        matte_source=matte.source,
        landmarks_source=landmarks_source,
        face_score=face.score,
        margin=margin,
        face_evidence=evidence,
    )


def _crop_landmarks(landmarker: FaceLandmarker, crop_rgb: np.ndarray, face: FaceDetection,
                    crop_to_source: np.ndarray) -> tuple[np.ndarray, str]:
    """(478, 3) float32 landmarks in crop pixels and where they came from: detected on the
    upright, well-framed crop ("crop"), else the source landmarks mapped into it ("source")."""
    expected = transform_points(face.landmarks, np.linalg.inv(crop_to_source))
    on_crop = landmarker.landmarks_near(crop_rgb, landmark_box(expected))
    if on_crop is None:
        return expected.astype(np.float32), "source"
    return on_crop.astype(np.float32), "crop"


def _detect_upright_or_upside_down(landmarker: FaceLandmarker, rgb: np.ndarray) -> tuple[list[FaceDetection], bool]:
    """Faces in ``rgb``; if none, faces in the picture turned 180 degrees (the detectors
    cope with quarter turns but not with upside-down heads), mapped back to ``rgb`` pixels.
    Returns (faces, whether they were found upside down)."""
    faces = landmarker.detect(rgb)
    if faces:
        return faces, False
    height, width = rgb.shape[:2]
    turned = landmarker.detect(np.ascontiguousarray(rgb[::-1, ::-1]))
    half_turn = np.array([[-1.0, 0.0, width], [0.0, -1.0, height], [0.0, 0.0, 1.0]])
    mapped = []
    for face in turned:
        landmarks = transform_points(face.landmarks, half_turn)
        mapped.append(FaceDetection(landmarks=landmarks, box=landmark_box(landmarks), score=face.score,
                                    visibility=face.visibility))
    return mapped, bool(mapped)


def _face_warnings(name: str, faces: list[FaceDetection]) -> list[str]:
    """Sentences about the choice of face: several faces, or a small one."""
    warnings = []
    face = faces[0]
    if len(faces) > 1:
        cx, cy = face.centre
        warnings.append(f"{name}: {len(faces)} faces found; using the largest (centre {cx:.0f},{cy:.0f}).")
    face_px = max(face.box[2] - face.box[0], face.box[3] - face.box[1])
    if face_px < SMALL_FACE_PX:
        warnings.append(f"{name}: the face is only about {face_px:.0f} px tall in the photo, so the crop is an upscale "
                        f"and will look soft; a photo with the face at least {SMALL_FACE_PX} px (ideally 300+) "
                        "gives a sharper avatar.")
    return warnings


def head_cut_off_length(foreground: np.ndarray, valid: np.ndarray, mouth_y: float) -> float:
    """Length in crop pixels of the edge, above the mouth, where the person meets the end of
    the picture: the photo's edge inside the crop (where ``valid`` falls off) or the crop's
    own border. foreground, valid: (S, S) float in [0, 1]; mouth_y: crop pixels.
    """
    size = valid.shape[0]
    real = valid > 0.5
    edge = np.zeros_like(real)
    edge[:-1] |= real[:-1] & ~real[1:]  # real pixel with a padding pixel below/above/right/left
    edge[1:] |= real[1:] & ~real[:-1]
    edge[:, :-1] |= real[:, :-1] & ~real[:, 1:]
    edge[:, 1:] |= real[:, 1:] & ~real[:, :-1]
    edge[[0, -1], :] |= real[[0, -1], :]  # the crop's own border
    edge[:, [0, -1]] |= real[:, [0, -1]]
    rows = np.arange(size)[:, None] < mouth_y
    return float(np.count_nonzero(edge & rows & (foreground > 0.5)))

"""Is the face a person's? A second, independent face detector must agree, within a second.

Why: MediaPipe's detectors are trained on people but now and then find a "face" on an
animal (a panda, a raccoon, a wild dog, a cat's face close up, even a sparrow in our
tests), and FaceMesh then returns a perfectly human-shaped mesh on it. So the landmarks,
the head-model fit's residuals and its shape coefficients look human too and cannot tell;
neither can MediaPipe's own second look (FaceMesh on the aligned crop re-found 13 of 31
such animal faces) nor its person segmenter (15 of 31 read as "person" on the face).
Measured in docs/results.md, "Non-human refusal".

What does tell is a detector of a different kind: OpenCV's Viola-Jones cascades (boosted
Haar features, trained on human faces only; frontal, and profile either way). On the
aligned crop (the face upright, centred, at a fixed size) we count their raw detections
whose box holds the landmarks' centre (``cascade_votes``; no grouping, so the count grows
with how many positions and scales see a face). The shared portraits (paintings, a photo,
the cartoon), driving frames (turned heads included) and the astronaut, in colour,
greyscale and sepia, gave 17 to 256 votes; the animals MediaPipe accepted gave 0 to 7. The
face must reach ``MIN_CASCADE_VOTES``, between the two. Small, turned or blurred faces and
harsh pencil drawings can fall below it (measured: 10 of 175 people, listed in
docs/results.md); the refusal then asks for what raises the votes.

The other two signals are kept in the record (they cost nothing: the crop pass and the
matte's segmentation run anyway) so the figures can be re-measured, but they do not decide.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from compute_server.errors import UserError

from . import landmark_indices as idx

# Shared portraits, driving frames, astronaut in colour, greyscale and sepia: >= 17;
# animals MediaPipe took for a face: <= 7 (docs/results.md, "Non-human refusal").
MIN_CASCADE_VOTES = 10
FRONTAL_CASCADE_FILES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
PROFILE_CASCADE_FILE = "haarcascade_profileface.xml"
CASCADE_INPUT_PX = 256  # the crop is shrunk to this side first: same cost and scale at any crop size
CASCADE_MIN_FACE_FRACTION = 0.2  # of the crop side; the face spans ~0.35 with the default margin
CASCADE_SCALE_STEP = 1.1


@dataclass
class FaceEvidence:
    """How much the chosen face looks like a person's (see the module doc).

    cascade_votes: raw Viola-Jones detections (frontal + profile both ways) holding the
        landmarks' centre on the aligned crop; decides.
    refound_on_crop: FaceMesh found the face again on the aligned crop (recorded only).
    person_on_face: mean person-segmentation probability inside the face outline, [0, 1]
        (recorded only).
    """

    cascade_votes: int
    refound_on_crop: bool
    person_on_face: float

    @property
    def is_person(self) -> bool:
        return self.cascade_votes >= MIN_CASCADE_VOTES

    def summary(self) -> dict:
        return {"cascade_votes": int(self.cascade_votes), "refound_on_crop": bool(self.refound_on_crop),
                "person_on_face": round(float(self.person_on_face), 3)}


class FaceCascades:
    """OpenCV's human face cascades (shipped in the opencv wheel), loaded once per thread."""

    def __init__(self):
        self.frontal = [_load_cascade(name) for name in FRONTAL_CASCADE_FILES]
        self.profile = _load_cascade(PROFILE_CASCADE_FILE)

    def votes(self, crop_rgb: np.ndarray, landmarks: np.ndarray) -> int:
        """Raw cascade detections whose box contains the landmarks' centre.

        crop_rgb: (S, S, 3) uint8 aligned crop. landmarks: (478, 2+) crop pixels.
        The profile cascade sees one side only, so it also runs on the mirrored crop.
        """
        scale = CASCADE_INPUT_PX / crop_rgb.shape[0]
        small = cv2.resize(crop_rgb, (CASCADE_INPUT_PX, CASCADE_INPUT_PX), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        cx, cy = np.asarray(landmarks)[: idx.N_MESH_LANDMARKS, :2].mean(axis=0) * scale
        mirrored = np.ascontiguousarray(grey[:, ::-1])
        runs = [(cascade, grey, cx) for cascade in self.frontal]
        runs += [(self.profile, grey, cx), (self.profile, mirrored, CASCADE_INPUT_PX - cx)]
        min_side = int(CASCADE_MIN_FACE_FRACTION * CASCADE_INPUT_PX)
        total = 0
        for cascade, image, centre_x in runs:
            boxes = cascade.detectMultiScale(image, scaleFactor=CASCADE_SCALE_STEP, minNeighbors=0,
                                             minSize=(min_side, min_side))
            total += sum(1 for x, y, w, h in np.reshape(boxes, (-1, 4)) if x <= centre_x <= x + w and y <= cy <= y + h)
        return total

    def close(self) -> None:
        """Nothing native to stop; here so the thread cache can treat it like a graph."""


def _load_cascade(file_name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + file_name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {file_name} is missing from {cv2.data.haarcascades}")
    return cascade


def face_outline_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool, inside MediaPipe's face oval. landmarks: (478, 2+) pixels."""
    mask = np.zeros((size, size), np.uint8)
    outline = np.round(np.asarray(landmarks)[list(idx.FACE_OVAL), :2]).astype(np.int32)
    cv2.fillPoly(mask, [outline], 1)
    return mask.astype(bool)


def face_evidence(crop_rgb: np.ndarray, landmarks: np.ndarray, landmarks_source: str, person_probability: np.ndarray,
                  cascades: FaceCascades) -> FaceEvidence:
    """Collect the evidence for one aligned crop.

    crop_rgb: (S, S, 3) uint8. landmarks: (478, 2+) crop pixels. landmarks_source: "crop"
    if FaceMesh found them on the crop. person_probability: (S, S) float in [0, 1], the
    person segmentation of the crop.
    """
    inside = face_outline_mask(landmarks, person_probability.shape[0])
    on_face = float(person_probability[inside].mean()) if inside.any() else 0.0
    return FaceEvidence(cascade_votes=cascades.votes(crop_rgb, landmarks), refound_on_crop=landmarks_source == "crop",
                        person_on_face=on_face)


def refuse_non_person(evidence: FaceEvidence, name: str) -> None:
    """Raise UserError "no_face" when the face does not look like a person's."""
    if evidence.is_person:
        return
    raise UserError(
        "no_face",
        f"The face found in {name} does not look like a person's: a second face detector did not confirm it "
        f"({evidence.cascade_votes} of {MIN_CASCADE_VOTES} needed). It may be an animal, a statue or a pattern; "
        "HeadSplat builds human heads only. Use a photo, painting or drawing of a person, with the face clearly "
        "visible and evenly lit, frontal or up to ~60 degrees turned, and at least ~80 px wide.",
        name=name, face_evidence=evidence.summary())

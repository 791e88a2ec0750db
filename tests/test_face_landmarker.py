"""FaceLandmarker on real images, and the quieting of MediaPipe's native logs."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest
import skimage.data

from compute_server.face import landmark_indices as idx
from compute_server.face import thread_cache
from compute_server.face.landmarker import FaceLandmarker
from compute_server.face.mediapipe_runtime import filtered_native_stderr, route_native_log_lines


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    return thread_cache.still_image_landmarker()


def shrink(image: np.ndarray, factor: float) -> np.ndarray:
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def eyes_and_mouth(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (landmarks[list(idx.LEFT_EYE)].mean(0), landmarks[list(idx.RIGHT_EYE)].mean(0),
            landmarks[[idx.MOUTH_LEFT_CORNER, idx.MOUTH_RIGHT_CORNER]].mean(0))


def test_astronaut_face_and_landmarks(landmarker):
    image = skimage.data.astronaut()
    faces = landmarker.detect(image)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (478, 3) and face.landmarks.dtype == np.float32
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # her face, not the flag or the shuttle
    assert 0.5 < face.score <= 1.0
    left, right, mouth = eyes_and_mouth(face.landmarks)
    assert right[0] < left[0]                   # the subject's right eye is on the image's left
    assert max(left[1], right[1]) < mouth[1]    # eyes above the mouth
    iris = face.landmarks[idx.LEFT_IRIS_CENTER]
    assert np.linalg.norm(iris[:2] - left[:2]) < 10  # iris refinement lands in the eye
    assert face.landmarks[idx.NOSE_TIP, 2] < face.landmarks[list(idx.FACE_OVAL), 2].mean()  # nose closer
    assert face.visibility.shape == (478,) and face.visibility.mean() > 0.8


def test_faces_are_found_at_any_scale_largest_first(landmarker):
    astronaut = skimage.data.astronaut()
    canvas = np.full((1500, 2400, 3), 90, np.uint8)
    canvas[100:612, 100:612] = astronaut                        # face ~95 px
    canvas[900:1156, 1700:1956] = shrink(astronaut, 0.5)        # face ~48 px: 2 % of the width
    faces = landmarker.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > 3 * faces[1].area
    big_centre, small_centre = faces[0].centre, faces[1].centre
    assert 100 < big_centre[0] < 612 and 100 < big_centre[1] < 612
    assert 1700 < small_centre[0] < 1956 and 900 < small_centre[1] < 1156
    # Landmarks of the small copy are the big ones scaled: same shape, not a guess.
    big = (faces[0].landmarks[:, :2] - [100, 100]) * 0.5
    small = faces[1].landmarks[:, :2] - [1700, 900]
    assert np.median(np.linalg.norm(big - small, axis=1)) < 2.5


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea", "noise"])
def test_no_face_in_faceless_images(landmarker, name):
    if name == "noise":
        image = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        image = getattr(skimage.data, name)()
    assert landmarker.detect(image) == []


def test_video_mode_tracks_and_recovers():
    astronaut = skimage.data.astronaut()
    blank = np.full_like(astronaut, 128)
    with FaceLandmarker(static_image_mode=False, max_faces=1) as tracker:
        first = tracker.detect(astronaut)
        shifted = tracker.detect(np.roll(astronaut, 6, axis=1))
        assert tracker.detect(blank) == []
        again = tracker.detect(astronaut)
        tracker.reset()
        after_reset = tracker.detect(astronaut)
    assert len(after_reset) == 1
    assert len(first) == len(shifted) == len(again) == 1
    moved = shifted[0].landmarks[:, 0] - first[0].landmarks[:, 0]
    assert abs(float(np.median(moved)) - 6) < 1.5
    assert np.median(np.linalg.norm(again[0].landmarks[:, :2] - first[0].landmarks[:, :2], axis=1)) < 2.0
    assert first[0].score > 0.5 and again[0].score > 0.5
    with pytest.raises(RuntimeError):
        tracker.detect(astronaut)


def test_rejects_wrong_input(landmarker):
    with pytest.raises(ValueError):
        landmarker.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError):
        landmarker.detect(np.zeros((64, 64, 3), np.float32))


# ----------------------------------------------------------------------------- native logs
def test_route_native_log_lines_keeps_errors(caplog):
    text = (
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
        "W0000 00:00:1795513044.252864    5269 inference_feedback_manager.cc:114] Feedback manager requires a "
        "model with a single signature inference. Disabling support for feedback tensors.\n"
        "I0000 00:00:1795513044.252864    5269 gl_context.cc:369] GL version: 3.2\n"
        "W0000 00:00:1795513044.252864    5269 some_calculator.cc:12] something unusual\n"
        "E0000 00:00:1795513044.252864    5269 graph.cc:99] Calculator failed: bad input\n"
        "plain text from another thread\n"
    )
    written: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="compute_server.face.mediapipe_runtime"):
        route_native_log_lines(text, written.append)
    assert written == ["E0000 00:00:1795513044.252864    5269 graph.cc:99] Calculator failed: bad input\n",
                       "plain text from another thread\n"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "something unusual" in warnings[0]


def test_filtered_native_stderr_passes_real_output_through(capfd):
    with filtered_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 00:00:1.0 1 x.cc:1] real error\n")
        with filtered_native_stderr():  # nested: a no-op, no deadlock
            os.write(2, b"nested line\n")
    captured = capfd.readouterr()
    assert "XNNPACK" not in captured.err
    assert "real error" in captured.err and "nested line" in captured.err


def test_creating_graphs_prints_no_noise(capfd):
    with FaceLandmarker(static_image_mode=True, max_faces=1) as fresh:
        fresh.detect(skimage.data.astronaut())
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "Feedback manager" not in err and "NORM_RECT" not in err

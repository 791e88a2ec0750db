"""MediaPipe's legacy "solutions" graphs, created lazily and kept quiet.

Why this module: MediaPipe 0.10.21 ships its face models inside the wheel, so the
``mediapipe.solutions`` graphs (FaceMesh, FaceDetection, SelfieSegmentation) run offline.
Two things about them need care:

- Their C++ side writes TF-Lite / absl log lines straight to file descriptor 2 when a graph
  starts and on its first inference ("Created TensorFlow Lite XNNPACK delegate", "Feedback
  manager requires a model with a single signature ..."). No environment variable silences
  them (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL are ignored by this build). We capture
  fd 2 only around graph creation and the first ``process`` calls, drop the lines we know are
  harmless (sent to this module's logger at DEBUG), route other warnings to Python logging
  and write everything else (errors, fatal messages, unrelated output of other threads)
  back to the real stderr unchanged, so no real error is hidden.
- A graph is not thread-safe and holds native threads: one ``Solution`` per user, closed
  with ``close()`` (or ``with``); ``thread_cache.py`` keeps one set per thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from typing import Any, Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)

# Lines MediaPipe / TF-Lite print on every start that carry no information for a user.
_KNOWN_NOISE = (
    re.compile(r"^INFO: Created TensorFlow Lite .*delegate"),
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"inference_feedback_manager\.cc:\d+\] Feedback manager requires a model"),
    re.compile(r"landmark_projection_calculator\.cc:\d+\] Using NORM_RECT without IMAGE_DIMENSIONS"),
    re.compile(r"gl_context\.cc:\d+\] "),
)
# absl / glog line prefix: severity letter, MMDD, time (this build prints "00:00:<epoch>"),
# thread id, file:line]
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]]+\] ")

# fd 2 is process-wide: only one capture at a time; a nested capture in the same thread
# is a no-op (the outer one sees the output).
_capture_lock = threading.Lock()
_capturing = threading.local()


def route_native_log_lines(text: str, write_stderr: Callable[[str], None]) -> None:
    """Sort captured native stderr text: known noise -> DEBUG, absl INFO -> DEBUG,
    absl WARNING -> Python warning log, everything else back to stderr verbatim."""
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        if not stripped.strip():
            continue
        if any(pattern.search(stripped) for pattern in _KNOWN_NOISE):
            log.debug("mediapipe: %s", stripped)
            continue
        match = _ABSL_LINE.match(stripped)
        if match and match.group(1) == "I":
            log.debug("mediapipe: %s", stripped)
        elif match and match.group(1) == "W":
            log.warning("mediapipe: %s", stripped)
        else:
            write_stderr(line if line.endswith("\n") else line + "\n")


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Capture fd 2 for the duration of the block and route it with ``route_native_log_lines``.

    Output that other threads write to stderr meanwhile is captured too and written back
    afterwards (delayed, never dropped).
    """
    if getattr(_capturing, "active", False):
        yield
        return
    with _capture_lock:
        try:
            saved_fd = os.dup(2)
        except OSError:  # no usable stderr (daemonised): nothing to filter
            yield
            return
        with tempfile.TemporaryFile(mode="w+b") as capture:
            os.dup2(capture.fileno(), 2)
            _capturing.active = True
            try:
                yield
            finally:
                _capturing.active = False
                os.dup2(saved_fd, 2)
                os.close(saved_fd)
                capture.seek(0)
                text = capture.read().decode("utf-8", errors="replace")
                if text:
                    route_native_log_lines(text, lambda line: os.write(2, line.encode("utf-8", "replace")))


def _solutions() -> Any:
    """Import ``mediapipe.solutions`` on first use (it loads a large native library)."""
    with filtered_native_stderr():
        from mediapipe.python import solutions  # noqa: PLC0415
    return solutions


def _has_output(result: Any) -> bool:
    """Whether a solution result carries any output (a face, a mask ...)."""
    return any(getattr(result, name, None) is not None for name in getattr(result, "_fields", ()))


class Solution:
    """One MediaPipe solution graph with a ``process(rgb_uint8)`` that returns its raw result.

    ``factory`` builds the graph. Creation runs a warm-up inference on a small blank image
    under the stderr filter, because the calculators open (and log) on the graph's own
    threads after ``start_run`` returns; ``process`` waits until the graph is idle, so the
    filter window then covers them. Later calls are filtered until the first one that
    produced an output (some calculators log once when they first see a face).
    """

    _WARMUP_IMAGE = np.full((64, 64, 3), 127, dtype=np.uint8)

    def __init__(self, factory: Callable[[Any], Any]):
        with filtered_native_stderr():
            self._graph = factory(_solutions())
            self._graph.process(self._WARMUP_IMAGE)
        self._quiet = False

    def process(self, image_rgb: np.ndarray) -> Any:
        """image_rgb: (H, W, 3) uint8. Returns the solution's outputs (MediaPipe's record)."""
        if self._graph is None:
            raise RuntimeError("this MediaPipe graph was closed")
        image_rgb = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        if self._quiet:
            return self._graph.process(image_rgb)
        with filtered_native_stderr():
            result = self._graph.process(image_rgb)
        self._quiet = _has_output(result)
        return result

    def reset(self) -> None:
        """Forget tracking state (video mode) by restarting the graph."""
        if self._graph is not None:
            with filtered_native_stderr():
                self._graph.reset()
                self._graph.process(self._WARMUP_IMAGE)

    def close(self) -> None:
        if self._graph is not None:
            graph, self._graph = self._graph, None
            graph.close()

    @property
    def closed(self) -> bool:
        return self._graph is None

    def __enter__(self) -> "Solution":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def face_mesh(*, static_image_mode: bool, max_faces: int, min_detection_confidence: float = 0.5,
              min_tracking_confidence: float = 0.5) -> Solution:
    """FaceMesh with attention/iris refinement: 478 landmarks per face."""
    return Solution(lambda s: s.face_mesh.FaceMesh(
        static_image_mode=static_image_mode, max_num_faces=max_faces, refine_landmarks=True,
        min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence))


def face_detection(*, full_range: bool, min_confidence: float) -> Solution:
    """BlazeFace: short range (faces within ~2 m, large in frame) or full range (small faces)."""
    return Solution(lambda s: s.face_detection.FaceDetection(
        model_selection=1 if full_range else 0, min_detection_confidence=min_confidence))


def selfie_segmentation(*, landscape: bool = False) -> Solution:
    """Person segmentation; the general model (256x256 input) unless ``landscape``."""
    return Solution(lambda s: s.selfie_segmentation.SelfieSegmentation(model_selection=1 if landscape else 0))

"""One set of MediaPipe graphs (and OpenCV face cascades) per thread, reused across portraits.

Why: a graph costs a model load to create (~0.1-0.3 s each) and is not thread-safe, so the
server's worker thread keeps its own set and reuses it for every portrait. Graphs are
closed by ``close_thread_resources()`` (call it when a worker thread retires) and, for any
still open, when the interpreter exits.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

from . import mediapipe_runtime as mp_runtime
from .landmarker import FaceLandmarker
from .person_check import FaceCascades

_local = threading.local()
_registry_lock = threading.Lock()
_open_resources: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _cached(key: str, factory: Any) -> Any:
    resources: dict[str, Any] = getattr(_local, "resources", None) or {}
    _local.resources = resources
    resource = resources.get(key)
    if resource is None:
        resource = factory()
        resources[key] = resource
        with _registry_lock:
            _open_resources.add(resource)
    return resource


def still_image_landmarker() -> FaceLandmarker:
    """This thread's still-image FaceLandmarker (up to 4 faces)."""
    return _cached("still_image_landmarker", lambda: FaceLandmarker(static_image_mode=True, max_faces=4))


def portrait_segmenter() -> mp_runtime.Solution:
    """This thread's selfie segmentation graph (general model)."""
    return _cached("portrait_segmenter", lambda: mp_runtime.selfie_segmentation(landscape=False))


def face_cascades() -> FaceCascades:
    """This thread's OpenCV face cascades (for person_check)."""
    return _cached("face_cascades", FaceCascades)


def close_thread_resources() -> None:
    """Close the graphs cached for the calling thread (they are recreated on next use)."""
    resources: dict[str, Any] = getattr(_local, "resources", None) or {}
    _local.resources = {}
    for resource in resources.values():
        resource.close()


@atexit.register
def _close_all() -> None:
    with _registry_lock:
        resources = list(_open_resources)
    for resource in resources:
        try:
            resource.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass

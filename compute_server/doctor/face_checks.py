"""MediaPipe: its face detector, face mesh and selfie segmentation load from the wheel and
find the face in the bundled portrait.

Why run them rather than import them: the models are TF-Lite graphs started by native
code, and what breaks on a user's machine (a wheel for another platform, missing system
libraries such as libGL) breaks when a graph starts, not at ``import mediapipe``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time

from ..errors import UserError
from .portrait import PORTRAIT_NAME, bundled_portrait_jpeg
from .records import FAIL, OK, Check

GROUP = "face"
MEDIAPIPE_FIX = ("pip install mediapipe==0.10.21 (Linux also needs libGL and libEGL: "
                 "apt install libgl1 libegl1)")


def _check(name: str, verdict: str, detail: str, fix: str = "", seconds: float | None = None) -> Check:
    return Check(name, verdict, detail, fix, GROUP, None if seconds is None else round(seconds, 3))


def checks(*, cheap: bool = False) -> list[Check]:
    if importlib.util.find_spec("mediapipe") is None:
        return [_check("mediapipe models", FAIL, "mediapipe is not installed (portraits cannot be prepared)",
                       MEDIAPIPE_FIX)]
    version = importlib.metadata.version("mediapipe")
    if cheap:
        return [_check("mediapipe models", OK, f"mediapipe {version} is installed (models not started for the "
                                               "server's summary)")]
    from ..face.portrait import prepare_portrait

    start = time.perf_counter()
    try:
        portrait = prepare_portrait(bundled_portrait_jpeg(), PORTRAIT_NAME, size=256)
    except UserError as exc:
        return [_check("mediapipe models", FAIL, f"mediapipe {version} ran but {exc.message}",
                       "reinstall mediapipe==0.10.21", time.perf_counter() - start)]
    except Exception as exc:
        return [_check("mediapipe models", FAIL, f"mediapipe {version} failed to start its models "
                                                 f"({type(exc).__name__}: {exc})", MEDIAPIPE_FIX,
                       time.perf_counter() - start)]
    seconds = time.perf_counter() - start
    return [_check("mediapipe models", OK, f"mediapipe {version}: detector, face mesh and segmentation found the "
                                           f"face in the bundled portrait ({len(portrait.landmarks)} landmarks, "
                                           f"score {portrait.face_score:.2f}) in {seconds:.1f} s", seconds=seconds)]

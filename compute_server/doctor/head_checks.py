"""Head models: the built-in head and each configured FLAME file load, and can fit
portraits (they carry MediaPipe's landmark embedding).

Why here and not only in ``server.info``: the server lists a broken FLAME file as an
error entry and carries on, so its owner finds out only when a job asks for it; the
doctor turns that into a failed line with the file named and the fix.
"""

from __future__ import annotations

import time

from ..errors import UserError
from ..head.model import HeadModel
from ..head.registry import is_builtin, load_model_data
from .records import FAIL, OK, WARN, Check, DoctorSettings

GROUP = "head models"
EMBEDDING_FIX = "put mediapipe_landmark_embedding.npz (from the FLAME downloads) next to the model file"


def _check(name: str, verdict: str, detail: str, fix: str = "", seconds: float | None = None) -> Check:
    return Check(name, verdict, detail, fix, GROUP, None if seconds is None else round(seconds, 3))


def head_check(spec: str) -> Check:
    """One head model: loads, and says what it is (parsed arrays are cached by the registry,
    so the server's summary does not parse a FLAME file twice)."""
    name = "built-in head" if is_builtin(spec) else f"head model {spec}"
    start = time.perf_counter()
    try:
        data = load_model_data(spec)
        description = HeadModel(data).describe()
    except UserError as exc:
        fix = ("reinstall headsplat (the built-in head asset is part of the package)" if is_builtin(spec) else
               "download the model again from https://flame.is.tue.mpg.de or remove this --head-model")
        return _check(name, FAIL, exc.message, fix, time.perf_counter() - start)
    except Exception as exc:
        return _check(name, FAIL, f"{type(exc).__name__}: {exc}",
                      "reinstall headsplat" if is_builtin(spec) else "remove this --head-model or replace the file",
                      time.perf_counter() - start)
    seconds = time.perf_counter() - start
    detail = (f"{description['name']}: {description['n_verts']} vertices, {description['n_shape']} shape and "
              f"{description['n_expr']} expression components, {description['n_landmarks']} landmarks")
    if not description["can_fit_landmarks"]:
        return _check(name, WARN, detail + "; no MediaPipe landmark embedding, so portraits cannot be fitted to it",
                      EMBEDDING_FIX, seconds)
    return _check(name, OK, detail, seconds=seconds)


def checks(settings: DoctorSettings) -> list[Check]:
    specs = ["builtin"] + [s for s in settings.head_models if not is_builtin(s)]
    return [head_check(spec) for spec in specs]

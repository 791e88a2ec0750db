"""Which head model to use: the built-in open head or a FLAME file the user configured.

``load_head_model(spec)`` is the one entry point: ``None`` or ``"builtin"`` loads the
committed built-in asset; anything else is a path to a FLAME pickle (2020
``generic_model.pkl``, 2023, 2023 Open), optionally with MediaPipe's landmark embedding
(``mediapipe_landmark_embedding.npz`` from the FLAME downloads, given explicitly or found
next to the pickle) and GaussianAvatars-style teeth. Everything a user can get wrong
becomes ``UserError("bad_model", ...)`` with a sentence naming the file.

Parsed model arrays are cached per (file, size, mtime, options), so server.info listing
the configured models and the worker loading one do not parse the same 50 MB pickle twice.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict

import numpy as np
import torch

from ..errors import UserError
from .flame_pickle import FlameFileError, FlameOptions, load_flame_file
from .model import HeadModel
from .model_data import MEDIAPIPE_LANDMARK_COUNT, HeadModelData, ModelDataError, load_model_npz

BUILTIN_ASSET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "builtin_head.npz")
LANDMARK_EMBEDDING_NAMES = ("mediapipe_landmark_embedding.npz",
                            os.path.join("mediapipe_landmark_embedding", "mediapipe_landmark_embedding.npz"))
_CACHE_SIZE = 4
_cache: "OrderedDict[tuple, HeadModelData]" = OrderedDict()
_cache_lock = threading.Lock()


def is_builtin(spec: str | None) -> bool:
    return spec is None or str(spec).strip().lower() in ("", "builtin")


def load_head_model(spec: str | None = None, *, device="cpu", landmark_embedding: str | None = None,
                    with_teeth: bool = False, n_shape: int | None = None, n_expr: int | None = None,
                    dtype: torch.dtype = torch.float32) -> HeadModel:
    """Load a head model as a ``HeadModel`` on ``device``.

    spec: None / "builtin" or a FLAME .pkl path. landmark_embedding: MediaPipe landmark
    embedding .npz for FLAME (default: looked for next to the pickle; without one the model
    loads but has no landmarks). with_teeth: add teeth rows to FLAME (the built-in head
    always has teeth). n_shape / n_expr: keep only the first components (e.g. 100 / 50 as
    GaussianAvatars does).
    """
    data = load_model_data(spec, landmark_embedding=landmark_embedding, with_teeth=with_teeth,
                           n_shape=n_shape, n_expr=n_expr)
    return HeadModel(data, dtype=dtype).to(device)


def load_model_data(spec: str | None = None, *, landmark_embedding: str | None = None, with_teeth: bool = False,
                    n_shape: int | None = None, n_expr: int | None = None) -> HeadModelData:
    """Like ``load_head_model`` but returns the numpy record (a private copy)."""
    if is_builtin(spec):
        if landmark_embedding is not None:
            raise UserError("bad_model", "a landmark embedding file only applies to FLAME models; "
                            "the built-in head has its own")
        data = _cached(("builtin", BUILTIN_ASSET, _stamp(BUILTIN_ASSET)), _read_builtin)
        return _truncate(data, n_shape, n_expr, "the built-in head")
    path = os.path.abspath(os.path.expanduser(str(spec)))
    embedding = _find_embedding(path, landmark_embedding)
    key = ("flame", path, _stamp(path), embedding, _stamp(embedding) if embedding else None, with_teeth,
           n_shape, n_expr)
    return _cached(key, lambda: _read_flame(path, embedding, with_teeth, n_shape, n_expr))


def _stamp(path: str) -> tuple:
    try:
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns)
    except OSError:
        return (None, None)


def _cached(key: tuple, make) -> HeadModelData:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return copy.deepcopy(_cache[key])
    data = make()
    with _cache_lock:
        _cache[key] = data
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return copy.deepcopy(data)


def _read_builtin() -> HeadModelData:
    if not os.path.exists(BUILTIN_ASSET):
        raise RuntimeError(f"the built-in head asset {BUILTIN_ASSET} is missing; regenerate it with "
                           "`python -m tools.head_builder.generate` (from the project root)")
    data = load_model_npz(BUILTIN_ASSET)
    data.source_path = "builtin"
    from .model_data import file_sha256
    data.source_sha256 = file_sha256(BUILTIN_ASSET)
    return data


def _truncate(data: HeadModelData, n_shape: int | None, n_expr: int | None, what: str) -> HeadModelData:
    if n_shape is None and n_expr is None:
        return data
    n_shape = data.n_shape if n_shape is None else n_shape
    n_expr = data.n_expr if n_expr is None else n_expr
    if not (0 <= n_shape <= data.n_shape and 0 <= n_expr <= data.n_expr):
        raise UserError("bad_model", f"{what} has {data.n_shape} shape and {data.n_expr} expression components; "
                        f"{n_shape} and {n_expr} were requested")
    data.shapedirs = data.shapedirs[:, :, :n_shape]
    data.exprdirs = data.exprdirs[:, :, :n_expr]
    data.expression_names = data.expression_names[:n_expr]
    data.shape_names = data.shape_names[:n_shape]
    data.validate()
    return data


def _find_embedding(pickle_path: str, explicit: str | None) -> str | None:
    if explicit is not None:
        return os.path.abspath(os.path.expanduser(explicit))
    folder = os.path.dirname(pickle_path)
    for name in LANDMARK_EMBEDDING_NAMES:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_flame(path: str, embedding: str | None, with_teeth: bool, n_shape: int | None,
                n_expr: int | None) -> HeadModelData:
    data = load_flame_file(path, FlameOptions(n_shape=n_shape, n_expr=n_expr))
    if embedding is not None:
        attach_landmark_embedding(data, embedding)
    else:
        data.notes.append("no MediaPipe landmark embedding: put mediapipe_landmark_embedding.npz (from the FLAME "
                          "downloads) next to the model file to enable landmark fitting")
    if with_teeth:
        from .flame_teeth import add_flame_teeth
        try:
            data = add_flame_teeth(data)
        except FlameFileError as exc:
            raise UserError("bad_model", f"FLAME model file {path}: teeth cannot be added because {exc}; "
                            "load it without teeth") from None
    return data


def attach_landmark_embedding(data: HeadModelData, path: str) -> None:
    """Read FLAME's MediaPipe landmark embedding into ``data`` (UserError if it does not fit).

    The file holds lmk_face_idx (L,), lmk_b_coords (L, 3) and landmark_indices (L,), the
    MediaPipe face-mesh index of each landmark (the official file has L = 105)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            face_idx = np.asarray(z["lmk_face_idx"], dtype=np.int64).reshape(-1)
            bary = np.asarray(z["lmk_b_coords"], dtype=np.float64)
            mp_index = np.asarray(z["landmark_indices"], dtype=np.int64).reshape(-1)
    except FileNotFoundError:
        raise UserError("bad_model", f"landmark embedding file {path} does not exist") from None
    except KeyError as exc:
        raise UserError("bad_model", f"landmark embedding file {path} lacks the array {exc}; it should be "
                        "FLAME's mediapipe_landmark_embedding.npz") from None
    except (OSError, ValueError) as exc:
        raise UserError("bad_model", f"landmark embedding file {path} cannot be read ({exc})") from None
    problems = []
    if bary.shape != (len(face_idx), 3) or mp_index.shape != face_idx.shape:
        problems.append("its arrays have mismatched lengths")
    elif len(face_idx) and (face_idx.min() < 0 or face_idx.max() >= data.n_faces):
        problems.append(f"it refers to faces outside the model's {data.n_faces}")
    elif len(mp_index) and (mp_index.min() < 0 or mp_index.max() >= MEDIAPIPE_LANDMARK_COUNT):
        problems.append("its MediaPipe indices are out of range")
    elif not np.all(np.isfinite(bary)) or not np.allclose(bary.sum(axis=1), 1.0, atol=1e-3):
        problems.append("its barycentric coordinates do not sum to 1")
    if problems:
        raise UserError("bad_model", f"landmark embedding file {path} does not fit {os.path.basename(data.source_path)}: "
                        f"{problems[0]}")
    data.lmk_face_idx, data.lmk_bary, data.landmark_mp_index = face_idx, bary, mp_index
    data.notes.append(f"landmark embedding: {os.path.basename(path)} ({len(face_idx)} MediaPipe landmarks)")
    try:
        data.validate()
    except ModelDataError as exc:
        raise UserError("bad_model", f"landmark embedding file {path} does not fit the model: {exc}") from None


def available_head_models(configured_specs: list[str]) -> list[dict]:
    """For server.info: the built-in head and each configured FLAME file, with a status.

    Each entry: {"spec", "status": "ok" | "error", "message", and when ok the model's
    ``describe()`` fields}."""
    entries = []
    for spec in ["builtin"] + [s for s in configured_specs if not is_builtin(s)]:
        try:
            data = load_model_data(spec)
        except UserError as exc:
            entries.append({"spec": spec, "status": "error", "code": exc.code, "message": exc.message})
            continue
        description = HeadModel(data).describe()
        message = "" if description["can_fit_landmarks"] else (
            "loads, but has no MediaPipe landmark embedding, so portraits cannot be fitted to it")
        entries.append({"spec": spec, "status": "ok", "message": message, **description})
    return entries

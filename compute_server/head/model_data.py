"""The plain numpy record every head model is loaded into before it becomes a torch module.

Why: the FLAME pickle reader, the built-in asset reader and the built-in generator all
produce the same arrays; validating them in one place (shapes, index ranges, skinning
weights that sum to one, a tree-ordered kinematic chain) means ``HeadModel`` can trust its
inputs and a broken file is reported before any tensor math runs.

Array layout (V vertices, F faces, S shape and E expression components, J = 5 joints,
L landmarks), all in head space (metres, +Y up, +Z out of the face, +X subject's left):

- ``v_template (V, 3)``, ``shapedirs (V, 3, S)``, ``exprdirs (V, 3, E)`` float
- ``posedirs (V*3, (J-1)*9)`` float, FLAME file layout (row = vertex*3 + axis)
- ``J_regressor (J, V)`` float (dense), ``parents (J,)`` int with parents[0] = -1
- ``lbs_weights (V, J)`` float, rows sum to 1
- ``faces (F, 3)`` int, counter-clockwise seen from outside
- ``face_region (F,)`` int indexing ``region_names``
- ``lmk_face_idx (L,)`` int, ``lmk_bary (L, 3)`` float, ``landmark_mp_index (L,)`` int
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

JOINT_NAMES = ("root", "neck", "jaw", "left_eye", "right_eye")
N_JOINTS = len(JOINT_NAMES)
MEDIAPIPE_LANDMARK_COUNT = 478  # 468 face-mesh points + 10 iris points


class ModelDataError(ValueError):
    """Arrays that do not form a valid head model (the message names the array)."""


@dataclass
class HeadModelData:
    """Everything a ``HeadModel`` is built from; see the module docstring for shapes."""

    name: str
    v_template: np.ndarray
    shapedirs: np.ndarray
    exprdirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    parents: np.ndarray
    lbs_weights: np.ndarray
    faces: np.ndarray
    face_region: np.ndarray
    region_names: list[str]
    expression_names: list[str]
    shape_names: list[str] = field(default_factory=list)
    lmk_face_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lmk_bary: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    landmark_mp_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    source_path: str = ""
    source_sha256: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def n_expr(self) -> int:
        return int(self.exprdirs.shape[2])

    def validate(self) -> None:
        """Coerce dtypes and check every array against the layout; raise ModelDataError."""
        f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        i64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
        self.v_template = f64(self.v_template)
        self.shapedirs, self.exprdirs, self.posedirs = f64(self.shapedirs), f64(self.exprdirs), f64(self.posedirs)
        self.J_regressor, self.lbs_weights = f64(self.J_regressor), f64(self.lbs_weights)
        self.parents, self.faces, self.face_region = i64(self.parents), i64(self.faces), i64(self.face_region)
        self.lmk_face_idx, self.landmark_mp_index = i64(self.lmk_face_idx), i64(self.landmark_mp_index)
        self.lmk_bary = f64(self.lmk_bary).reshape(-1, 3)
        self.region_names = [str(x) for x in self.region_names]
        self.expression_names = [str(x) for x in self.expression_names]
        self.shape_names = [str(x) for x in self.shape_names]

        V = self.v_template.shape[0]
        _expect(self.v_template.ndim == 2 and self.v_template.shape[1] == 3 and V >= 3,
                f"v_template must be (V, 3) with V >= 3, got {self.v_template.shape}")
        _expect(self.shapedirs.ndim == 3 and self.shapedirs.shape[:2] == (V, 3),
                f"shapedirs must be ({V}, 3, S), got {self.shapedirs.shape}")
        _expect(self.exprdirs.ndim == 3 and self.exprdirs.shape[:2] == (V, 3),
                f"exprdirs must be ({V}, 3, E), got {self.exprdirs.shape}")
        _expect(self.posedirs.shape == (V * 3, (N_JOINTS - 1) * 9),
                f"posedirs must be ({V * 3}, {(N_JOINTS - 1) * 9}), got {self.posedirs.shape}")
        _expect(self.J_regressor.shape == (N_JOINTS, V), f"J_regressor must be ({N_JOINTS}, {V}), got {self.J_regressor.shape}")
        _expect(self.parents.shape == (N_JOINTS,) and self.parents[0] == -1
                and all(0 <= self.parents[j] < j for j in range(1, N_JOINTS)),
                f"parents must list a tree in joint order with parents[0] = -1, got {self.parents.tolist()}")
        _expect(self.lbs_weights.shape == (V, N_JOINTS), f"lbs_weights must be ({V}, {N_JOINTS}), got {self.lbs_weights.shape}")
        _expect(np.allclose(self.lbs_weights.sum(axis=1), 1.0, atol=1e-4), "lbs_weights rows must sum to 1")
        _expect(self.faces.ndim == 2 and self.faces.shape[1] == 3 and self.faces.shape[0] > 0,
                f"faces must be (F, 3), got {self.faces.shape}")
        _expect(self.faces.min() >= 0 and self.faces.max() < V, f"faces index vertices outside 0..{V - 1}")
        _expect(self.face_region.shape == (self.faces.shape[0],), "face_region must have one entry per face")
        _expect(len(self.region_names) > 0 and self.face_region.min() >= 0
                and self.face_region.max() < len(self.region_names), "face_region must index region_names")
        _expect(len(self.expression_names) == self.exprdirs.shape[2],
                f"{len(self.expression_names)} expression names for {self.exprdirs.shape[2]} expression components")
        _expect(not self.shape_names or len(self.shape_names) == self.shapedirs.shape[2],
                "shape_names must be empty or name every shape component")
        L = self.lmk_face_idx.shape[0]
        _expect(self.lmk_face_idx.ndim == 1 and self.lmk_bary.shape == (L, 3) and self.landmark_mp_index.shape == (L,),
                "landmark embedding arrays must have matching lengths")
        if L:
            _expect(self.lmk_face_idx.min() >= 0 and self.lmk_face_idx.max() < self.faces.shape[0],
                    "lmk_face_idx indexes faces outside the mesh")
            _expect(self.landmark_mp_index.min() >= 0 and self.landmark_mp_index.max() < MEDIAPIPE_LANDMARK_COUNT,
                    f"landmark_mp_index must lie in 0..{MEDIAPIPE_LANDMARK_COUNT - 1}")
        for key in ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "lbs_weights", "lmk_bary"):
            _expect(np.all(np.isfinite(getattr(self, key))), f"{key} contains NaN or infinite values")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ModelDataError(message)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, streamed (model files are 50-100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- the .npz asset layout (built-in model) -------------------------------------------
_ARRAY_KEYS = ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "parents", "lbs_weights",
               "faces", "face_region", "lmk_face_idx", "lmk_bary", "landmark_mp_index")
_LIST_KEYS = ("region_names", "expression_names", "shape_names", "notes")


def save_model_npz(data: HeadModelData, path: str | os.PathLike, **extra_arrays: np.ndarray) -> None:
    """Write a model as a byte-reproducible compressed .npz (float32 geometry, int32 indices).

    Byte-reproducible (fixed key order, fixed zip timestamps) so regenerating an unchanged
    asset leaves git with nothing to commit. Extra arrays (generator metadata) are stored
    under their own keys. The write is atomic: a temporary file is renamed into place.
    """
    arrays: dict[str, np.ndarray] = {"name": np.array(data.name)}
    for key in _ARRAY_KEYS:
        value = getattr(data, key)
        arrays[key] = value.astype(np.float32) if value.dtype == np.float64 else value.astype(np.int32)
    for key in _LIST_KEYS:
        arrays[key] = np.array(getattr(data, key), dtype=str)
    arrays.update(extra_arrays)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            value = np.asarray(value)
            np.lib.format.write_array(buffer, value if value.flags.c_contiguous else value.copy(), allow_pickle=False)
            archive.writestr(info, buffer.getvalue())
    os.replace(tmp, path)


def load_model_npz(path: str | os.PathLike) -> HeadModelData:
    """Read a model written by ``save_model_npz`` (raises ModelDataError/OSError/ValueError)."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in _ARRAY_KEYS + _LIST_KEYS + ("name",) if k not in z.files]
        if missing:
            raise ModelDataError(f"missing arrays {', '.join(missing)}")
        kwargs = {key: z[key] for key in _ARRAY_KEYS}
        kwargs.update({key: [str(x) for x in z[key].tolist()] for key in _LIST_KEYS})
        name = str(z["name"].reshape(-1)[0])
    return HeadModelData(name=name, **kwargs)

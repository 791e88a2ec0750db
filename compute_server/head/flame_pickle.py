"""Reading FLAME model pickles safely, without chumpy, into a ``HeadModelData``.

Why a restricted unpickler: a FLAME file is a pickle the user downloads and points us to,
and ``pickle.load`` would run whatever classes it names. ``SafeFlameUnpickler`` resolves
only an allowlist (numpy arrays/dtypes/scalars, plain builtin containers) and replaces
chumpy and scipy.sparse classes with inert stand-ins that keep the pickled state, which we
then convert to numpy ourselves. So the 2020 ``generic_model.pkl`` (Python 2, chumpy
``Ch`` objects, ``encoding="latin1"``) and the 2023 / 2023 Open files (plain numpy) load in a
process where chumpy is not installed, and no code from the file ever runs.

FLAME layout (official files): ``v_template (5023, 3)``, ``f (9976, 3)``, ``shapedirs
(5023, 3, 400)`` = 300 shape + 100 expression columns, ``posedirs (5023, 3, 36)``,
``J_regressor (5, 5023)`` scipy.sparse, ``weights (5023, 5)``, ``kintree_table (2, 5)``,
plus ``J``, ``bs_style``, ``bs_type``, ``vt``/``ft`` which we do not need.
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .model_data import JOINT_NAMES, HeadModelData, ModelDataError, file_sha256

FLAME_SHAPE_COLUMNS = 300  # the official files put 300 shape then the expression columns
FLAME_VERTEX_COUNT = 5023
MAX_PICKLE_BYTES = 1 << 30


class FlameFileError(ValueError):
    """A FLAME file that cannot be read; the message says what is wrong (without the path)."""


# ---- stand-ins for classes we never import ---------------------------------------------
class _Captured:
    """Inert object that records how a pickled instance was constructed and its state."""

    module = ""
    qualname = ""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        # (dict_state, slot_state) tuples come from classes with __slots__
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.state = state

    @classmethod
    def named(cls, module: str, qualname: str) -> type:
        return type(f"Captured_{qualname}", (cls,), {"module": module, "qualname": qualname})


class _ChumpyStandIn(_Captured):
    """Replaces any ``chumpy.*`` class; a leaf ``Ch`` pickles its array as state['x']."""

    def to_numpy(self) -> np.ndarray:
        state = self.state if isinstance(self.state, dict) else {}
        value = state.get("x")
        if value is None and self.args:
            value = self.args[0]  # Ch(x) pickled through __reduce__ with the array as argument
        if isinstance(value, _ChumpyStandIn):
            return value.to_numpy()
        if value is None:
            raise FlameFileError(
                f"it holds a chumpy expression ({self.module}.{self.qualname}) rather than plain chumpy arrays; "
                "open it once with chumpy installed and re-save the arrays with numpy")
        return np.asarray(value)


class _SparseStandIn(_Captured):
    """Replaces scipy.sparse matrix classes; converts the pickled fields to a dense array."""

    def to_numpy(self) -> np.ndarray:
        state = self.state if isinstance(self.state, dict) else {}
        shape = state.get("_shape", state.get("shape"))
        if shape is None or len(shape) != 2:
            raise FlameFileError(f"a {self.qualname} in it has no valid shape")
        rows, cols = int(shape[0]), int(shape[1])
        dense = np.zeros((rows, cols), dtype=np.float64)
        fmt = self.qualname[:3]
        data = np.asarray(state.get("data", []), dtype=np.float64)
        if fmt in ("csc", "csr"):
            indices = np.asarray(state["indices"], dtype=np.int64)
            indptr = np.asarray(state["indptr"], dtype=np.int64)
            major = rows if fmt == "csr" else cols
            if indptr.shape[0] != major + 1 or indices.shape != data.shape or (indices.size and (
                    indices.min() < 0 or indices.max() >= (cols if fmt == "csr" else rows))):
                raise FlameFileError(f"a {self.qualname} in it has inconsistent index arrays")
            outer = np.repeat(np.arange(major), np.diff(indptr))
            r, c = (outer, indices) if fmt == "csr" else (indices, outer)
        elif fmt == "coo":
            if "coords" in state:
                r, c = (np.asarray(x, dtype=np.int64) for x in state["coords"])
            else:
                r, c = np.asarray(state["row"], dtype=np.int64), np.asarray(state["col"], dtype=np.int64)
        else:
            raise FlameFileError(f"it holds an unsupported sparse matrix type {self.qualname}")
        np.add.at(dense, (r, c), data)
        return dense


def _safe_reconstructor(cls, base, state):
    """copyreg._reconstructor for protocol 0/1 pickles, limited to our stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _Captured)) or base is not object:
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    obj = cls()
    if state is not None:
        obj.__setstate__(state)
    return obj


def _numpy_attr(module_path: str, name: str):
    import importlib
    module = importlib.import_module(module_path)
    return getattr(module, name)


_NUMPY_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"
_ALLOWED = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_attr(f"{_NUMPY_CORE}.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): lambda: _numpy_attr(f"{_NUMPY_CORE}.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_attr(f"{_NUMPY_CORE}.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"): lambda: _numpy_attr(f"{_NUMPY_CORE}.multiarray", "scalar"),
    ("copyreg", "_reconstructor"): lambda: _safe_reconstructor,
    ("builtins", "object"): lambda: object,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("builtins", "slice"): lambda: slice,
    ("builtins", "complex"): lambda: complex,
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
    ("_codecs", "encode"): lambda: _latin1_encode,
}
_SPARSE_CLASSES = ("csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array")


def _latin1_encode(text, encoding="latin1"):
    """Python 3 protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow only that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return text.encode("latin1")


class SafeFlameUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy/builtin data types and inert stand-ins."""

    def find_class(self, module: str, name: str):
        # Python 2 names (copy_reg, __builtin__): the base class applies this mapping in its
        # own find_class, which we replace
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn.named(module, name)
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return _SparseStandIn.named(module, name)
        if module.startswith("numpy") and name == "dtype":
            return np.dtype
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a FLAME file never contains")
        return factory()


def _to_array(value, key: str) -> np.ndarray:
    if isinstance(value, (_ChumpyStandIn, _SparseStandIn)):
        return value.to_numpy()
    if isinstance(value, _Captured):
        raise FlameFileError(f"'{key}' is an object of an unknown type ({value.module}.{value.qualname})")
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything odd inside the file
        raise FlameFileError(f"'{key}' is not an array ({exc})") from exc
    if array.dtype == object:
        raise FlameFileError(f"'{key}' is not a numeric array")
    return array


def read_flame_pickle(raw: bytes) -> dict[str, np.ndarray]:
    """Unpickle FLAME bytes safely -> the arrays we use, as numpy (raises FlameFileError)."""
    try:
        content = SafeFlameUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError) as exc:
        raise FlameFileError(f"it is not a readable FLAME pickle ({exc or 'truncated'})") from exc
    except FlameFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt data raises anything (ValueError, TypeError, ...)
        raise FlameFileError(f"it is corrupt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, dict):
        raise FlameFileError(f"it holds a {type(content).__name__}, not the dictionary of a FLAME model")
    required = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
    missing = [k for k in required if k not in content]
    if missing:
        raise FlameFileError(f"it lacks the FLAME arrays {', '.join(missing)}")
    return {key: _to_array(content[key], key) for key in required}


@dataclass(frozen=True)
class FlameOptions:
    """How to cut a FLAME file's blend shapes: counts to keep (None = all in the file)."""

    n_shape: int | None = None
    n_expr: int | None = None


def flame_arrays_to_model_data(arrays: dict[str, np.ndarray], name: str, options: FlameOptions = FlameOptions()
                               ) -> HeadModelData:
    """FLAME arrays (from ``read_flame_pickle``) -> validated HeadModelData (raises FlameFileError)."""
    v_template = np.asarray(arrays["v_template"], dtype=np.float64)
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise FlameFileError(f"'v_template' has shape {v_template.shape}, expected (V, 3)")
    V = v_template.shape[0]
    shapedirs = np.asarray(arrays["shapedirs"], dtype=np.float64)
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (V, 3):
        raise FlameFileError(f"'shapedirs' has shape {shapedirs.shape}, expected ({V}, 3, K)")
    width = shapedirs.shape[2]
    if width <= FLAME_SHAPE_COLUMNS:
        raise FlameFileError(f"'shapedirs' has {width} columns; a FLAME file has {FLAME_SHAPE_COLUMNS} shape "
                             "columns followed by the expression columns")
    n_shape_file, n_expr_file = FLAME_SHAPE_COLUMNS, width - FLAME_SHAPE_COLUMNS
    n_shape = n_shape_file if options.n_shape is None else options.n_shape
    n_expr = n_expr_file if options.n_expr is None else options.n_expr
    if not (0 <= n_shape <= n_shape_file and 0 <= n_expr <= n_expr_file):
        raise FlameFileError(f"it has {n_shape_file} shape and {n_expr_file} expression components; "
                             f"{n_shape} and {n_expr} were requested")
    posedirs = np.asarray(arrays["posedirs"], dtype=np.float64)
    if posedirs.ndim == 3 and posedirs.shape[:2] == (V, 3):
        posedirs = posedirs.reshape(V * 3, -1)
    faces = np.asarray(arrays["f"])
    kintree = np.asarray(arrays["kintree_table"])
    if kintree.ndim != 2 or kintree.shape[1] != len(JOINT_NAMES):
        raise FlameFileError(f"'kintree_table' has shape {kintree.shape}, expected (2, {len(JOINT_NAMES)})")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1  # stored as the uint32 maximum in the official files
    if not np.issubdtype(faces.dtype, np.integer):
        raise FlameFileError("'f' (faces) is not an integer array")
    weights = np.asarray(arrays["weights"], dtype=np.float64)
    region_names, face_region = _flame_regions(faces.astype(np.int64), weights)
    try:
        return HeadModelData(
            name=name,
            v_template=v_template,
            shapedirs=shapedirs[:, :, :n_shape],
            exprdirs=shapedirs[:, :, n_shape_file:n_shape_file + n_expr],
            posedirs=posedirs,
            J_regressor=np.asarray(arrays["J_regressor"], dtype=np.float64),
            parents=parents,
            lbs_weights=weights,
            faces=faces.astype(np.int64),
            face_region=face_region,
            region_names=region_names,
            expression_names=[f"expr_{k:03d}" for k in range(n_expr)],
            shape_names=[f"shape_{k:03d}" for k in range(n_shape)],
        )
    except ModelDataError as exc:
        raise FlameFileError(str(exc)) from exc


def _flame_regions(faces: np.ndarray, weights: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Regions 'head' and 'eyeball': FLAME's eyeballs are the faces whose three vertices are
    skinned (almost) entirely to an eye joint (3 or 4). Malformed arrays are left for the
    validation to report."""
    region = np.zeros(len(faces), dtype=np.int64)
    if weights.ndim == 2 and weights.shape[1] == len(JOINT_NAMES) and faces.ndim == 2 and faces.size \
            and faces.min() >= 0 and faces.max() < len(weights):
        on_eye = weights[:, 3:5].max(axis=1) > 0.99
        region[on_eye[faces].all(axis=1)] = 1
    return ["head", "eyeball"], region


def flame_name_from_path(path: str | os.PathLike) -> str:
    """'flame2020', 'flame2023' or 'flame2023_open', from the file name the user kept.

    The pickles carry no version field, so the official file names decide: files whose
    name mentions 2023 are FLAME 2023 ('open' in the name: 2023 Open); anything else
    (``generic_model.pkl``, ``flame2020.pkl``) is treated as FLAME 2020.
    """
    base = os.path.basename(os.fspath(path)).lower()
    if "2023" in base:
        return "flame2023_open" if "open" in base else "flame2023"
    return "flame2020"


def load_flame_file(path: str | os.PathLike, options: FlameOptions = FlameOptions()) -> HeadModelData:
    """Read a FLAME .pkl from disk -> HeadModelData with source path + sha256.

    Raises ``UserError("bad_model", ...)`` with a sentence naming the file for anything
    wrong (missing, unreadable, not a pickle, truncated, wrong content).
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_PICKLE_BYTES:
            raise FlameFileError(f"it is {size / 2**20:.0f} MiB, far larger than any FLAME model")
        with open(path, "rb") as f:
            raw = f.read()
        data = flame_arrays_to_model_data(read_flame_pickle(raw), flame_name_from_path(path), options)
    except FileNotFoundError:
        raise UserError("bad_model", f"FLAME model file {path} does not exist; check the path in the settings") from None
    except IsADirectoryError:
        raise UserError("bad_model", f"FLAME model path {path} is a folder; point to the .pkl file inside it") from None
    except PermissionError:
        raise UserError("bad_model", f"FLAME model file {path} cannot be read (permission denied)") from None
    except FlameFileError as exc:
        raise UserError("bad_model", f"FLAME model file {path} cannot be used: {exc}. "
                        "Download generic_model.pkl (FLAME 2020) or the FLAME 2023 files again "
                        "from flame.is.tue.mpg.de") from None
    data.source_path = os.path.abspath(path)
    data.source_sha256 = file_sha256(path)
    return data

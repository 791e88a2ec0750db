"""Loading FLAME pickles without chumpy, through the same code a user's file takes.

The files are synthetic but laid out like the real ones: the same keys and types, a
scipy.sparse joint regressor, and for the 2020 layout a Python-2-style protocol-2 pickle
(byte strings as BINSTRING, read with encoding="latin1") holding a chumpy ``Ch`` object,
pickled from a stand-in class that lives in a module literally named ``chumpy.ch``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import trimesh

from compute_server.errors import UserError
from compute_server.head import HeadParams, available_head_models, load_head_model
from compute_server.head.flame_pickle import SafeFlameUnpickler, read_flame_pickle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_EXPR_SMALL = 10


# ---- writing files in the FLAME layout -------------------------------------------------
class _Py2StylePickler(pickle._Pickler):
    """Pure-python pickler that writes str and bytes as Python 2 byte strings (BINSTRING)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_string
    dispatch[bytes] = _save_py2_string


def _fake_chumpy_module():
    """A module named chumpy.ch with a class Ch that pickles like chumpy's (state dict with 'x')."""
    package = types.ModuleType("chumpy")
    module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

        def __getstate__(self):
            return dict(self.__dict__)

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    module.Ch = Ch
    package.ch = module
    return package, module


def flame_arrays(vertices: np.ndarray, faces: np.ndarray, n_expr: int = 100, seed: int = 0,
                 dtype=np.float64) -> dict:
    """Random but valid FLAME-layout arrays for a mesh (shape columns 300 + n_expr)."""
    rng = np.random.default_rng(seed)
    V = len(vertices)
    weights = rng.random((V, 5)) ** 4
    weights[:, 1] += 1.0  # mostly the neck joint, like FLAME's head
    weights /= weights.sum(1, keepdims=True)
    rows, cols, vals = [], [], []
    for j in range(5):
        picked = rng.choice(V, 6, replace=False)
        rows += [j] * 6
        cols += picked.tolist()
        vals += [1.0 / 6] * 6
    regressor = sp.csc_matrix((vals, (rows, cols)), shape=(5, V))
    return {
        "v_template": vertices.astype(dtype),
        "f": faces.astype(np.uint32),
        "shapedirs": (rng.normal(size=(V, 3, 300 + n_expr)) * 1e-3).astype(dtype),
        "posedirs": (rng.normal(size=(V, 3, 36)) * 1e-4).astype(dtype),
        "J_regressor": regressor,
        "weights": weights.astype(dtype),
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "J": np.asarray(regressor @ vertices),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "vt": rng.random((V, 2)),
        "ft": faces.astype(np.uint32),
    }


def write_flame_2020(path, arrays: dict) -> None:
    """Python-2-style pickle, protocol 2, shapedirs as a chumpy Ch object (like generic_model.pkl)."""
    package, module = _fake_chumpy_module()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = package, module
    try:
        content = dict(arrays)
        content["shapedirs"] = module.Ch(arrays["shapedirs"])
        with open(path, "wb") as f:
            _Py2StylePickler(f, protocol=2).dump(content)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def write_flame_2023(path, arrays: dict, protocol: int = 4) -> None:
    """Plain numpy + scipy pickle written by Python 3 (like the 2023 files)."""
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=protocol)


def small_head_mesh():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.09)
    return np.asarray(sphere.vertices), np.asarray(sphere.faces)


@pytest.fixture
def flame_2020(tmp_path):
    vertices, faces = small_head_mesh()
    arrays = flame_arrays(vertices, faces)
    path = tmp_path / "generic_model.pkl"
    write_flame_2020(path, arrays)
    return path, arrays


# ---- tests -----------------------------------------------------------------------------
def test_2020_pickle_with_chumpy_loads_in_a_process_without_chumpy(flame_2020):
    path, arrays = flame_2020
    script = (
        "import importlib.util, json, sys\n"
        "assert importlib.util.find_spec('chumpy') is None, 'chumpy must not be installed here'\n"
        "import torch\n"
        "from compute_server.head import load_head_model, HeadParams\n"
        f"m = load_head_model({str(path)!r}, dtype=torch.float64)\n"
        "p = HeadParams.zeros(m, dtype=torch.float64)\n"
        "v = m(p).vertices[0]\n"
        "print(json.dumps({'name': m.name, 'n_shape': m.n_shape, 'n_expr': m.n_expr, 'n_verts': m.n_verts,\n"
        "                  'first': v[0].tolist(), 'chumpy_loaded': 'chumpy' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info == {"name": "flame2020", "n_shape": 300, "n_expr": 100, "n_verts": len(arrays["v_template"]),
                    "first": pytest.approx(arrays["v_template"][0].tolist()), "chumpy_loaded": False}


def test_2020_pickle_is_really_python2_style(flame_2020):
    path, _ = flame_2020
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x02"                      # protocol 2
    assert b"cchumpy.ch\nCh\n" in raw                   # the chumpy class, by name
    assert b"c__builtin__\nset\n" in raw                # Python 2 module names
    assert b"U\nv_template" in raw                       # keys as Python 2 byte strings
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.loads(raw, encoding="latin1")            # the plain unpickler needs chumpy
    content = SafeFlameUnpickler(io.BytesIO(raw), encoding="latin1").load()
    assert sorted(content) == sorted(["v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights",
                                      "kintree_table", "J", "bs_style", "bs_type", "vt", "ft"])


@pytest.mark.parametrize("protocol", [0, 1, 2])
@pytest.mark.parametrize("form", ["state", "reduce"])
def test_chumpy_objects_in_every_pickle_form(form, protocol):
    """Ch pickled through __getstate__/__setstate__ (state dict with 'x') or through
    __reduce__ (the array as constructor argument), with copy_reg._reconstructor (protocols
    0 and 1) or NEWOBJ (protocol 2)."""
    package, module = _fake_chumpy_module()
    if form == "reduce":
        module.Ch.__reduce__ = lambda self: (module.Ch, (self.x,))
    array = np.arange(12, dtype=np.float64).reshape(4, 3)
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = package, module
    try:
        raw = pickle.dumps({"shapedirs": module.Ch(array)}, protocol=protocol)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    content = SafeFlameUnpickler(io.BytesIO(raw), encoding="latin1").load()
    from compute_server.head.flame_pickle import _to_array
    np.testing.assert_array_equal(_to_array(content["shapedirs"], "shapedirs"), array)


def test_arrays_survive_the_round_trip_exactly(flame_2020):
    path, arrays = flame_2020
    read = read_flame_pickle(path.read_bytes())
    np.testing.assert_array_equal(read["shapedirs"], arrays["shapedirs"])
    np.testing.assert_array_equal(read["J_regressor"], arrays["J_regressor"].toarray())
    np.testing.assert_array_equal(read["f"], arrays["f"])
    model = load_head_model(str(path), dtype=torch.float64)
    np.testing.assert_allclose(model.exprdirs.numpy(), arrays["shapedirs"][:, :, 300:])
    np.testing.assert_allclose(model.posedirs.numpy(), arrays["posedirs"].reshape(-1, 36).T)
    assert model.parents.tolist() == [-1, 0, 1, 1, 1]
    assert model.expression_names[:2] == ["expr_000", "expr_001"]
    assert model.region_names == ["head", "eyeball"] and not model.face_region.any()
    assert model.describe()["source_sha256"] and not model.describe()["can_fit_landmarks"]


@pytest.mark.parametrize("protocol", [2, 4])
def test_2023_plain_numpy_pickle_and_names_from_the_file_name(tmp_path, protocol):
    vertices, faces = small_head_mesh()
    arrays = flame_arrays(vertices, faces, n_expr=N_EXPR_SMALL, seed=1)
    for file_name, name in (("flame2023.pkl", "flame2023"), ("flame2023_Open.pkl", "flame2023_open")):
        path = tmp_path / file_name
        write_flame_2023(path, arrays, protocol)  # protocol 2 from Python 3 stores bytes via _codecs.encode
        model = load_head_model(str(path))
        assert (model.name, model.n_shape, model.n_expr) == (name, 300, N_EXPR_SMALL)
        out = model(HeadParams.zeros(model, batch=2))
        assert out.vertices.shape == (2, len(vertices), 3) and out.landmarks.shape == (2, 0, 3)


def test_faces_skinned_to_an_eye_joint_are_the_eyeball_region(tmp_path):
    vertices, faces = small_head_mesh()
    arrays = flame_arrays(vertices, faces, n_expr=N_EXPR_SMALL)
    eye = vertices[:, 0] > 0.05  # pretend the +X cap is the left eyeball
    arrays["weights"][eye] = [0, 0, 0, 1, 0]
    path = tmp_path / "flame2023.pkl"
    write_flame_2023(path, arrays)
    model = load_head_model(str(path))
    expected = eye[faces].all(axis=1)
    assert expected.any() and (model.face_region.numpy() == expected.astype(int)).all()


def test_component_counts_can_be_cut_like_gaussian_avatars(flame_2020):
    path, arrays = flame_2020
    model = load_head_model(str(path), n_shape=100, n_expr=50, dtype=torch.float64)
    assert (model.n_shape, model.n_expr) == (100, 50)
    np.testing.assert_allclose(model.exprdirs.numpy(), arrays["shapedirs"][:, :, 300:350])
    with pytest.raises(UserError) as err:
        load_head_model(str(path), n_expr=101)
    assert err.value.code == "bad_model" and "100 expression" in err.value.message


def test_landmark_embedding_next_to_the_file_or_given_explicitly(flame_2020, tmp_path):
    path, arrays = flame_2020
    n_faces = len(arrays["f"])
    rng = np.random.default_rng(5)
    bary = rng.random((105, 3))
    bary /= bary.sum(1, keepdims=True)
    embedding = dict(lmk_face_idx=rng.integers(0, n_faces, 105), lmk_b_coords=bary,
                     landmark_indices=rng.choice(468, 105, replace=False))
    np.savez(tmp_path / "mediapipe_landmark_embedding.npz", **embedding)
    model = load_head_model(str(path), dtype=torch.float64)
    assert model.describe()["can_fit_landmarks"]
    np.testing.assert_array_equal(model.landmark_mp_index.numpy(), embedding["landmark_indices"])
    verts = model(HeadParams.zeros(model, dtype=torch.float64)).vertices
    lmk = model.landmarks_from_vertices(verts)[0].numpy()
    tri = verts[0].numpy()[arrays["f"].astype(np.int64)[embedding["lmk_face_idx"]]]
    np.testing.assert_allclose(lmk, np.einsum("lkc,lk->lc", tri, bary), atol=1e-12)

    other = tmp_path / "elsewhere.npz"
    np.savez(other, **{**embedding, "lmk_face_idx": np.full(105, n_faces + 3)})
    with pytest.raises(UserError) as err:
        load_head_model(str(path), landmark_embedding=str(other))
    assert str(other) in err.value.message and "faces outside" in err.value.message


@pytest.mark.parametrize("damage, words", [
    (lambda raw: raw[: len(raw) // 2], "not a readable FLAME pickle"),
    (lambda raw: b"this is not a pickle at all" * 10, "not a readable FLAME pickle"),
    (lambda raw: pickle.dumps([1, 2, 3], protocol=2), "not the dictionary of a FLAME model"),
    (lambda raw: pickle.dumps({"v_template": np.zeros((3, 3))}, protocol=2), "lacks the FLAME arrays"),
    (lambda raw: b"", "not a readable FLAME pickle"),
])
def test_broken_files_give_a_user_error_naming_the_file(flame_2020, tmp_path, damage, words):
    path, _ = flame_2020
    bad = tmp_path / "broken_generic_model.pkl"
    bad.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError) as err:
        load_head_model(str(bad))
    assert err.value.code == "bad_model"
    assert str(bad) in err.value.message and words in err.value.message


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(pickle.dumps({"v_template": Exploit()}, protocol=2))
    with pytest.raises(UserError) as err:
        load_head_model(str(bad))
    assert "never contains" in err.value.message
    assert not (tmp_path / "pwned").exists()


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_head_model(str(tmp_path / "nope.pkl"))
    with pytest.raises(UserError, match="is a folder"):
        load_head_model(str(tmp_path))


def test_wrong_array_shapes_are_reported(tmp_path):
    vertices, faces = small_head_mesh()
    arrays = flame_arrays(vertices, faces, n_expr=N_EXPR_SMALL)
    arrays["weights"] = arrays["weights"][:, :4]
    path = tmp_path / "flame2023.pkl"
    write_flame_2023(path, arrays)
    with pytest.raises(UserError, match="lbs_weights must be"):
        load_head_model(str(path))
    arrays = flame_arrays(vertices, faces, n_expr=N_EXPR_SMALL)
    arrays["shapedirs"] = arrays["shapedirs"][:, :, :200]
    write_flame_2023(path, arrays)
    with pytest.raises(UserError, match="300 shape"):
        load_head_model(str(path))


# ---- teeth on the FLAME topology -------------------------------------------------------
def flame_topology_mesh() -> tuple[np.ndarray, np.ndarray]:
    """5023 vertices like FLAME: a head sphere open at the neck and the mouth (+ unused padding)."""
    n_lat, n_lon, r = 40, 60, 0.09
    theta = np.linspace(0.15, np.pi - 0.35, n_lat)          # from the crown down to the neck cut
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    vertices = np.stack([r * np.sin(t) * np.sin(p), r * np.cos(t), r * np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, r, 0.0]], vertices])  # crown pole closes the top
    idx = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    mouth_row = int(np.argmin(np.abs(r * np.cos(theta) + 0.035)))   # the quad row 35 mm below the centre
    mouth_cols = {j % n_lon for j in range(-3, 3)}                       # six quads, symmetric about x = 0
    faces = [[0, idx(0, j), idx(0, j + 1)] for j in range(n_lon)]
    for i in range(n_lat - 1):
        for j in range(n_lon):
            if i == mouth_row and j in mouth_cols:
                continue  # the mouth opening: a rectangular hole, one boundary loop
            a, b, c, d = idx(i, j), idx(i + 1, j), idx(i + 1, j + 1), idx(i, j + 1)
            faces += [[a, b, c], [a, c, d]]
    faces = np.array(faces)
    padding = np.zeros((5023 - len(vertices), 3))
    return np.concatenate([vertices, padding]), faces


def test_teeth_are_added_on_the_flame_topology(tmp_path):
    vertices, faces = flame_topology_mesh()
    arrays = flame_arrays(vertices, faces, n_expr=N_EXPR_SMALL, dtype=np.float32)
    path = tmp_path / "flame2023.pkl"
    write_flame_2023(path, arrays)
    plain = load_head_model(str(path), dtype=torch.float64)
    model = load_head_model(str(path), with_teeth=True, dtype=torch.float64)
    n_teeth = model.n_verts - plain.n_verts
    assert n_teeth > 0 and "teeth" in model.region_names
    teeth_faces = model.face_region == model.region_names.index("teeth")
    assert int(teeth_faces.sum()) == model.n_faces - plain.n_faces
    w = model.lbs_weights[plain.n_verts:]
    upper, lower = w[:, 1] == 1, w[:, 2] == 1
    assert bool((upper ^ lower).all()) and upper.any() and lower.any()
    assert float(model.exprdirs[plain.n_verts:].abs().max()) == 0.0
    # teeth sit behind the mouth opening, centred on it and narrower than it
    teeth_v = model.v_template[plain.n_verts:].numpy()
    opening = vertices[np.unique(faces)][np.abs(vertices[np.unique(faces), 1] + 0.035) < 0.006]
    opening = opening[(np.abs(opening[:, 0]) < 0.03) & (opening[:, 2] > 0)]
    assert teeth_v[:, 2].max() < opening[:, 2].min()
    assert np.abs(teeth_v[:, 0]).max() < np.abs(opening[:, 0]).max()
    assert abs(teeth_v[:, 0].mean()) < 1e-3 and abs(teeth_v[:, 1].mean() + 0.035) < 0.01
    # opening the jaw moves the lower row and not the upper
    params = HeadParams.zeros(model, dtype=torch.float64)
    rest = model(params).vertices[0, plain.n_verts:]
    params.jaw_pose[0, 0] = 0.3
    opened = model(params).vertices[0, plain.n_verts:]
    moved = (opened - rest).norm(dim=1)
    assert float(moved[torch.as_tensor(upper)].max()) < 1e-9 and float(moved[torch.as_tensor(lower)].min()) > 1e-4


def test_teeth_are_refused_for_other_topologies(flame_2020):
    path, _ = flame_2020
    with pytest.raises(UserError) as err:
        load_head_model(str(path), with_teeth=True)
    assert "5023 vertices" in err.value.message and str(path) in err.value.message


def test_available_head_models_lists_builtin_and_configured_files(flame_2020, tmp_path):
    path, _ = flame_2020
    listing = available_head_models([str(path), str(tmp_path / "missing.pkl"), "builtin"])
    assert [e["spec"] for e in listing] == ["builtin", str(path), str(tmp_path / "missing.pkl")]
    assert [e["status"] for e in listing] == ["ok", "ok", "error"]
    assert listing[0]["can_fit_landmarks"] and listing[1]["name"] == "flame2020"
    assert "landmark" in listing[1]["message"] and "does not exist" in listing[2]["message"]

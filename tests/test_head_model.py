"""HeadParams / HeadModel API on the real built-in model: shapes, batching, dtypes, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.errors import UserError
from compute_server.head import HeadModel, HeadParams, load_head_model
from compute_server.head.model_data import HeadModelData, ModelDataError


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return load_head_model(dtype=torch.float64)


def _random_params(model, batch, seed=0, dtype=torch.float64) -> HeadParams:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: torch.randn(*s, generator=g, dtype=dtype) * scale  # noqa: E731
    return HeadParams(shape=r(batch, model.n_shape), expr=r(batch, model.n_expr, scale=0.3).clamp(-1, 1),
                      rotation=r(batch, 3, scale=0.2), neck_pose=r(batch, 3, scale=0.1), jaw_pose=r(batch, 3, scale=0.1),
                      eyes_pose=r(batch, 6, scale=0.1), translation=r(batch, 3, scale=0.05))


def test_params_zeros_index_and_numpy_round_trip(model):
    p = _random_params(model, 5)
    assert p.batch_size == 5
    assert p.index(2).shape.shape == (1, model.n_shape) and p.index([0, 4]).expr.shape == (2, model.n_expr)
    back = HeadParams.from_numpy(p.to_numpy(), dtype=torch.float64)
    for key, value in p.to_numpy().items():
        assert value.dtype == np.float32
        np.testing.assert_allclose(getattr(back, key).numpy(), value)
    z = HeadParams.zeros(model, batch=3)
    assert z.eyes_pose.shape == (3, 6) and z.shape.dtype == torch.float32 and not z.expr.any()
    assert p.clone().detach().to("cpu").rotation.shape == (5, 3)
    with pytest.raises(KeyError, match="translation"):
        HeadParams.from_numpy({k: v for k, v in p.to_numpy().items() if k != "translation"})


def test_forward_shapes_and_landmark_correspondence(model):
    out = model(_random_params(model, 3))
    assert out.vertices.shape == (3, model.n_verts, 3)
    assert out.joints.shape == (3, 5, 3) and out.landmarks.shape == (3, 478, 3)
    # the first 468 landmarks are exactly the face-mesh vertices (MediaPipe index = vertex index)
    torch.testing.assert_close(out.landmarks[:, :468], out.vertices[:, :468])
    assert model.landmark_mp_index.tolist() == list(range(478))


def test_batch_consistency_and_shared_identity_broadcast(model):
    p = _random_params(model, 4, seed=1)
    batched = model(p).vertices
    for b in range(4):
        torch.testing.assert_close(model(p.index(b)).vertices[0], batched[b])
    shared = HeadParams(**{**p.__dict__, "shape": p.shape[:1]})  # one identity for every frame
    expected = model(HeadParams(**{**p.__dict__, "shape": p.shape[:1].expand(4, -1)})).vertices
    torch.testing.assert_close(model(shared).vertices, expected)


def test_float32_matches_float64(model):
    m32 = load_head_model()
    p = _random_params(model, 2, seed=2)
    v64 = model(p).vertices
    v32 = m32(p.to(dtype=torch.float32)).vertices
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, atol=5e-6, rtol=0)


def test_gradients_reach_every_parameter(model):
    p = _random_params(model, 2, seed=3).requires_grad_(True)
    out = model(p)
    (out.vertices.square().sum() + out.landmarks.sum() + out.joints.sum()).backward()
    for key in ("shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation"):
        grad = getattr(p, key).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, key


def test_wrong_inputs_are_rejected_with_a_clear_message(model):
    p = _random_params(model, 2)
    with pytest.raises(ValueError, match=r"shape \(B, 15\)"):
        model(HeadParams(**{**p.__dict__, "shape": p.shape[:, :3]}))
    with pytest.raises(ValueError, match="eyes_pose"):
        model(HeadParams(**{**p.__dict__, "eyes_pose": p.eyes_pose[:, :3]}))
    with pytest.raises(ValueError, match="has batch 2, expected 1 or 3"):
        model(HeadParams(**{**p.__dict__, "expr": torch.zeros(3, model.n_expr, dtype=torch.float64)}))
    with pytest.raises(ValueError, match="float32"):
        model(p.to(dtype=torch.float32))


def test_canonical_vertices_and_rig_export_agree_with_forward(model):
    shape = torch.linspace(-1, 1, model.n_shape, dtype=torch.float64)[None]
    rig = model.rig_export(shape[0].numpy())
    zero = HeadParams.zeros(model, dtype=torch.float64)
    zero.shape = shape
    rest = model(zero)
    np.testing.assert_allclose(rig["rest_vertices"], rest.vertices[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(rig["joint_rest"], rest.joints[0].numpy(), atol=1e-6)
    assert rig["faces"].dtype == np.int32 and rig["faces"].shape == (model.n_faces, 3)
    assert rig["expression_deltas"].shape == (model.n_expr, model.n_verts, 3)
    assert rig["skin_weights"].shape == (model.n_verts, 5) and rig["joint_parents"].tolist() == [-1, 0, 1, 1, 1]
    assert rig["expression_names"] == model.expression_names and rig["joint_names"] == list(model.joint_names)
    assert rig["pose_corrective_deltas"].shape == (36, model.n_verts, 3) and "pose feature" in rig["pose_correctives_note"]
    expr = torch.zeros(1, model.n_expr, dtype=torch.float64)
    expr[0, 3] = 1.0
    delta = model.canonical_vertices(shape, expr) - model.canonical_vertices(shape, torch.zeros_like(expr))
    np.testing.assert_allclose(rig["expression_deltas"][3], delta[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="15 shape"):
        model.rig_export(np.zeros(3))


def test_describe_is_plain_data(model):
    d = model.describe()
    assert d["name"] == "builtin" and d["n_expr"] == len(d["expression_names"]) == model.n_expr
    assert d["can_fit_landmarks"] and len(d["source_sha256"]) == 64
    assert all(isinstance(v, (str, int, bool, list)) for v in d.values())


def test_device_and_dtype_moves_keep_integer_buffers(model):
    m = load_head_model().to(torch.float64)
    assert m.v_template.dtype == torch.float64 and m.faces.dtype == torch.long and m.parents.dtype == torch.long


def test_builtin_takes_no_landmark_embedding_and_counts_can_be_cut():
    with pytest.raises(UserError, match="only applies to FLAME"):
        load_head_model("builtin", landmark_embedding="x.npz")
    cut = load_head_model(n_shape=5, n_expr=4)
    assert (cut.n_shape, cut.n_expr, len(cut.expression_names)) == (5, 4, 4)


def test_model_data_validation_names_the_array():
    V = 4
    good = dict(name="t", v_template=np.zeros((V, 3)), shapedirs=np.zeros((V, 3, 1)), exprdirs=np.zeros((V, 3, 1)),
                posedirs=np.zeros((V * 3, 36)), J_regressor=np.full((5, V), 0.25), parents=[-1, 0, 1, 1, 1],
                lbs_weights=np.tile([1.0, 0, 0, 0, 0], (V, 1)), faces=[[0, 1, 2], [0, 2, 3]], face_region=[0, 0],
                region_names=["head"], expression_names=["e"])
    HeadModelData(**good)
    for key, value, words in (("faces", [[0, 1, 9]], "faces index"), ("parents", [-1, 0, 3, 1, 1], "parents"),
                              ("lbs_weights", np.zeros((V, 5)), "sum to 1"), ("expression_names", [], "expression names")):
        with pytest.raises(ModelDataError, match=words):
            HeadModelData(**{**good, key: value})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_forward_on_cuda_matches_cpu(model):
    p = _random_params(model, 2)
    cpu = model(p).vertices
    gpu = load_head_model(device="cuda", dtype=torch.float64)(p.to("cuda")).vertices
    torch.testing.assert_close(gpu.cpu(), cpu)

"""The committed built-in head asset is what the generator produces today.

If this fails after a deliberate change to ``tools/head_builder``, regenerate the
asset (``python -m tools.head_builder.generate``) and the docs images
(``python tools/render_head_docs.py``) and commit them together.
"""

from __future__ import annotations

import numpy as np
import pytest

from tools.head_builder import face_source
from tools.head_builder.generate import build_model_data
from compute_server.head.model_data import load_model_npz, save_model_npz
from compute_server.head.registry import BUILTIN_ASSET


@pytest.fixture(scope="module")
def generated():
    return build_model_data()


def test_generator_reproduces_the_committed_asset(generated, tmp_path):
    committed = load_model_npz(BUILTIN_ASSET)
    path = tmp_path / "builtin_head.npz"
    save_model_npz(generated, path)
    fresh = load_model_npz(path)  # through the same float32 storage as the asset
    for key in ("faces", "face_region", "parents", "lmk_face_idx", "landmark_mp_index"):
        np.testing.assert_array_equal(getattr(fresh, key), getattr(committed, key), err_msg=key)
    for key in ("region_names", "expression_names", "shape_names"):
        assert getattr(fresh, key) == getattr(committed, key), key
    # geometry to 20 micrometres: the landmarker's float results may differ in the last bits across CPUs
    for key in ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "lbs_weights", "lmk_bary"):
        np.testing.assert_allclose(getattr(fresh, key), getattr(committed, key), atol=2e-5, rtol=0, err_msg=key)


def test_generator_is_deterministic_on_one_machine(generated, tmp_path):
    again = build_model_data()
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_model_npz(generated, a)
    save_model_npz(again, b)
    assert a.read_bytes() == b.read_bytes()


def test_source_landmarks_are_the_mediapipe_detection():
    image = face_source.source_portrait()
    points = face_source.detect_landmarks(image)
    assert points.shape == (478, 3) and image.shape == (512, 512, 3)
    # the astronaut's face is in the upper middle of the portrait
    assert 0.3 < points[:, 0].mean() < 0.6 and 0.15 < points[:, 1].mean() < 0.45
    head = face_source.landmarks_to_head_axes(points, 512, 512, 0.063)
    assert np.linalg.norm(head[473] - head[468]) == pytest.approx(0.063)
    assert head[473, 0] > head[468, 0]  # subject's left iris is on the +X side

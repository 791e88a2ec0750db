"""The head-model documentation: committed images, a doc that matches the model, a working renderer."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from compute_server.head import load_head_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "docs", "images", "head")
SHEETS = ("neutral.png", "regions.png", "expressions.png", "poses.png", "identity.png")


def _renderer():
    spec = importlib.util.spec_from_file_location("render_head_docs", os.path.join(ROOT, "tools", "render_head_docs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_doc_shows_every_sheet_and_names_every_component():
    with open(os.path.join(ROOT, "docs", "head_model.md"), encoding="utf-8") as f:
        doc = f.read()
    for sheet in SHEETS:
        assert os.path.getsize(os.path.join(IMAGES, sheet)) < 600_000, sheet
        assert f"images/head/{sheet}" in doc
    model = load_head_model()
    for name in model.expression_names + model.shape_names:
        assert f"`{name}`" in doc, name


def test_expression_sheet_has_one_tile_per_component():
    from PIL import Image
    model = load_head_model()
    with Image.open(os.path.join(IMAGES, "expressions.png")) as sheet:
        width, height = sheet.size
    tile, caption, columns = _renderer().TILE, 18, 6
    rows = -(-model.n_expr // columns)
    assert (width, height) == (columns * tile, rows * (tile + caption))


@pytest.mark.blender
def test_renderer_draws_the_head_in_the_middle_of_the_tile(tmp_path):
    pytest.importorskip("bpy")
    from PIL import Image
    renderer = _renderer()
    model = load_head_model()
    item = {"name": "front", "vertices": model.v_template.numpy(), "faces": model.faces.numpy(),
            "face_region": model.face_region.numpy(), "view": "front"}
    (path,) = renderer.render_meshes([item], model.region_names, str(tmp_path), size=96)
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    background = pixels[2, 2]
    assert np.abs(pixels[48, 48] - background).sum() > 30          # head in the middle
    assert np.abs(pixels[2, -3] - background).sum() < 12           # empty corners
    assert np.abs(pixels[48, 2] - background).sum() < 12

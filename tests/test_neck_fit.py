"""The neck narrowed and shortened to the photo's outline (``views.neck_fit``): nothing the
photo calls background stays part of the head, nothing outside the neck moves, and where
the photo does not show the neck's edge (wider clothes, the frame, a letterbox bar) the neck
keeps its shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.views.neck_fit import MIN_WIDTH_SCALE, fit_neck
from compute_server.views.surface import render_surface
from tests.head_scene import posed_head_scene, vertices_of

SIZE = 200


@pytest.fixture(scope="module")
def scene():
    return posed_head_scene(SIZE, distance=1.6)          # far enough that the whole neck is in the frame


def _neck_pixels(scene, surface=None):
    s = surface or scene["surface"]
    names = scene["model"].region_names
    ids = [names.index(n) for n in ("neck", "neck_base")]
    return s.mask & (s.face_ids >= 0) & np.isin(scene["region"][np.maximum(s.face_ids, 0)], ids)


def _fit(scene, matte, valid=None):
    m = scene["model"]
    return fit_neck(scene["vertices"], scene["faces"], scene["region"], m.region_names, scene["camera"], matte, valid)


def _after(scene, fit):
    moved = scene["vertices"] + fit.offset
    return moved, render_surface(moved, scene["faces"], [scene["camera"]])[0]


def _still(scene, moved):
    kept = vertices_of(scene, ["face", "ear", "scalp", "eyeball", "teeth", "mouth_interior"])
    np.testing.assert_allclose(moved[kept], scene["vertices"][kept], atol=1e-9)


def _slender(scene, fraction):
    """The mesh's outline with the neck's rows narrowed to ``fraction`` of its half-width."""
    mask = scene["surface"].mask
    neck = _neck_pixels(scene)
    matte = mask.copy()
    chin = np.nonzero(neck.any(axis=1))[0]
    for row in chin[chin > np.percentile(chin, 30)]:
        cols = np.nonzero(mask[row])[0]
        centre, half = 0.5 * (cols.min() + cols.max()), 0.5 * (cols.max() - cols.min())
        xs = np.arange(SIZE)
        matte[row] &= np.abs(xs - centre) <= fraction * half
    return matte


def test_whole_neck_in_the_frame(scene):
    rows = np.nonzero(scene["surface"].mask)[0]
    assert rows.min() > 5 and rows.max() < SIZE - 5


def test_a_slender_neck_narrows_the_mesh_and_moves_nothing_else(scene):
    matte = _slender(scene, 0.75)
    outside = (scene["surface"].mask & ~matte).sum()
    assert outside > 150
    fit = _fit(scene, matte.astype(np.float32))
    assert fit is not None and fit.length_scale == 1.0
    assert MIN_WIDTH_SCALE <= fit.width_scale.min() < 0.9
    moved, after = _after(scene, fit)
    assert (after.mask & ~matte).sum() < 0.35 * outside      # the rest: the smoothed ramp under the jaw
    _still(scene, moved)
    # a cross-section stays one: the neck is thinner front to back too
    neck = vertices_of(scene, ["neck"])
    w2c = scene["camera"].world_to_camera
    depth = lambda v: np.std((v[neck] @ w2c[:3, :3].T + w2c[:3, 3])[:, 2])
    assert depth(moved) < 0.98 * depth(scene["vertices"])


def test_a_bust_that_ends_above_the_mesh_shortens_the_neck(scene):
    mask = scene["surface"].mask
    neck_rows = np.nonzero(_neck_pixels(scene).any(axis=1))[0]
    cut = int(neck_rows.max() - 0.25 * np.ptp(neck_rows))
    matte = mask.copy()
    matte[cut:] = False
    fit = _fit(scene, matte.astype(np.float32))
    assert fit is not None and fit.length_scale < 0.9
    moved, after = _after(scene, fit)
    assert abs(np.nonzero(after.mask)[0].max() - cut) <= 3
    _still(scene, moved)


def test_clothes_wider_than_the_neck_move_nothing(scene):
    mask = scene["surface"].mask
    neck_rows = np.nonzero(_neck_pixels(scene).any(axis=1))[0]
    matte = mask.copy()
    matte[int(np.percentile(neck_rows, 40)):, 10:SIZE - 10] = True      # a collar and the shoulders
    matte[-10:] = True
    assert _fit(scene, matte.astype(np.float32)) is None


def test_outline_cut_by_the_frame_or_a_bar_is_not_measured(scene):
    """Below the photo's frame and on a letterbox bar the outline is unknown: a matte that is
    background there (as the crop's padding is) neither shortens nor narrows the neck."""
    mask = scene["surface"].mask
    neck_rows = np.nonzero(_neck_pixels(scene).any(axis=1))[0]
    cut = int(neck_rows.max() - 0.25 * np.ptp(neck_rows))
    valid = np.ones((SIZE, SIZE), np.float32)
    valid[cut:] = 0.0                                  # the photo ends here: below is padding
    matte = mask.copy()
    matte[cut:] = False
    fit = _fit(scene, matte.astype(np.float32), valid)
    assert fit is None or fit.length_scale == 1.0
    # a bar beside the neck: the slender matte's sides fall on it
    slender = _slender(scene, 0.75)
    bar = np.ones((SIZE, SIZE), np.float32)
    cols = np.nonzero(_neck_pixels(scene).any(axis=0))[0]
    middle = int(np.median(cols))
    bar[:, :middle - 2] = 0.0
    fit = _fit(scene, slender.astype(np.float32), bar)
    assert fit is not None
    assert fit.width_scale[:, 0].min() > 0.97 and fit.width_scale[:, 1].min() < 0.9


def test_no_neck_no_fit(scene):
    names = [n if n not in ("neck", "neck_base") else n + "_x" for n in scene["model"].region_names]
    assert fit_neck(scene["vertices"], scene["faces"], scene["region"], names, scene["camera"],
                    scene["surface"].mask.astype(np.float32)) is None
    assert _fit(scene, scene["surface"].mask.astype(np.float32)) is None      # the outline is the mesh's


def test_the_head_model_carries_the_neck_fit_for_every_real_view_path(scene):
    """``pipeline.hair_shells.with_shell_from_view`` (photos and clips alike) puts the
    shortened neck into the head model: posed again with the photo's parameters, the mesh
    ends where the bust does, and the face is where it was."""
    from compute_server.pipeline.hair_shells import with_shell_from_view

    model, params = scene["model"], scene["params"]
    neck_rows = np.nonzero(_neck_pixels(scene).any(axis=1))[0]
    cut = int(neck_rows.max() - 0.25 * np.ptp(neck_rows))
    matte = scene["surface"].mask.copy()
    matte[cut:] = False
    fitted, _ = with_shell_from_view(model, {k: v[0] for k, v in params.to_numpy().items()}, scene["camera"],
                                     matte.astype(np.float32))
    assert fitted is not model and not model.static_offset.any()
    with torch.no_grad():
        moved = fitted(params).vertices[0].numpy().astype(np.float64)
    after = render_surface(moved, scene["faces"], [scene["camera"]])[0]
    assert abs(np.nonzero(after.mask)[0].max() - cut) <= 3
    face = vertices_of(scene, ["face", "ear", "eyeball"])           # the scalp is the hair shell's to move
    np.testing.assert_allclose(moved[face], scene["vertices"][face], atol=1e-5)


def test_a_neck_running_out_of_the_picture_keeps_its_length(scene):
    """A photo framed tight under the chin: the neck leaves the image at its bottom edge,
    where the matte simply stops. That is not the neck's end."""
    from shared.camera import Camera

    cam = scene["camera"]
    neck_rows = np.nonzero(_neck_pixels(scene).any(axis=1))[0]
    shift = float(SIZE - 1 - np.percentile(neck_rows, 60))          # the lower part of the neck below the frame
    low = Camera(cam.world_to_camera, cam.fx, cam.fy, cam.cx, cam.cy + shift, cam.width, cam.height, cam.near, cam.far)
    matte = render_surface(scene["vertices"], scene["faces"], [low])[0].mask.astype(np.float32)
    m = scene["model"]
    fit = fit_neck(scene["vertices"], scene["faces"], scene["region"], m.region_names, low, matte)
    assert fit is None or (fit.length_scale == 1.0 and fit.width_scale.min() > 0.97)

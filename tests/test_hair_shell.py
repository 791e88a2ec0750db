"""The scalp fitted to the photo's outline (``views.hair_shell``) and carried by the head
model as its static offset: hair volume where the outline stands off the skull, a lower
crown where the skull stands above it, the face never moved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.head.model import HeadParams
from compute_server.pipeline.avatar_files import rig_arrays
from compute_server.views.hair_shell import MAX_SCALE, fit_hair_shell, scalp_weights
from compute_server.views.sampling import head_centre
from compute_server.views.surface import render_surface
from shared.camera import Camera

from tests.head_scene import posed_head_scene, vertices_of

SIZE = 160


@pytest.fixture(scope="module")
def scene():
    return posed_head_scene(SIZE)


def _fit(scene, matte, camera=None, surface=None, valid=None):
    m = scene["model"]
    return fit_hair_shell(scene["vertices"], scene["faces"], scene["region"], m.region_names,
                          camera or scene["camera"], matte, (surface or scene["surface"]).mask,
                          (surface or scene["surface"]).face_ids, valid)


def _shelled(scene, shell):
    model, params = scene["model"], scene["params"]
    change = model.rest_offset_for(params, shell.offset.astype(np.float32))
    shelled = model.with_static_offset(change)
    with torch.no_grad():
        return shelled, shelled(params).vertices[0].numpy().astype(np.float64)


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_hair_standing_off_the_skull_widens_the_scalp_and_leaves_the_face(scene):
    """A photo whose hair makes a round outline a fifth wider than the skull: the scalp
    grows to it (the posed mesh's outline matches it above the ears), the face, ears and
    neck do not move, and no vertex moves further than the largest scale allows."""
    cam, mask = scene["camera"], scene["surface"].mask
    scalp = scene["vertices"][vertices_of(scene, ["scalp"])]
    cx, cy = cam.project(0.5 * (scalp.min(axis=0) + scalp.max(axis=0))[None])[0, :2]
    top = np.nonzero(mask)[0].min()
    assert top > 10                                            # the whole head is in the frame
    radius = 1.2 * (cy - top)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    blob = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
    matte = (mask | blob).astype(np.float32)
    shell = _fit(scene, matte)
    assert shell is not None and shell.measured.sum() > 10
    shelled, moved = _shelled(scene, shell)
    after = render_surface(moved, scene["faces"], [cam])[0].mask
    upper = yy < cy                                            # above the cranium's middle: the scalp's outline
    assert _iou(after & upper, matte.astype(bool) & upper) > 0.93 > _iou(mask & upper, matte.astype(bool) & upper)
    still = vertices_of(scene, ["face", "ear", "neck", "eyeball", "teeth", "mouth_interior"])
    np.testing.assert_allclose(moved[still], scene["vertices"][still], atol=1e-6)
    reach = np.ptp(scene["vertices"], axis=0).max()
    assert np.linalg.norm(moved - scene["vertices"], axis=1).max() < (MAX_SCALE - 1.0) * reach
    # the back of the head grows with the top: the shell is closed over the back
    behind = scene["vertices"][:, 2] < np.quantile(scene["vertices"][:, 2], 0.1)
    grew = np.linalg.norm(moved - scene["vertices"], axis=1)[behind & (scalp_weights(
        scene["vertices"], scene["faces"], scene["region"], scene["model"].region_names) > 0.9)]
    assert grew.size > 20 and np.median(grew) > 0.005


def test_a_crown_the_photo_shows_as_background_comes_down(scene):
    cam, mask = scene["camera"], scene["surface"].mask
    rows = np.nonzero(mask)[0]
    cut = int(rows.min() + 0.05 * np.ptp(rows))            # within what the shell may take off
    matte = mask.astype(np.float32)
    matte[:cut] = 0.0
    shell = _fit(scene, matte)
    _, moved = _shelled(scene, shell)
    after = render_surface(moved, scene["faces"], [cam])[0].mask
    assert abs(np.nonzero(after)[0].min() - cut) <= 2
    face = vertices_of(scene, ["face"])
    np.testing.assert_allclose(moved[face], scene["vertices"][face], atol=1e-6)


def test_hair_cut_by_the_frame_never_pulls_the_crown_in(scene):
    """Above the photo's top border nothing is known: where the frame cuts the head the
    scalp may only grow to the frame, never shrink, whatever the crop's padding holds."""
    cam = scene["camera"]
    px = cam.project(scene["vertices"])
    shifted = Camera(cam.world_to_camera, cam.fx, cam.fy, cam.cx, cam.cy - float(np.quantile(px[:, 1], 0.15)),
                     cam.width, cam.height, cam.near, cam.far)
    surface = render_surface(scene["vertices"], scene["faces"], [shifted])[0]
    matte = surface.mask.astype(np.float32)
    valid = np.ones_like(matte)
    valid[:3] = 0.0                                            # the crop's padding beyond the photo
    matte[:3] = 0.0
    shell = _fit(scene, matte, shifted, surface, valid)
    top = scene["vertices"][:, 1] > np.quantile(scene["vertices"][:, 1], 0.95)
    centre = head_centre(scene["vertices"])
    before = np.linalg.norm(scene["vertices"][top] - centre, axis=1)
    after = np.linalg.norm(scene["vertices"][top] + shell.offset[top] - centre, axis=1)
    assert (after >= before - 1e-6).all()


def test_no_outline_no_shell(scene):
    m = scene["model"]
    empty = np.zeros((SIZE, SIZE), np.float32)
    no_scalp = [n if n != "scalp" else "hair" for n in m.region_names]
    assert fit_hair_shell(scene["vertices"], scene["faces"], scene["region"], no_scalp, scene["camera"],
                          np.ones((SIZE, SIZE), np.float32), scene["surface"].mask, scene["surface"].face_ids) is None
    assert _fit(scene, empty) is None


def test_the_static_offset_poses_with_the_head_and_reaches_the_rig(scene):
    """An offset made for the photo's pose lands where it was asked in that pose, turns with
    the head in any other, leaves the joints alone (a fitted pose means the same), and is in
    the rig's rest vertices for Blender."""
    model, params = scene["model"], scene["params"]
    rng = np.random.default_rng(0)
    posed_change = np.zeros((model.n_verts, 3), np.float32)
    scalp = vertices_of(scene, ["scalp"])
    posed_change[scalp] = rng.normal(0, 0.01, (len(scalp), 3))
    shelled = model.with_static_offset(model.rest_offset_for(params, posed_change))
    assert not model.static_offset.any()                        # the shared model is not changed
    with torch.no_grad():
        base, moved = model(params), shelled(params)
        np.testing.assert_allclose((moved.vertices - base.vertices)[0].numpy(), posed_change, atol=1e-5)
        torch.testing.assert_close(moved.joints, base.joints)
        landmarks, joints = shelled.pose_landmarks(params)
        torch.testing.assert_close(landmarks, moved.landmarks, atol=1e-6, rtol=0)
        other = HeadParams.zeros(model, 1)
        other.rotation[0] = torch.tensor([0.0, -0.6, 0.0])
        turned = (shelled(other).vertices - model(other).vertices)[0].numpy()
    assert np.linalg.norm(turned[scalp], axis=1).mean() == pytest.approx(
        np.linalg.norm(posed_change[scalp], axis=1).mean(), rel=0.05)
    rig, plain = rig_arrays(shelled, np.zeros(model.n_shape)), rig_arrays(model, np.zeros(model.n_shape))
    np.testing.assert_allclose(rig["rest_vertices"] - plain["rest_vertices"], rig["static_offset"], atol=1e-6)
    np.testing.assert_allclose(rig["joint_rest"], plain["joint_rest"])
    assert np.abs(rig["static_offset"]).max() > 0.005 and not plain["static_offset"].any()
    with pytest.raises(ValueError, match="static offset"):
        model.with_static_offset(np.zeros((3, 3)))

"""Training views without diffusion: vertex colour completion, reprojection, mirror views,
head-region masks and camera sampling, checked on a mesh textured with known colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.head.model import HeadParams, load_head_model
from compute_server.views import vertex_colors as vcol
from compute_server.views.masks import head_region, novel_view_loss_mask, photo_hull
from compute_server.views.reprojection import mirror_camera, mirror_head_params, reprojected_view
from compute_server.views.sampling import fixed_ring, head_centre, random_views
from compute_server.views.surface import render_surface
from shared.camera import Camera, orbit_camera


@pytest.fixture(scope="module")
def scene():
    model = load_head_model()
    with torch.no_grad():
        vertices = model(HeadParams.zeros(model, 1)).vertices[0].numpy().astype(np.float64)
    faces = model.faces.numpy()
    # a texture that is smooth but not symmetric, so mirror and reprojection errors show
    colors = np.clip(0.5 + 3.0 * (vertices - vertices.mean(0)) * np.array([1.0, 0.7, 0.5]), 0, 1)
    centre = head_centre(vertices)
    camera = orbit_camera(0, 0, 0.6, target=centre, width=192, height=192, fov_y_deg=25)
    surface = render_surface(vertices, faces, [camera], vertex_attrs=colors)[0]
    photo = surface.attrs.astype(np.float32)
    matte = surface.mask.astype(np.float32)
    return {"model": model, "vertices": vertices, "faces": faces, "colors": colors, "camera": camera,
            "surface": surface, "photo": photo, "matte": matte, "centre": centre}


def _complete(scene):
    m = scene["model"]
    return vcol.complete_vertex_colors(scene["vertices"], scene["faces"], m.face_region.numpy(), m.region_names,
                                       scene["vertices"], scene["photo"], scene["matte"], scene["camera"],
                                       scene["surface"])


def test_completion_keeps_seen_colours_and_colours_everything(scene):
    result = _complete(scene)
    seen = result.origin == vcol.SEEN
    assert 0.15 < seen.mean() < 0.6
    err = np.abs(result.colors[seen] - scene["colors"][seen]).max(axis=1)
    assert np.quantile(err, 0.95) < 0.03          # a few lid/eyeball vertices at occlusion edges differ
    assert np.all(np.isfinite(result.colors)) and result.colors.min() >= 0 and result.colors.max() <= 1
    assert (result.origin == vcol.HAIR_TRANSFER).any()       # the back of the scalp borrows seen hair
    m = scene["model"]
    teeth = vcol.vertex_regions(scene["faces"], m.face_region.numpy(), len(scene["vertices"])) == \
        m.region_names.index("teeth")
    assert np.all(result.origin[teeth & (result.origin != vcol.SEEN)] == vcol.DEFAULT)


def test_mirror_partners_are_an_involution_on_the_symmetric_face(scene):
    partner = vcol.mirror_vertex_index(scene["vertices"])
    face = np.unique(scene["faces"][scene["model"].face_region.numpy() == 0])
    has = face[partner[face] >= 0]
    assert len(has) > 0.9 * len(face)
    assert np.mean(partner[partner[has]] == has) > 0.95


def test_reprojection_matches_the_true_texture_where_the_photo_saw_it(scene):
    camera = orbit_camera(35, 10, 0.6, target=scene["centre"], width=192, height=192, fov_y_deg=25)
    params = {k: v[0] for k, v in HeadParams.zeros(scene["model"]).to_numpy().items()}
    view = reprojected_view(scene["vertices"], scene["faces"], _complete(scene), source_image=scene["photo"],
                            source_matte=scene["matte"], source_camera=scene["camera"],
                            source_surface=scene["surface"], target_camera=camera, head_params=params, weight=0.3,
                            use_mirror=False)
    truth = render_surface(scene["vertices"], scene["faces"], [camera], vertex_attrs=scene["colors"])[0]
    known = view.known > 0.5
    assert known.sum() > 0.3 * truth.mask.sum()
    err = np.abs(view.image[known] - truth.attrs[known]).mean()
    assert err < 0.03
    np.testing.assert_array_equal(view.mask > 0.5, truth.mask)
    assert view.loss_mask[truth.mask].min() == 1.0           # the head itself is always supervised
    band = (view.loss_mask == 0)
    assert band.any() and not (band & truth.mask).any()      # the hair band lies outside the mesh


def test_mirror_camera_sees_the_mirrored_head_as_a_flipped_picture(scene):
    mirrored_vertices = scene["vertices"] * np.array([-1.0, 1.0, 1.0])
    camera = orbit_camera(25, 5, 0.6, target=scene["centre"], width=96, height=80, fov_y_deg=25)
    a = render_surface(scene["vertices"], scene["faces"], [camera])[0].mask
    b = render_surface(mirrored_vertices, np.ascontiguousarray(scene["faces"][:, ::-1]), [mirror_camera(camera)])[0].mask
    assert (a != b[:, ::-1]).mean() < 0.01


def test_mirrored_head_params_swap_sides():
    names = ["blink_left", "blink_right", "smile_left", "smile_right", "jaw_thing"]
    params = {"expr": np.array([1.0, 0.0, 0.3, 0.0, 0.5], np.float32), "rotation": np.array([0.1, 0.2, 0.3]),
              "neck_pose": np.zeros(3), "jaw_pose": np.array([0.2, 0.1, 0.0]),
              "eyes_pose": np.array([0.0, 0.3, 0.0, 0.0, 0.1, 0.0]), "translation": np.array([0.01, 0.0, 0.0]),
              "shape": np.zeros(2)}
    out = mirror_head_params(params, names)
    np.testing.assert_allclose(out["expr"], [0.0, 1.0, 0.0, 0.3, 0.5])
    np.testing.assert_allclose(out["rotation"], [0.1, -0.2, -0.3])
    np.testing.assert_allclose(out["eyes_pose"], [0.0, -0.1, 0.0, 0.0, -0.3, 0.0])
    np.testing.assert_allclose(out["translation"], [-0.01, 0.0, 0.0])


def test_head_region_stops_at_the_neck_cut_and_leaves_room_for_hair(scene):
    m = scene["model"]
    camera = orbit_camera(0, 0, 1.2, target=scene["centre"], width=128, height=128, fov_y_deg=25)  # whole bust
    mask = render_surface(scene["vertices"], scene["faces"], [camera])[0].mask
    region = head_region(mask, camera, scene["vertices"], scene["faces"], m.face_region.numpy(), m.region_names)
    cut = int(np.flatnonzero(region.any(axis=1)).max()) + 1       # first row below the neck cut
    from scipy import ndimage

    grown = ndimage.binary_dilation(mask, iterations=5)
    assert region[cut:].sum() == 0 and grown[cut:].any()          # growth stops at the neck cut
    assert region[:cut][mask[:cut]].min() == 1.0                  # the head itself is inside
    assert region[:cut].sum() > 1.2 * mask[:cut].sum()            # grown around the silhouette for hair
    assert novel_view_loss_mask(mask)[mask].min() == 1.0


def test_camera_sampling_follows_gafs_ranges():
    reference = orbit_camera(0, 0, 1.0, width=64, height=64)
    rng = np.random.default_rng(0)
    views = random_views(reference, np.zeros(3), 200, rng, back_fraction=0.25)
    az = np.array([a for a, _, _ in views])
    el = np.array([e for _, e, _ in views])
    assert np.all(np.abs(el) <= 30) and np.all(((az >= -90) & (az <= 90)) | ((az >= 135) & (az <= 225)))
    assert 0.15 < np.mean(az > 100) < 0.35
    ring = fixed_ring(reference, np.zeros(3))
    assert any(a == 180 for a, _, _ in ring) and all(c.width == 64 for _, _, c in ring)


def test_a_reframed_camera_keeps_square_pixels_and_the_vertical_view():
    """render.frames presets at a 16:9 size: wider view, never a stretched head."""
    portrait = Camera(np.eye(4), 600.0, 600.0, 250.0, 262.0, 512, 512, 0.01, 100.0)
    wide = portrait.reframed(1920, 1080)
    assert (wide.width, wide.height) == (1920, 1080) and wide.fx == wide.fy
    assert np.isclose(wide.height / wide.fy, portrait.height / portrait.fy)        # same vertical field of view
    point = np.array([[0.01, -0.02, 0.6]])                                          # on the optical axis side
    offset = portrait.project(point)[0, :2] - [portrait.width / 2, portrait.height / 2]
    np.testing.assert_allclose(wide.project(point)[0, :2] - [960, 540], offset * 1080 / 512)
    square = portrait.reframed(256, 256)
    resized = portrait.resized(256, 256)
    assert (square.fx, square.fy, square.cx, square.cy) == pytest.approx((resized.fx, resized.fy, resized.cx, resized.cy))


def test_hidden_parts_take_colours_derived_from_the_photo(scene):
    """Cavity, tongue, teeth and the eyeball under the lids: dark red-brown cavity from the
    lips, a lip-coloured tongue on its floor, off-white teeth no brighter than the brightest
    skin and darker at the back, sclera from the photo's own sclera; a part the photo shows
    on only a few vertices (fit error at the lip line) is not trusted."""
    from compute_server.views.interior_colors import interior_colours, luminance, red_share

    m = scene["model"]
    faces, names = scene["faces"], m.region_names
    rest = scene["vertices"]
    regions = vcol.vertex_regions(faces, m.face_region.numpy(), len(rest))
    face, cavity = regions == names.index("face"), regions == names.index("mouth_interior")
    teeth, eyeball = regions == names.index("teeth"), regions == names.index("eyeball")
    skin, lip, sclera = np.array([0.5, 0.4, 0.35]), np.array([0.45, 0.2, 0.2]), np.array([0.56, 0.55, 0.53])
    colors = np.zeros((len(rest), 3))
    colors[face] = skin
    rim = np.zeros(len(rest), bool)
    rim[faces[cavity[faces].any(axis=1)].ravel()] = True
    adjacency = vcol.vertex_adjacency(faces, len(rest))
    lips = rim & face
    for _ in range(2):
        lips |= (adjacency @ lips.astype(float) > 0) & face
    colors[lips] = lip
    seen = face.copy()
    seen_ball = np.flatnonzero(eyeball & (rest[:, 2] > np.quantile(rest[eyeball, 2], 0.8)))
    colors[seen_ball] = sclera
    colors[seen_ball[::4]] = 0.1            # lashes and lid shadow over part of it
    seen[seen_ball] = True
    seen[np.flatnonzero(teeth)[:5]] = True  # a few "seen" teeth: the fitted lip line a pixel off
    colors[np.flatnonzero(teeth)[:5]] = lip

    result = interior_colours(rest, faces, regions, names, colors, seen)
    assert result.photo_shows == {"eyeball"}
    cav, tth = result.colours["mouth_interior"], result.colours["teeth"]
    floor = cavity & (rest[:, 1] < np.median(rest[cavity, 1]))
    assert luminance(cav[cavity & ~floor]).max() < 0.4 * luminance(lip)   # a dark palate and back wall
    assert luminance(cav[cavity]).max() < luminance(lip)                  # the tongue in the lips' shadow
    assert np.median(luminance(cav[floor])) > 1.5 * np.median(luminance(cav[cavity & ~floor]))  # tongue vs palate
    assert np.all(cav[cavity, 0] > cav[cavity, 2])                     # red-brown, from the lips
    z = rest[:, 2]
    front, back = teeth & (z > np.quantile(z[teeth], 0.8)), teeth & (z < np.quantile(z[teeth], 0.2))
    assert luminance(tth[front]).mean() > 1.5 * luminance(tth[back]).mean()
    assert luminance(tth[teeth]).max() <= luminance(skin) + 1e-6        # as bright as the skin, never glaring
    np.testing.assert_allclose(result.colours["eyeball"][eyeball][0], sclera, atol=1e-6)

    completed = _complete(scene)
    assert np.all(completed.origin[teeth] == vcol.DEFAULT) or (completed.origin[teeth] == vcol.SEEN).sum() >= 8

    # lips "seen" on many teeth vertices (the mesh's teeth tips peek through closed lips) are
    # not teeth; without a sclera in the photo the teeth are as bright as the brightest skin
    seen[np.flatnonzero(teeth)[:40]] = True
    colors[np.flatnonzero(teeth)[:40]] = lip * 0.8
    seen[seen_ball] = False
    result = interior_colours(rest, faces, regions, names, colors, seen)
    assert "teeth" not in result.photo_shows and "eyeball" not in result.photo_shows
    tth = result.colours["teeth"]
    assert luminance(tth[teeth]).max() <= luminance(skin) + 1e-6
    assert luminance(tth[front]).mean() > 0.8 * luminance(skin)
    # under cold light and in black and white, the teeth are in the photo's light, not a fixed warm white
    light = np.array([0.5, 0.62, 0.9])
    cold = colors * light
    tth = interior_colours(rest, faces, regions, names, cold, seen).colours["teeth"]
    assert tth[front].mean(0)[2] > tth[front].mean(0)[0]
    grey = np.repeat(luminance(colors)[:, None], 3, axis=1)
    tth = interior_colours(rest, faces, regions, names, grey, seen).colours["teeth"]
    assert np.ptp(tth[front], axis=1).max() < 1e-6
    # a "sclera" as saturated as the skin is lid skin over a fitted eye a pixel too large
    seen[seen_ball] = True
    lid = colors.copy()
    lid[seen_ball] = skin * 1.1
    result = interior_colours(rest, faces, regions, names, lid, seen)
    assert "eyeball" not in result.photo_shows
    assert red_share(result.colours["eyeball"][eyeball][0]) < red_share(skin) - 0.03   # a default white


def test_novel_views_clear_what_the_photo_shows_as_no_head(scene):
    """The mesh's crown above the photo's hair (the photo's background there) is not head in
    a side view either: transparent and supervised, while the rest keeps the mesh's coverage
    (without this the side views claimed it as scalp and it became dark arcs). A head
    narrower than the mesh at the temples leaves no see-through hole from the side: those
    rays still cross the head behind the temple, and are left unsupervised (their colour
    belongs to a surface deeper than the mesh; asking the mesh's Gaussians for it drew the
    arcs)."""
    photo_cam = scene["camera"]
    rows = photo_cam.project(scene["vertices"])[:, 1]
    cut = float(np.quantile(rows, 0.2))                      # the top fifth of the head is background
    matte = scene["matte"].copy()
    matte[: int(cut)] = 0.0
    side = orbit_camera(60, 0, 0.6, target=scene["centre"], width=192, height=192, fov_y_deg=25)
    params = {k: v[0] for k, v in HeadParams.zeros(scene["model"]).to_numpy().items()}

    def view_with(photo_matte, camera):
        return reprojected_view(scene["vertices"], scene["faces"], _complete(scene), source_image=scene["photo"],
                                source_matte=photo_matte, source_camera=photo_cam, source_surface=scene["surface"],
                                target_camera=camera, head_params=params, weight=0.3)

    view = view_with(matte, side)
    truth = render_surface(scene["vertices"], scene["faces"], [side])[0]
    on = truth.mask
    photo_rows = photo_cam.project(truth.points[on])[:, 1]
    margin = 0.01 * 192 + 1
    # rays at the side camera's height of the crown stay above the cut all the way through
    crown = (photo_rows >= 0) & (photo_rows < cut - 3 * margin) & (truth.points[on][:, 1] > side.position[1])
    below = photo_rows > cut + margin
    assert crown.sum() > 50 and below.sum() > 1000
    assert (view.mask[on][crown] == 0).all() and (view.loss_mask[on][crown] == 1).all()
    assert (view.known[on][crown] == 0).all()
    assert (view.mask[on][below] == 1).all()

    narrow = scene["matte"].copy()                            # the photo's head is narrower than the mesh
    cols = np.flatnonzero(narrow.any(axis=0))
    narrow[:, : cols.min() + len(cols) // 5] = 0.0
    narrow[:, cols.max() - len(cols) // 5:] = 0.0
    profile = orbit_camera(90, 0, 0.6, target=scene["centre"], width=192, height=192, fov_y_deg=25)
    view = view_with(narrow, profile)
    mesh = render_surface(scene["vertices"], scene["faces"], [profile])[0].mask
    assert view.mask[mesh].mean() > 0.98
    assert (view.loss_mask[mesh] == 0).mean() > 0.2   # the side the mesh has too much of: left to the other views


def test_the_hull_rule_leaves_alone_what_the_photo_frame_cuts_off(scene):
    """A head cut by the photo's top border keeps its crown: beyond the frame nothing is known."""
    photo_cam = scene["camera"]
    points = scene["vertices"]
    normals = np.tile([0.0, 1.0, 0.0], (len(points), 1))
    px = photo_cam.project(points)
    shifted = Camera(photo_cam.world_to_camera, photo_cam.fx, photo_cam.fy, photo_cam.cx,
                     photo_cam.cy - float(np.quantile(px[:, 1], 0.3)), photo_cam.width, photo_cam.height,
                     photo_cam.near, photo_cam.far)
    matte = np.ones((photo_cam.height, photo_cam.width), np.float32)
    off_frame = shifted.project(points)[:, 1] < 0
    assert off_frame.sum() > 100
    assert not photo_hull(points, normals, 0.2, shifted, matte).no_head.any()
    matte[:] = 0.0
    cleared = photo_hull(points, normals, 0.2, shifted, matte).no_head   # rays going up, out of the frame
    assert cleared[~off_frame].all() and not cleared[off_frame].any()
    matte[-1, :] = 1.0                                   # rays going down meet the photo's head at the bottom
    assert not photo_hull(points, -normals, 0.5, shifted, matte).no_head[~off_frame].all()
    # a crop padded beyond the photo's frame: the padding is beyond the frame as well
    valid = np.ones_like(matte)
    top_rows = int(np.quantile(px[:, 1], 0.3))
    padded = photo_cam.project(points)[:, 1] < top_rows
    valid[:top_rows] = 0.0
    matte[:] = 0.0
    cleared = photo_hull(points, normals, 0.2, photo_cam, matte, photo_valid=valid).no_head
    assert padded.sum() > 100 and not cleared[padded].any() and cleared[~padded].mean() > 0.9


def test_a_photo_says_nothing_beyond_its_frame(scene):
    """A tight photo's crop is padded beyond the photo's frame: the photo view asks for the
    head (alpha 1) nowhere there and for background nowhere there either, so the crown or
    neck the frame cuts off is not trained transparent (seen as holes from every side)."""
    from types import SimpleNamespace

    from compute_server.pipeline.photo_frames import photo_view

    m, camera = scene["model"], scene["camera"]
    valid = np.ones((camera.height, camera.width), np.float32)
    valid[:30] = 0.0                                               # above the photo's top border
    portrait = SimpleNamespace(image=scene["photo"], matte=scene["matte"], valid=valid, name="tight.jpg")
    params = {k: v[0] for k, v in HeadParams.zeros(m).to_numpy().items()}
    fit = SimpleNamespace(head_params=lambda i: params, images=[SimpleNamespace(camera=camera)])
    view, _, surface = photo_view(m, portrait, fit, 0)
    assert surface.mask[:30].any()                                 # the mesh reaches beyond the frame
    assert (view.loss_mask[:30] == 0).all() and (view.loss_mask[30:] == 1).all()
    assert (view.mask[:30] == 0).all()
    portrait.valid = np.ones_like(valid)
    assert photo_view(m, portrait, fit, 0)[0].loss_mask is None


def test_a_real_views_soft_outline_around_the_scalp_counts_little():
    """The matte's soft rim where the scalp's outline is seen edge-on counts little in a
    photo's or clip frame's loss (inside the frame only); the rest of the rim, the sure head
    and the sure background around it count fully."""
    from compute_server.views.masks import SOFT_RIM, SOFT_RIM_WEIGHT, real_view_loss_mask

    yy, xx = np.mgrid[0:64, 0:64]
    matte = np.clip((20.0 - np.hypot(yy - 32, xx - 32)) / 4.0 + 0.5, 0.0, 1.0)   # a disc with a 4 px soft edge
    rim = (matte > SOFT_RIM[0]) & (matte < SOFT_RIM[1])
    top = yy < 32                                                    # the scalp's side of the head
    keep = real_view_loss_mask(matte, None, top)
    assert 0 <= SOFT_RIM_WEIGHT < 0.5
    assert rim.sum() > 300 and (keep[rim & top] == SOFT_RIM_WEIGHT).all() and (keep[~(rim & top)] == 1).all()
    assert real_view_loss_mask(matte, None) is None                  # no scalp given: all of it
    valid = np.ones_like(matte)
    valid[:, :8] = 0.0                                               # the crop's padding
    keep = real_view_loss_mask(matte, valid, top)
    assert (keep[:, :8] == 0).all() and keep[32, 40] == 1 and keep[0, 40] == 1
    assert real_view_loss_mask((matte > 0.5).astype(np.float32), None, top) is None   # a hard matte: all of it

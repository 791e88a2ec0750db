"""Hair texture for the unseen scalp: copied from what the photo shows on the scalp, the
same colour for the same surface point in every view, and textured rather than smooth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.head.model import HeadParams, load_head_model
from compute_server.views.reprojection import reprojected_view
from compute_server.views.sampling import head_centre
from compute_server.views.scalp_texture import fit_sphere, photo_scalp_texture
from compute_server.views.surface import render_surface
from compute_server.views.vertex_colors import complete_vertex_colors
from shared.camera import orbit_camera


def local_std(gray: np.ndarray, mask: np.ndarray, size: int = 7) -> float:
    """Mean standard deviation of luminance in size x size windows fully inside mask."""
    from scipy import ndimage

    mean = ndimage.uniform_filter(gray, size)
    sq = ndimage.uniform_filter(gray * gray, size)
    inside = ndimage.minimum_filter(mask.astype(np.uint8), size) > 0
    return float(np.sqrt(np.maximum(sq - mean * mean, 0))[inside].mean())


@pytest.fixture(scope="module")
def head_photo():
    """The built-in head seen from the front in a 'photo' whose scalp is a random hair-like
    pattern (dark and light vertical streaks) and whose face is flat skin."""
    model = load_head_model()
    with torch.no_grad():
        vertices = model(HeadParams.zeros(model, 1)).vertices[0].numpy().astype(np.float64)
    faces = model.faces.numpy()
    face_region = model.face_region.numpy()
    scalp = model.region_names.index("scalp")
    camera = orbit_camera(0, 10, 0.6, target=head_centre(vertices), width=192, height=192, fov_y_deg=25)
    surface = render_surface(vertices, faces, [camera])[0]
    rng = np.random.default_rng(0)
    streaks = rng.uniform(0.1, 0.5, size=192)[None, :].repeat(192, axis=0)      # varies across x
    photo = np.empty((192, 192, 3), np.float32)
    photo[:] = (0.8, 0.6, 0.5)                                                 # skin
    on_scalp = surface.mask & (face_region[np.maximum(surface.face_ids, 0)] == scalp)
    photo[on_scalp] = np.stack([streaks, 0.8 * streaks, 0.6 * streaks], -1)[on_scalp]
    return dict(model=model, vertices=vertices, faces=faces, face_region=face_region, camera=camera, surface=surface,
                photo=photo, matte=surface.mask.astype(np.float32), on_scalp=on_scalp)


def _texture(s, **kw):
    return photo_scalp_texture(s["photo"], kw.get("matte", s["matte"]), s["camera"], s["surface"], s["vertices"],
                               s["faces"], s["face_region"], s["model"].region_names, seed=kw.get("seed", 0))


def test_sphere_fit_recovers_a_sphere():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(500, 3))
    points = np.array([0.01, 0.02, -0.03]) + 0.09 * d / np.linalg.norm(d, axis=1, keepdims=True)
    centre, radius = fit_sphere(points)
    np.testing.assert_allclose(centre, [0.01, 0.02, -0.03], atol=1e-9)
    assert abs(radius - 0.09) < 1e-9


def test_sources_are_scalp_pixels_of_the_photo(head_photo):
    texture = _texture(head_photo)
    assert texture is not None
    px = texture.sources_px.astype(int)
    assert head_photo["on_scalp"][px[:, 1], px[:, 0]].all()


def test_no_texture_where_the_photo_shows_no_scalp(head_photo):
    assert _texture(head_photo, matte=np.zeros_like(head_photo["matte"])) is None


def test_back_of_the_head_is_textured_with_the_photos_hair(head_photo):
    s = head_photo
    texture = _texture(s)
    back = orbit_camera(180, 0, 0.6, target=head_centre(s["vertices"]), width=192, height=192, fov_y_deg=25)
    surface = render_surface(s["vertices"], s["faces"], [back])[0]
    scalp = surface.mask & (s["face_region"][np.maximum(surface.face_ids, 0)] == s["model"].region_names.index("scalp"))
    assert scalp.sum() > 2000
    colours = texture.colours(surface.points[scalp])
    # the photo's hair, not its skin: every colour lies on the streaks' colour line
    np.testing.assert_allclose(colours[:, 1], 0.8 * colours[:, 0], atol=0.02)
    assert colours[:, 0].max() <= 0.5 + 1e-6
    # textured, like the photo's hair: local variation at least half of the photo's
    image = np.ones((192, 192))
    image[scalp] = colours.mean(axis=1)
    photo_gray = s["photo"].mean(axis=2)
    assert local_std(image, scalp) > 0.5 * local_std(photo_gray, s["on_scalp"])
    # a function of the surface point: the same point has the same colour whenever asked
    np.testing.assert_array_equal(texture.colours(surface.points[scalp][::-1]), colours[::-1])


def test_a_different_seed_gives_a_different_but_equally_hairy_texture(head_photo):
    s = head_photo
    points = s["vertices"][np.unique(s["faces"][s["face_region"] == s["model"].region_names.index("scalp")])]
    a, b = _texture(s, seed=0).colours(points), _texture(s, seed=1).colours(points)
    assert np.abs(a - b).mean() > 0.01


def test_novel_views_use_the_texture_on_the_unseen_scalp_only(head_photo):
    s = head_photo
    colours = complete_vertex_colors(s["vertices"], s["faces"], s["face_region"], s["model"].region_names,
                                     s["vertices"], s["photo"], s["matte"], s["camera"], s["surface"])
    back = orbit_camera(150, 0, 0.6, target=head_centre(s["vertices"]), width=192, height=192, fov_y_deg=25)
    scalp_faces = s["face_region"] == s["model"].region_names.index("scalp")
    common = dict(source_image=s["photo"], source_matte=s["matte"], source_camera=s["camera"],
                  source_surface=s["surface"], target_camera=back, weight=0.3,
                  head_params={k: v[0] for k, v in HeadParams.zeros(s["model"]).to_numpy().items()})
    smooth = reprojected_view(s["vertices"], s["faces"], colours, **common)
    textured = reprojected_view(s["vertices"], s["faces"], colours, scalp_texture=_texture(s), scalp_faces=scalp_faces,
                                **common)
    surface = render_surface(s["vertices"], s["faces"], [back])[0]
    scalp = surface.mask & scalp_faces[np.maximum(surface.face_ids, 0)]
    unseen_scalp = scalp & (smooth.known < 0.5)
    gray_s, gray_t = smooth.image.mean(axis=2), textured.image.mean(axis=2)
    assert local_std(gray_t, unseen_scalp) > 2 * local_std(gray_s, unseen_scalp)
    off_scalp = surface.mask & ~scalp
    np.testing.assert_array_equal(textured.image[off_scalp], smooth.image[off_scalp])


def test_hair_fades_out_over_the_nape_at_the_back_only(head_photo):
    """Below the scalp's border at the back the hair fades into the neck over a few
    centimetres, by an uneven amount; never on the throat, never far down the neck."""
    from compute_server.views.scalp_texture import NAPE_FADE_M, textured_colours

    s = head_photo
    texture = _texture(s)
    names = s["model"].region_names
    neck_faces = s["face_region"] == names.index("neck")
    scalp_faces = s["face_region"] == names.index("scalp")
    centre = s["vertices"][s["faces"][neck_faces]].mean(axis=(0, 1))
    tri = s["vertices"][s["faces"]]
    points = tri.mean(axis=1)
    ids = np.arange(len(s["faces"]))
    behind = points[:, 2] < centre[2] - 0.02
    weight = np.zeros(len(points))
    weight[neck_faces] = texture.hairline_fade(points[neck_faces])
    border = texture.hairline[np.argmin(np.abs(texture.hairline[:, 0])), 1]     # straight behind
    just_below = neck_faces & behind & (points[:, 1] > border - 0.3 * NAPE_FADE_M) & (np.abs(points[:, 0]) < 0.03)
    far_below = neck_faces & (points[:, 1] < border - 1.7 * NAPE_FADE_M)
    assert just_below.sum() >= 3 and far_below.sum() > 20
    assert weight[just_below].mean() > 0.6 and weight[far_below].max() == 0.0
    throat = points[:, 2] > centre[2] + 0.02
    assert throat.sum() > 20 and weight[neck_faces & throat].max() == 0.0              # no hair on the throat
    fill = np.full((len(points), 3), 0.7)
    out = textured_colours(texture, points, ids, fill, scalp_faces, neck_faces)
    assert np.abs(out[just_below] - 0.7).max() > 0.1 and (out[far_below] == 0.7).all()
    np.testing.assert_array_equal(out[scalp_faces], texture.colours(points[scalp_faces]))
    uneven = weight[neck_faces & behind & (points[:, 1] < border) & (points[:, 1] > border - NAPE_FADE_M)]
    assert np.ptp(uneven) > 0.3


def test_a_bald_head_gets_no_hair_texture_but_fair_hair_does(head_photo):
    """A bald scalp lit from above (the skin's own colour, brighter towards the top) is not
    hair: copying its lit top over the back made a pale, blotchy cap, so the unseen scalp
    keeps the smooth fill. Fair hair as bright as the skin but of another hue still gets a
    texture."""
    s = head_photo
    rows = np.arange(192, dtype=np.float32)[:, None, None]
    light = 1.0 + 0.35 * np.clip((110 - rows) / 80, 0, 1)                  # brighter towards the crown
    bald = dict(s, photo=np.clip(np.full((192, 192, 3), (0.7, 0.55, 0.47), np.float32) * light, 0, 1))
    assert _texture(bald) is None
    rng = np.random.default_rng(3)
    fair = s["photo"].copy()
    streaks = rng.uniform(0.55, 0.8, size=192)[None, :].repeat(192, axis=0)
    fair[s["on_scalp"]] = np.stack([streaks, 0.95 * streaks, 0.55 * streaks], -1)[s["on_scalp"]]   # straw blond
    texture = _texture(dict(s, photo=fair))
    assert texture is not None and len(texture.sources_px) > 100


def _streak_slant(gray: np.ndarray, region: np.ndarray) -> float:
    """In [-1, 1]: the mean of gx * gy over |gx * gy| in ``region`` (H, W) bool. Streaks
    running down to the right (image x right, y down) give -1, down to the left +1,
    upright or mixed ones about 0."""
    gy, gx = np.gradient(gray)
    prod = (gx * gy)[region]
    return float(prod.sum() / max(np.abs(prod).sum(), 1e-12))


def test_hair_falls_outwards_on_both_sides_of_the_back_as_in_the_photo(head_photo):
    """Hair that falls down and outwards on either side of the photo falls down and outwards
    on either side of the back: a piece is mirrored only when it fills the other side of the
    head. Mirroring at random set strands against each other in chevrons (a slant near 0)."""
    s = head_photo
    size = s["photo"].shape[0]
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    centre_x = s["camera"].project(head_centre(s["vertices"])[None])[0, 0]
    # constant along (1, 1) on the head's +x side (the photo's right), along (-1, 1) on the left
    phase = np.where(xx >= centre_x, xx - yy, xx + yy)
    streaks = 0.3 + 0.15 * np.sin(2 * np.pi * phase / 9.0)
    photo = s["photo"].copy()
    photo[s["on_scalp"]] = np.stack([streaks, 0.8 * streaks, 0.6 * streaks], -1)[s["on_scalp"]]
    texture = _texture(dict(s, photo=photo))
    assert set(np.unique(texture.source_side)) == {-1.0, 1.0}
    back = orbit_camera(180, 0, 0.6, target=head_centre(s["vertices"]), width=size, height=size, fov_y_deg=25)
    surface = render_surface(s["vertices"], s["faces"], [back])[0]
    scalp = surface.mask & (s["face_region"][np.maximum(surface.face_ids, 0)] == s["model"].region_names.index("scalp"))
    gray = np.zeros((size, size))
    gray[scalp] = texture.colours(surface.points[scalp]).mean(axis=1)
    inner = ndimage_erode(scalp, 3)
    middle = back.project(head_centre(s["vertices"])[None])[0, 0]
    # from behind the head's -x side shows at the right: outwards there is down-right (-1)
    right = inner & (xx > middle + 8) & (yy < np.flatnonzero(inner.any(axis=1)).max() - 10)
    left = inner & (xx < middle - 8) & (yy < np.flatnonzero(inner.any(axis=1)).max() - 10)
    assert right.sum() > 300 and left.sum() > 300
    assert _streak_slant(gray, right) < -0.5 and _streak_slant(gray, left) > 0.5


def ndimage_erode(mask: np.ndarray, px: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=px)

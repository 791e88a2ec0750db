"""Black letterbox and pillarbox bars are found and count as beyond the picture; dark
pictures without bars are left whole."""

from __future__ import annotations

import io

import numpy as np
import pytest

from compute_server.face.letterbox import MAX_BAR_FRACTION, picture_box
from compute_server.face.warp import crop_validity


def _scene(h=240, w=320, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(60, 230, size=(h, w, 3), dtype=np.uint8)


def test_letterbox_and_pillarbox_bars_are_cut_off():
    image = _scene()
    image[:20] = 0
    image[-27:] = rng_black = np.random.default_rng(1).integers(0, 12, size=(27, 320, 3), dtype=np.uint8)
    assert rng_black.max() < 12
    assert picture_box(image) == (0, 20, 320, 240 - 27)
    image = _scene()
    image[:, :60] = 3
    assert picture_box(image) == (60, 0, 320, 240)
    assert picture_box(_scene()) == (0, 0, 320, 240)


@pytest.mark.parametrize("case", ["fade", "wide", "thin", "dark_picture"])
def test_dark_edges_that_are_not_bars_are_kept(case):
    image = _scene()
    if case == "fade":              # a dark scene fading to black at the top
        ramp = np.linspace(0, 1, 60)[:, None, None]
        image[:60] = (image[:60] * ramp).astype(np.uint8)
    elif case == "wide":            # black over more than a quarter: a black backdrop, not a bar
        image[: int(240 * MAX_BAR_FRACTION) + 5] = 0
    elif case == "thin":            # one dark line is an edge, not a bar
        image[:1] = 0
    else:                           # a black bar beside an almost black picture: nothing to trust
        image[:] = np.minimum(image, 30)
        image[:20] = 0
    assert picture_box(image) == (0, 0, 320, 240)


def test_the_bars_are_beyond_the_frame_in_a_crop():
    matrix = np.array([[1.0, 0, -10], [0, 1.0, -10], [0, 0, 1]])        # a 100 px crop from (-10, -10)
    whole = crop_validity((320, 240), matrix, 100)
    cut = crop_validity((320, 240), matrix, 100, (0, 20, 320, 213))
    assert whole[:10].max() == 0 and whole[12:, 12:].min() == 1
    assert cut[:30].max() == 0 and cut[32:, 12:].min() == 1              # 10 px padding + the 20 px bar


def test_a_letterboxed_photo_does_not_supervise_its_bar():
    """prepare_portrait: the crop's validity is zero on the bar under a letterboxed portrait."""
    import skimage.data
    from PIL import Image

    from compute_server.face import prepare_portrait

    photo = np.zeros((260, 512, 3), np.uint8)
    photo[:210] = skimage.data.astronaut()[:210]                         # a 50 px bar below her chin
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "PNG")
    portrait = prepare_portrait(buf.getvalue(), "letterboxed.png", size=128)
    row = portrait.crop_to_source @ np.array([64.0, 127.5, 1.0])          # the crop's bottom middle, in the photo
    assert row[1] > 212 and portrait.valid[-1, 64] == 0.0

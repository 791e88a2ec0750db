"""Foreground colours at a soft matte edge (face.matte.foreground_colours): the person's
colour, not the photo's background, in hair strands and along the cheek."""

import numpy as np

from compute_server.face.matte import foreground_colours


def _composite(size: int = 256):
    yy, xx = np.mgrid[0:size, 0:size] / size
    person = np.stack([0.30 + 0.1 * np.sin(20 * xx), 0.18 + 0.05 * np.cos(17 * yy), 0.12 + 0.0 * xx], -1)
    background = np.stack([0.1 + 0 * xx, 0.7 + 0.1 * yy, 0.3 + 0 * xx], -1)   # a green screen
    r = np.hypot(xx - 0.5, yy - 0.5)
    alpha = np.clip((0.3 - r) / 0.08, 0, 1)                                  # a wide soft edge, like hair
    image = alpha[..., None] * person + (1 - alpha[..., None]) * background
    return image.astype(np.float32), alpha.astype(np.float32), person


def test_the_background_leaves_the_soft_edge():
    image, alpha, person = _composite()
    out = foreground_colours(image, alpha)
    soft = (alpha > 0.1) & (alpha < 0.9)
    before = np.abs(image - person)[soft].mean(axis=0)
    after = np.abs(out - person)[soft].mean(axis=0)
    assert after[1] < 0.35 * before[1]                 # the green fringe is mostly gone
    assert after.mean() < 0.5 * before.mean()
    assert (out >= 0).all() and (out <= 1).all()


def test_opaque_and_clear_pixels_are_unchanged():
    image, alpha, _ = _composite()
    out = foreground_colours(image, alpha)
    fixed = (alpha == 0) | (alpha == 1)
    np.testing.assert_array_equal(out[fixed], image[fixed])
    assert foreground_colours(image, np.ones_like(alpha)).tolist() == image.tolist()

"""decode_image: formats, EXIF orientation, modes, transparency and bad files."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageCms

from compute_server.errors import UserError
from compute_server.face.decode import decode_image, decode_image_with_alpha


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.mark.parametrize("fmt,tolerance", [("PNG", 0), ("WEBP", 12), ("JPEG", 12), ("BMP", 0), ("TIFF", 0)])
def test_formats_round_trip(astronaut, fmt, tolerance):
    kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    rgb = decode_image(encode(astronaut, fmt, **kwargs), f"a.{fmt.lower()}")
    assert rgb.shape == astronaut.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - astronaut.astype(int)).mean() <= tolerance


# Stored pixels for each EXIF orientation such that the displayed image is the original.
STORED_FOR_ORIENTATION = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],
    3: lambda u: u[::-1, ::-1],
    4: lambda u: u[::-1, :],
    5: lambda u: u.transpose(1, 0, 2),
    6: lambda u: np.rot90(u, 1),   # viewers rotate 90 degrees clockwise
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),
    8: lambda u: np.rot90(u, -1),  # viewers rotate 90 degrees counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(STORED_FOR_ORIENTATION))
def test_exif_orientation_is_applied(orientation):
    upright = np.zeros((96, 160, 3), np.uint8)
    upright[:20, :30] = (255, 0, 0)   # a red block at the top-left of the upright picture
    upright[-10:, :] = (0, 0, 255)     # a blue band along its bottom
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](upright))
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    decoded = decode_image_with_alpha(encode(stored, "PNG", exif=exif), "rotated.png")
    assert decoded.exif_orientation == orientation
    np.testing.assert_array_equal(decoded.rgb, upright)


def test_greyscale_palette_and_bilevel_become_rgb(astronaut):
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    rgb = decode_image(encode(grey, "PNG"), "grey.png")
    assert rgb.shape == (512, 512, 3)
    np.testing.assert_array_equal(rgb[:, :, 0], grey)
    np.testing.assert_array_equal(rgb[:, :, 2], grey)

    palette = Image.fromarray(astronaut).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    rgb = decode_image(buffer.getvalue(), "palette.png")
    assert np.abs(rgb.astype(int) - astronaut.astype(int)).mean() < 12

    bilevel = Image.fromarray(grey).convert("1")
    buffer = io.BytesIO()
    bilevel.save(buffer, format="PNG")
    rgb = decode_image(buffer.getvalue(), "bw.png")
    assert set(np.unique(rgb)) <= {0, 255}


def test_sixteen_bit_inputs_are_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 128 * 128).reshape(128, 128).astype(np.uint16)
    ok, png = cv2.imencode(".png", ramp)
    assert ok
    rgb = decode_image(png.tobytes(), "grey16.png")
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.abs(rgb[:, :, 0].astype(int) - expected).max() <= 1
    assert rgb[:, :, 0].min() == 0 and rgb[:, :, 0].max() == 255 and 120 <= rgb[64, 0, 0] <= 135

    colour16 = np.dstack([ramp, ramp[::-1], np.full_like(ramp, 32768)])  # BGR for OpenCV
    ok, png = cv2.imencode(".png", colour16)
    rgb = decode_image(png.tobytes(), "rgb16.png")
    assert np.abs(rgb[:, :, 2].astype(int) - expected).max() <= 1  # OpenCV's B is our B
    assert abs(int(rgb[0, 0, 0]) - 128) <= 1                            # R = 32768 / 257


def test_transparency_is_composited_on_white_and_kept_as_alpha(astronaut):
    alpha = np.zeros((512, 512), np.uint8)
    alpha[100:400, 150:350] = 255
    rgba = np.dstack([astronaut, alpha])
    decoded = decode_image_with_alpha(encode(rgba, "PNG"), "cutout.png")
    np.testing.assert_array_equal(decoded.alpha, alpha)
    np.testing.assert_array_equal(decoded.rgb[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(decoded.rgb[200, 200], astronaut[200, 200])

    opaque = decode_image_with_alpha(encode(np.dstack([astronaut, np.full((512, 512), 255, np.uint8)]), "PNG"), "o.png")
    assert opaque.alpha is None
    np.testing.assert_array_equal(opaque.rgb, astronaut)
    # A fully transparent layer (some exporters write one) is ignored, not turned white.
    invisible = decode_image_with_alpha(encode(np.dstack([astronaut, np.zeros((512, 512), np.uint8)]), "PNG"), "i.png")
    assert invisible.alpha is None
    np.testing.assert_array_equal(invisible.rgb, astronaut)


def test_cmyk_jpeg_and_srgb_profile(astronaut):
    cmyk = Image.fromarray(astronaut).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    rgb = decode_image(buffer.getvalue(), "cmyk.jpg")
    assert rgb.shape == (512, 512, 3)
    assert np.abs(rgb.astype(int) - astronaut.astype(int)).mean() < 15

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = decode_image(encode(astronaut, "PNG", icc_profile=srgb), "srgb.png")
    assert np.abs(rgb.astype(int) - astronaut.astype(int)).max() <= 2


def _reason(exc_info) -> str:
    assert exc_info.value.code == "bad_image"
    return exc_info.value.message


def test_bad_files_raise_bad_image_naming_the_file(astronaut):
    jpeg = encode(astronaut, "JPEG", quality=90)
    with pytest.raises(UserError) as info:
        decode_image(jpeg[: len(jpeg) // 2], "half.jpg")
    assert "half.jpg" in _reason(info) and "truncated" in _reason(info)
    with pytest.raises(UserError) as info:
        decode_image(b"<html>not an image</html>" * 10, "page.jpg")
    assert "page.jpg" in _reason(info) and "supported format" in _reason(info)
    with pytest.raises(UserError) as info:
        decode_image(b"", "empty.png")
    assert "empty" in _reason(info)
    with pytest.raises(UserError) as info:
        decode_image(b"\x00\x00\x00\x18ftypheic" + bytes(64), "photo.heic")
    assert "HEIC" in _reason(info)


def test_size_limits(astronaut):
    with pytest.raises(UserError) as info:
        decode_image(encode(astronaut, "PNG"), "big.png", max_pixels=200_000)
    assert "big.png" in _reason(info) and "megapixels" in _reason(info)
    with pytest.raises(UserError) as info:
        decode_image(encode(astronaut[:40, :300], "PNG"), "strip.png")
    assert "300x40" in _reason(info)
    assert decode_image(encode(astronaut[:64, :64], "PNG"), "tiny.png").shape == (64, 64, 3)

"""Image bytes -> upright 8-bit sRGB pixels, with a clear error for anything else.

Why: portraits arrive from phones, scanners, paint programs and the web. The pixels a user
sees in their viewer are what we must process: EXIF orientation applied, colour profiles
(Display P3, Adobe RGB, CMYK) converted to sRGB, 16-bit and greyscale and palette images
brought to 8-bit RGB, transparency composited on white but kept as a matte hint. Only the
listed formats are parsed (Pillow's rarely used plugins never see user bytes), and size is
checked from the header before any pixels are decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from compute_server.errors import UserError

DEFAULT_MAX_PIXELS = 50_000_000
MIN_SIDE_PX = 64
Image.init()  # register all plugins, so ``formats=`` below can name any of them
_FORMATS = [f for f in ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF", "AVIF") if f in Image.OPEN]
SUPPORTED_FORMATS_TEXT = "JPEG, PNG, WebP, BMP, TIFF, GIF" + (" or AVIF" if "AVIF" in _FORMATS else "")
# An alpha channel counts as a matte only if some pixels are clearly see-through.
_ALPHA_MEANINGFUL_BELOW = 250
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


@dataclass
class DecodedImage:
    """rgb: (H, W, 3) uint8 sRGB, upright. alpha: (H, W) uint8 when the file had a
    meaningful alpha channel (then ``rgb`` is composited on white), else None.
    format: the container format ("JPEG", "PNG", ...). exif_orientation: 1-8 as read
    (1 = none), already applied to the pixels."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    exif_orientation: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]


def decode_image(data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB, EXIF orientation applied; transparency composited on white.

    Raises UserError("bad_image", "<name>: ...") for unreadable, truncated, unsupported,
    too large (> max_pixels) or too small (< 64 px a side) images.
    """
    return decode_image_with_alpha(data, name, max_pixels=max_pixels).rgb


def decode_image_with_alpha(data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Like ``decode_image`` but also returns a meaningful alpha channel (a matte hint)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"image data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise _bad(name, "the file is empty")
    image = _open(data, name, max_pixels)
    try:
        image.load()
        orientation = _exif_orientation(image)
        upright = ImageOps.exif_transpose(image) if orientation != 1 else image
        rgb, alpha = _to_rgb8(upright)
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's decode errors
        raise _bad(name, f"the file is truncated or corrupt ({_short(exc)})") from exc
    finally:
        image.close()
    height, width = rgb.shape[:2]
    if min(width, height) < MIN_SIDE_PX:
        raise _bad(name, f"the image is only {width}x{height} pixels; use one at least {MIN_SIDE_PX} pixels on each side "
                         "(ideally 512 or more)")
    return DecodedImage(rgb=rgb, alpha=alpha, format=image.format or "", exif_orientation=orientation)


def _bad(name: str, reason: str) -> UserError:
    return UserError("bad_image", f"{name}: {reason}.", name=name)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Parse the header only (lazy), restricted to our formats; check the pixel count."""
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise _bad(name, "HEIC/HEIF photos are not supported; export or convert it to JPEG or PNG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check size below
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _bad(name, f"the image is too large ({_short(exc)}); the limit is {max_pixels / 1e6:.0f} megapixels") from exc
    except UnidentifiedImageError as exc:
        raise _bad(name, f"not an image in a supported format ({SUPPORTED_FORMATS_TEXT}), or the file is corrupt") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _bad(name, f"the file could not be read ({_short(exc)})") from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise _bad(name, f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); the limit is "
                         f"{max_pixels / 1e6:.0f} megapixels, so downscale it first")
    if width < 1 or height < 1:
        image.close()
        raise _bad(name, "the image has no pixels")
    return image


def _exif_orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8; 1 when absent or unreadable (corrupt EXIF must not lose the photo)."""
    try:
        value = image.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - any EXIF parse failure means "no orientation"
        return 1


def _to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (P3, Adobe RGB, CMYK ...) to reach sRGB; unchanged without one."""
    profile_bytes = image.info.get("icc_profile")
    if not profile_bytes or image.mode not in ("RGB", "RGBA", "CMYK", "L", "LA"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile_bytes))
        target = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
        converted = ImageCms.profileToProfile(image, source, target, outputMode=out_mode)
        return converted if converted is not None else image
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image  # a broken profile: use the numbers as they are, as most viewers do


def _high_bit_depth_to_8(array: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) integer/float greyscale from modes I;16*, I, F -> (H, W) uint8."""
    values = array.astype(np.float64)
    if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0  # 16-bit range (PNG/TIFF 16-bit greyscale opens as I;16 or I)
    elif mode == "F" and values.max(initial=0) <= 1.0:
        values = values * 255.0  # float images in [0, 1]
    elif mode == "F":
        values = values / max(values.max(), 1e-12) * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _to_rgb8(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> ((H, W, 3) uint8 RGB composited on white, meaningful alpha or None)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _high_bit_depth_to_8(np.asarray(image), mode)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "L", "CMYK"):  # 1, YCbCr, LAB, HSV, RGBX
        image = image.convert("RGB")
    image = _to_srgb(image)
    if image.mode not in ("RGB", "RGBA"):  # L or CMYK without a usable profile
        image = image.convert("RGB")
    array = np.asarray(image)
    if image.mode == "RGB":
        return np.ascontiguousarray(array), None
    rgb, alpha = array[:, :, :3], array[:, :, 3]
    if alpha.min() >= _ALPHA_MEANINGFUL_BELOW or alpha.max() == 0:
        # opaque, or an all-transparent layer some exporters write: the colour is what was meant
        return np.ascontiguousarray(rgb), None
    weight = alpha.astype(np.float32)[:, :, None] / 255.0
    composited = rgb.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.clip(np.rint(composited), 0, 255).astype(np.uint8), np.ascontiguousarray(alpha)

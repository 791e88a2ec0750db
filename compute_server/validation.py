"""Checking request params: every failure is a UserError naming the field and the fix.

Method handlers and ``JobKind.validate`` functions use these so that a wrong type, a
missing field or a value over a limit always produces the same kind of sentence, e.g.
"params.steps must be an integer, got str".

Why here, beside ``errors.py`` and not in ``server/``: the server's method handlers and the
jobs' ``validate`` functions (``pipeline/``) both use it, and neither layer may import the
other's package for it. It depends only on ``errors`` and ``shared``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from compute_server.errors import UserError
from shared.protocol import Limits
from shared.text import clean_text

_MISSING = object()
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a map",
               list: "a list", bytes: "binary data"}


def _type_name(t) -> str:
    return _TYPE_NAMES.get(t, t.__name__)


class _Absent(Exception):
    """An optional field that is absent and defaults to None (the checks are skipped)."""


def _field(params, name: str, default, where: str):
    if not isinstance(params, dict):
        raise UserError("bad_request", f"{where} must be a map")
    if name in params and params[name] is not None:
        return params[name]
    if default is _MISSING:
        raise UserError("bad_request", f"{where}.{name} is missing")
    if default is None:
        raise _Absent()
    return default


def _optional(check):
    """Let ``check(..., default=None)`` return None for an absent field instead of failing
    its type test: optional parameters without a default value."""
    import functools

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except _Absent:
            return None
    return wrapper


@_optional
def require_str(params: dict, name: str, *, default=_MISSING, max_chars: int = 1024, choices=None,
                where: str = "params") -> str:
    value = _field(params, name, default, where)
    if not isinstance(value, str):
        raise UserError("bad_request", f"{where}.{name} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise UserError("bad_request", f"{where}.{name} is longer than {max_chars} characters")
    if choices is not None and value not in choices:
        raise UserError("bad_request", f"{where}.{name} must be one of {', '.join(map(str, choices))}; got {value[:60]!r}")
    return value


@_optional
def require_bool(params: dict, name: str, *, default=_MISSING, where: str = "params") -> bool:
    value = _field(params, name, default, where)
    if not isinstance(value, bool):
        raise UserError("bad_request", f"{where}.{name} must be true or false, got {type(value).__name__}")
    return value


@_optional
def require_int(params: dict, name: str, *, default=_MISSING, min_value: int | None = None,
                max_value: int | None = None, where: str = "params") -> int:
    value = _field(params, name, default, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError("bad_request", f"{where}.{name} must be an integer, got {type(value).__name__}")
    _check_range(value, min_value, max_value, f"{where}.{name}")
    return value


@_optional
def require_float(params: dict, name: str, *, default=_MISSING, min_value: float | None = None,
                  max_value: float | None = None, where: str = "params") -> float:
    value = _field(params, name, default, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise UserError("bad_request", f"{where}.{name} must be a finite number, got {type(value).__name__}")
    _check_range(value, min_value, max_value, f"{where}.{name}")
    return float(value)


def _check_range(value, min_value, max_value, label: str) -> None:
    if min_value is not None and value < min_value:
        raise UserError("bad_request", f"{label} must be at least {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise UserError("bad_request", f"{label} must be at most {max_value}, got {value}")


@_optional
def require_map(params: dict, name: str, *, default=_MISSING, where: str = "params") -> dict:
    value = _field(params, name, default, where)
    if not isinstance(value, dict):
        raise UserError("bad_request", f"{where}.{name} must be a map, got {type(value).__name__}")
    return value


@_optional
def require_list(params: dict, name: str, *, default=_MISSING, max_items: int | None = None,
                 where: str = "params") -> list:
    value = _field(params, name, default, where)
    if not isinstance(value, list):
        raise UserError("bad_request", f"{where}.{name} must be a list, got {type(value).__name__}")
    if max_items is not None and len(value) > max_items:
        raise UserError("too_large", f"{where}.{name} has {len(value)} items; at most {max_items} are accepted")
    return value


@_optional
def require_bytes(params: dict, name: str, *, default=_MISSING, max_bytes: int | None = None,
                  where: str = "params") -> memoryview:
    """A binary field (inline bin or a $buf frame) as a read-only memoryview."""
    value = _field(params, name, default, where)
    if not isinstance(value, (bytes, memoryview)):
        raise UserError("bad_request", f"{where}.{name} must be binary data, got {type(value).__name__}")
    view = memoryview(value)
    if max_bytes is not None and view.nbytes > max_bytes:
        raise UserError("too_large", f"{where}.{name} is {view.nbytes} bytes; at most {max_bytes} are accepted")
    return view


@_optional
def require_array(params: dict, name: str, *, default=_MISSING, kinds: str = "biufc", ndim: int | None = None,
                  shape: tuple | None = None, where: str = "params") -> np.ndarray:
    """An array field ($nd). kinds: allowed numpy dtype kinds ("f" floats, "iu" ints...).
    shape: expected shape with None for free axes, e.g. (None, 3)."""
    value = _field(params, name, default, where)
    label = f"{where}.{name}"
    if not isinstance(value, np.ndarray):
        raise UserError("bad_request", f"{label} must be an array ($nd), got {type(value).__name__}")
    if value.dtype.kind not in kinds:
        raise UserError("bad_request", f"{label} has dtype {value.dtype.str}; expected kind {kinds!r}")
    if ndim is not None and value.ndim != ndim:
        raise UserError("bad_request", f"{label} must have {ndim} dimensions, got shape {list(value.shape)}")
    if shape is not None and (value.ndim != len(shape) or any(e is not None and e != n for e, n in zip(shape, value.shape))):
        expected = ["N" if e is None else e for e in shape]
        raise UserError("bad_request", f"{label} must have shape {expected}, got {list(value.shape)}")
    return value


@dataclass(frozen=True)
class ImageBytes:
    """An encoded image from a request, checked but not decoded.

    data: the PNG/JPEG file bytes. format: "png" or "jpeg". width, height: pixels.
    """

    data: memoryview
    format: str
    width: int
    height: int


@_optional
def require_name(params: dict, name: str, *, default=_MISSING, max_chars: int = 200, where: str = "params") -> str:
    """A display name (avatar names...): a string of at most ``max_chars``, cleaned by
    ``clean_text``."""
    return clean_text(require_str(params, name, default=default, max_chars=max_chars, where=where))


MAX_FILE_NAME_CHARS = 100
MAX_SUFFIX_CHARS = 16


def safe_file_name(name: str, fallback: str = "upload") -> str:
    """A client's file name made fit for messages and for the server's disk: no folders,
    no control characters, at most MAX_FILE_NAME_CHARS characters with its suffix kept
    when the suffix is short (a 250-character 'suffix' is not one)."""
    name = clean_text(os.path.basename(name.replace("\\", "/"))).lstrip(".") or fallback
    stem, suffix = os.path.splitext(name)
    if len(suffix) > MAX_SUFFIX_CHARS:
        stem, suffix = name, ""
    return stem[:MAX_FILE_NAME_CHARS - len(suffix)] + suffix


@_optional
def require_video(params: dict, name: str = "video") -> tuple[str, bytes]:
    """A video file field ``{"name", "data"}`` -> (safe file name, see ``safe_file_name``;
    the bytes). The container is only read by the job (FFmpeg); an empty file is refused here."""
    video = require_map(params, name)
    data = video.get("data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UserError("bad_request", f"params.{name}.data must be the video file's bytes")
    file_name = safe_file_name(require_str(video, "name", default="video.mp4", max_chars=255, where=f"params.{name}"),
                               "video.mp4")
    if len(data) == 0:
        raise UserError("bad_file", f"{file_name}: the video file is empty")
    return file_name, bytes(data)


def check_image_size(width: int, height: int, limits: Limits, label: str) -> None:
    """Refuse an image (to decode or to render) wider or taller than
    ``limits.max_image_side`` or over ``limits.max_image_pixels`` (too_large)."""
    if width > limits.max_image_side or height > limits.max_image_side:
        raise UserError("too_large", f"{label} is {width}x{height} pixels; this server makes images of at most "
                                     f"{limits.max_image_side} pixels per side")
    if width * height > limits.max_image_pixels:
        raise UserError("too_large", f"{label} is {width}x{height} pixels; this server accepts at most "
                                     f"{limits.max_image_pixels / 1e6:g} megapixels, scale it down")


def require_image(params: dict, name: str, limits: Limits, *, default=_MISSING, where: str = "params",
                  formats: tuple[str, ...] = ("png", "jpeg")) -> ImageBytes:
    """An encoded image field: reads only the file header to check its size against
    ``limits.max_image_pixels`` (too_large) and that it is an image of one of ``formats``
    (bad_image)."""
    from PIL import Image, UnidentifiedImageError

    data = require_bytes(params, name, default=default, max_bytes=limits.max_message_bytes, where=where)
    label = f"{where}.{name}"
    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: parses the header only
            fmt, (width, height) = (image.format or "").lower(), image.size
    except Image.DecompressionBombError:
        raise UserError("too_large", f"{label} declares an absurd number of pixels; this server accepts at most "
                                     f"{limits.max_image_pixels / 1e6:g} megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UserError("bad_image", f"{label} is not a {_format_list(formats)} image that can be read") from None
    if fmt not in formats:
        raise UserError("bad_image", f"{label} is a {fmt or 'unknown'} image; send {_format_list(formats)}")
    if width * height > limits.max_image_pixels:
        raise UserError("too_large", f"{label} is {width}x{height} pixels; this server accepts at most "
                                     f"{limits.max_image_pixels / 1e6:g} megapixels, scale it down")
    return ImageBytes(data, fmt, width, height)


def _format_list(formats: tuple[str, ...]) -> str:
    names = [f.upper() if len(f) <= 4 else f.capitalize() for f in formats]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_frame_count(n_frames: int, limits: Limits, label: str = "the render") -> None:
    """Refuse requests for more frames than ``limits.max_render_frames`` (too_large)."""
    if n_frames > limits.max_render_frames:
        raise UserError("too_large", f"{label} asks for {n_frames} frames; this server renders at most "
                                     f"{limits.max_render_frames} per request, split it into shorter ranges")

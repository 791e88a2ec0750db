"""Arrays and large byte strings inside a msgpack header, carried as separate frames.

Why: a splat avatar is tens of megabytes of float32. Encoding it inside msgpack (or as
base64 in JSON) would copy it several times; instead the header holds a small reference
and the bytes travel as their own ZeroMQ frame, sent and received without copies.

Two reference forms may appear anywhere inside a header (see docs/protocol.md):

- ``{"$buf": k}``: frame ``k`` (k >= 1; frame 0 is the header) as bytes.
- ``{"$nd": {"dtype": "<f4", "shape": [N, 3], "data": <bin or {"$buf": k}>}}``: a numpy
  array; ``dtype`` is numpy's ``dtype.str`` (little-endian or byte-order free, numeric
  kinds only), ``data`` the C-order bytes, inline (small arrays) or in frame ``k``.

Map keys beginning with ``$`` are reserved for these forms; user maps must not use them.
This module is pure (numpy only): ``pack`` turns a Python tree into a header-ready tree
plus a list of buffers, ``unpack`` reverses it over the received frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

INLINE_MAX_BYTES = 64 * 1024  # arrays/bytes below this travel inside the header
MAX_NESTING = 64  # deeper headers are refused (no legitimate message needs more)
MAX_ARRAY_DIMS = 32  # numpy's own limit
MAX_DIM_SIZE = 2**48  # larger sizes cannot be real data on any machine
ALLOWED_DTYPE_KINDS = "biufc"  # bool, signed, unsigned, float, complex

_BYTES_LIKE = (bytes, bytearray, memoryview)


class WireFormatError(ValueError):
    """A header or buffer reference that does not follow the wire format; the message is
    a sentence naming what is wrong and where (e.g. ``params.means``)."""


# ---------------------------------------------------------------------------- packing


def pack(obj, *, inline_max_bytes: int = INLINE_MAX_BYTES) -> tuple[object, list[memoryview]]:
    """Replace arrays and large byte strings in ``obj`` by references.

    obj: a tree of dict (str keys), list/tuple, str, int, float, bool, None, bytes-like,
         numpy scalars and ``np.ndarray`` (numeric dtypes, any shape).
    Returns ``(tree, buffers)``: ``tree`` is msgpack-ready; ``buffers[i]`` is the payload
    of frame ``i + 1``, a 1-D uint8 memoryview that shares memory with the caller's array
    (zero-copy; do not modify the array until the message is sent).
    Raises TypeError for values the wire cannot carry and ValueError for reserved keys.
    """
    buffers: list[memoryview] = []
    tree = _pack_node(obj, buffers, inline_max_bytes, "", 0)
    return tree, buffers


def _pack_node(obj, buffers: list, inline_max: int, where: str, depth: int):
    if depth > MAX_NESTING:
        raise ValueError(f"value at {where or 'top level'} is nested more than {MAX_NESTING} levels deep")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return {"$nd": _pack_array(obj, buffers, inline_max)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, _BYTES_LIKE):
        view = memoryview(obj).cast("B") if isinstance(obj, memoryview) else memoryview(obj)
        if view.nbytes < inline_max:
            return bytes(view)
        buffers.append(view)
        return {"$buf": len(buffers)}
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"map keys must be strings, got {type(key).__name__} at {where or 'top level'}")
            if key.startswith("$"):
                raise ValueError(f"map key {key!r} at {where or 'top level'}: keys starting with '$' are reserved")
            out[key] = _pack_node(value, buffers, inline_max, _join(where, key), depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return [_pack_node(v, buffers, inline_max, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
    raise TypeError(f"cannot send a {type(obj).__name__} at {where or 'top level'}")


def _pack_array(arr: np.ndarray, buffers: list, inline_max: int) -> dict:
    if arr.dtype.kind not in ALLOWED_DTYPE_KINDS:
        raise TypeError(f"cannot send arrays of dtype {arr.dtype} (numeric dtypes only)")
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and np.little_endian is False):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d arrays into 1-d)
    flat_bytes = memoryview(arr.reshape(-1).view(np.uint8))
    header = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
    if arr.nbytes < inline_max:
        header["data"] = bytes(flat_bytes)
    else:
        buffers.append(flat_bytes)
        header["data"] = {"$buf": len(buffers)}
    return header


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# --------------------------------------------------------------------------- unpacking


def unpack(tree, buffers: Sequence, *, where: str = "") -> object:
    """Resolve ``$buf``/``$nd`` references in a decoded header.

    tree: the msgpack-decoded header (or a part of it).
    buffers: the payload of frames 1..n (anything with the buffer protocol, e.g.
             ``zmq.Frame.buffer``); ``buffers[k - 1]`` is frame ``k``.
    Returns the tree with arrays as read-only ``np.ndarray`` views over the frames
    (zero-copy) and ``$buf`` as read-only memoryviews. Byte strings that were inline stay
    ``bytes``. Raises WireFormatError naming the bad field.
    """
    views = [_readonly_view(b) for b in buffers]
    return _unpack_node(tree, views, where, 0)


def _readonly_view(buf) -> memoryview:
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view.toreadonly()


def _unpack_node(node, views: list, where: str, depth: int):
    if depth > MAX_NESTING:
        raise WireFormatError(f"{where or 'the header'} is nested more than {MAX_NESTING} levels deep")
    if isinstance(node, dict):
        if any(isinstance(k, str) and k.startswith("$") for k in node):
            return _unpack_reference(node, views, where)
        out = {}
        for key, value in node.items():
            if not isinstance(key, str):
                raise WireFormatError(f"map keys must be strings, found a {type(key).__name__} key in {where or 'the header'}")
            out[key] = _unpack_node(value, views, _join(where, key), depth + 1)
        return out
    if isinstance(node, list):
        return [_unpack_node(v, views, f"{where}[{i}]", depth + 1) for i, v in enumerate(node)]
    if node is None or isinstance(node, (bool, int, float, str, bytes)):
        return node
    raise WireFormatError(f"{where or 'the header'} holds a msgpack {type(node).__name__}, which the protocol does not use")


def _unpack_reference(node: dict, views: list, where: str):
    name = where or "the header"
    if len(node) != 1:
        raise WireFormatError(f"{name}: a map with a '$' key must hold exactly one of $buf or $nd")
    ((key, value),) = node.items()
    if key == "$buf":
        return _frame_view(value, views, name)
    if key == "$nd":
        return _unpack_array(value, views, name)
    raise WireFormatError(f"{name}: unknown reference {key!r} (keys starting with '$' are reserved)")


def _frame_view(index, views: list, name: str) -> memoryview:
    if isinstance(index, bool) or not isinstance(index, int):
        raise WireFormatError(f"{name}: $buf must be a frame number, got {type(index).__name__}")
    if not 1 <= index <= len(views):
        raise WireFormatError(f"{name}: $buf refers to frame {index}, but the message has frames 1..{len(views)} after the header")
    return views[index - 1]


def _unpack_array(spec, views: list, name: str) -> np.ndarray:
    if not isinstance(spec, dict):
        raise WireFormatError(f"{name}: $nd must be a map with dtype, shape and data")
    missing = [k for k in ("dtype", "shape", "data") if k not in spec]
    if missing:
        raise WireFormatError(f"{name}: $nd is missing {', '.join(missing)}")
    dtype = parse_dtype(spec["dtype"], name)
    shape = _parse_shape(spec["shape"], name)
    data = spec["data"]
    if isinstance(data, dict) and set(data) == {"$buf"}:
        payload = _frame_view(data["$buf"], views, f"{name}.data")
    elif isinstance(data, bytes):
        payload = memoryview(data)
    else:
        raise WireFormatError(f"{name}: $nd data must be bin or {{'$buf': k}}")
    count = 1
    for n in shape:
        count *= n
    expected = count * dtype.itemsize
    if payload.nbytes != expected:
        raise WireFormatError(
            f"{name}: array of dtype {dtype.str} and shape {list(shape)} needs {expected} bytes, got {payload.nbytes}")
    try:
        return np.frombuffer(payload, dtype=dtype, count=count).reshape(shape)
    except ValueError as exc:  # e.g. a zero-sized array with an absurd other dimension
        raise WireFormatError(f"{name}: cannot build an array of shape {list(shape)}: {exc}") from None


def parse_dtype(value, name: str = "array") -> np.dtype:
    """A wire dtype string -> numpy dtype; numeric, little-endian or byte-order free only."""
    if not isinstance(value, str) or not 1 <= len(value) <= 8:
        raise WireFormatError(f"{name}: dtype must be a short numpy type string like '<f4', got {value!r}")
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise WireFormatError(f"{name}: {value!r} is not a numpy dtype") from None
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireFormatError(f"{name}: dtype {value!r} is not allowed (bool, int, uint, float and complex only)")
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and not np.little_endian):
        raise WireFormatError(f"{name}: dtype {value!r} is big-endian; the wire is little-endian")
    return dtype


def _parse_shape(value, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_ARRAY_DIMS:
        raise WireFormatError(f"{name}: shape must be a list of at most {MAX_ARRAY_DIMS} sizes")
    for n in value:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_DIM_SIZE:
            raise WireFormatError(f"{name}: shape entries must be non-negative integers, got {value!r}"[:300])
    return tuple(value)

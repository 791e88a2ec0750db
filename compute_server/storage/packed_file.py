"""A file holding one wire tree (maps, lists, scalars, arrays, bytes): job results on disk.

Why not JSON or pickle: results hold numpy arrays (JSON cannot) and must not execute
code when read (pickle would). The layout reuses the wire format: a msgpack header tree
with ``$nd``/``$buf`` references to buffers stored after it.

Layout (little-endian):
    8 bytes  magic b"HSPACK01"
    8 bytes  u64 header length H
    H bytes  msgpack map {"tree": <tree>, "buffers": [[offset, length], ...]}
    ...      zero padding to the next multiple of 64 bytes: the data area starts there
    ...      buffers; offsets count from the start of the data area, 64-byte aligned
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import msgpack

from shared.wire_arrays import pack, unpack

from .atomic import atomic_write_bytes

MAGIC = b"HSPACK01"
_ALIGN = 64


def _aligned(offset: int) -> int:
    return (offset + _ALIGN - 1) // _ALIGN * _ALIGN


def packed_bytes(obj) -> bytearray:
    """Serialize a wire tree (see module docstring) to bytes."""
    tree, buffers = pack(obj)
    spans, position = [], 0
    for b in buffers:
        spans.append([position, b.nbytes])
        position = _aligned(position + b.nbytes)
    header = msgpack.packb({"tree": tree, "buffers": spans}, use_bin_type=True)
    data_start = _aligned(16 + len(header))
    out = bytearray(data_start + position)  # zero padding included
    out[:16] = MAGIC + struct.pack("<Q", len(header))
    out[16:16 + len(header)] = header
    for (offset, length), b in zip(spans, buffers):
        out[data_start + offset:data_start + offset + length] = b
    return out


def save_packed(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` to ``path`` atomically."""
    atomic_write_bytes(path, packed_bytes(obj))


def load_packed(path: str | os.PathLike):
    """Read a packed file; arrays are read-only views over the file's bytes.
    Raises ValueError if the file is not a packed file or is truncated."""
    data = memoryview(Path(path).read_bytes())
    if len(data) < 16 or bytes(data[:8]) != MAGIC:
        raise ValueError(f"{path} is not a HeadSplat packed file")
    (header_length,) = struct.unpack("<Q", data[8:16])
    if 16 + header_length > len(data):
        raise ValueError(f"{path} is truncated")
    header = msgpack.unpackb(data[16:16 + header_length], raw=False)
    data_start = _aligned(16 + header_length)
    views = []
    for offset, length in header["buffers"]:
        if data_start + offset + length > len(data):
            raise ValueError(f"{path} is truncated")
        views.append(data[data_start + offset:data_start + offset + length])
    return unpack(header["tree"], views)

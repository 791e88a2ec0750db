"""Looking at weight files without loading them: which file a component uses, and whether
it is complete.

Why: job submission must say "the weights are missing or broken" in milliseconds, on the
server's network thread, not fail minutes into a job. A ``.safetensors`` file starts with
an 8-byte little-endian header length and a JSON header listing every tensor's dtype,
shape and byte range, so reading the header tells whether the file is truncated or
corrupt and what shapes it holds (to compare against the model's config). ``.bin``
files (torch pickles) can only be checked for presence and their zip/pickle signature.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

MAX_HEADER_BYTES = 100 * 2**20
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


class WeightFileError(Exception):
    """A weight file that cannot be used; the message says why, without the path."""


@dataclass(frozen=True)
class WeightFiles:
    """The file(s) a component's weights live in: one file, or the shards of an index."""

    files: tuple[str, ...]
    index: str | None = None

    @property
    def primary(self) -> str:
        return self.index or self.files[0]


def safetensors_header(path: str) -> dict:
    """The JSON header of a ``.safetensors`` file, checked against the file's size.

    Returns {tensor name: {"dtype", "shape", "data_offsets"}} (metadata dropped). Raises
    WeightFileError if the file is too short, the header is not JSON, a tensor's byte
    range does not match its shape, or the data is shorter than the header promises.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WeightFileError(f"is {size} bytes long, too short for a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise WeightFileError("has a corrupt header (its length field is impossible); the file is damaged "
                                      "or not a safetensors file")
            raw = f.read(length)
    except OSError as exc:
        raise WeightFileError(f"cannot be read ({exc.strerror})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightFileError("has a corrupt header (not JSON); the file is damaged") from None
    if not isinstance(header, dict):
        raise WeightFileError("has a corrupt header")
    header.pop("__metadata__", None)
    data_bytes = size - 8 - length
    end_max = 0
    for name, info in header.items():
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            shape = [int(v) for v in info["shape"]]
            itemsize = _DTYPE_BYTES.get(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise WeightFileError(f"has a corrupt entry for tensor {name!r}") from None
        count = 1
        for dim in shape:
            count *= dim
        if itemsize is not None and end - begin != count * itemsize:
            raise WeightFileError(f"has a corrupt entry for tensor {name!r} (its byte range does not fit its shape)")
        end_max = max(end_max, end)
    if end_max > data_bytes:
        raise WeightFileError(f"is truncated: it holds {data_bytes} bytes of tensor data but its header needs "
                              f"{end_max}; download or copy it again")
    return header


def check_weight_file(path: str) -> dict | None:
    """Check one weight file; returns its safetensors header (None for ``.bin``).
    Raises WeightFileError."""
    if path.endswith(".safetensors"):
        return safetensors_header(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except OSError as exc:
        raise WeightFileError(f"cannot be read ({exc.strerror})") from None
    if magic not in (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        raise WeightFileError("is neither a torch checkpoint nor a safetensors file")
    return None


def find_weights(folder: str, stems: tuple[str, ...], variant: str | None = None) -> WeightFiles | None:
    """The weights of a component folder, preferring safetensors and the requested variant.

    stems: base names to try (diffusers models: "diffusion_pytorch_model"; transformers:
    "model", "pytorch_model"). Looks for ``stem[.variant].safetensors``, then
    ``stem[.variant].bin``, then sharded ``....index.json`` files (whose shards are listed).
    """
    variants = [variant, None] if variant else [None]
    for ext in ("safetensors", "bin"):
        for var in variants:
            for stem in stems:
                name = f"{stem}.{var}.{ext}" if var else f"{stem}.{ext}"
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    return WeightFiles((path,))
                index = path + ".index.json"
                if os.path.isfile(index):
                    return WeightFiles(tuple(_shards(index)), index=index)
    return None


def _shards(index_path: str) -> list[str]:
    try:
        with open(index_path, "rb") as f:
            weight_map = json.load(f)["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise WeightFileError("is a corrupt shard index (no weight_map)") from None
    return [os.path.join(os.path.dirname(index_path), n) for n in names]


def tensor_shapes(weights: WeightFiles) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} over all (safetensors) files of a component; checks every
    file on the way (WeightFileError names the bad shard). ``.bin`` files add nothing."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in weights.files:
        if not os.path.isfile(path):
            raise WeightFileError(f"lists the shard {os.path.basename(path)}, which is missing")
        try:
            header = check_weight_file(path)
        except WeightFileError as exc:
            if len(weights.files) > 1:
                raise WeightFileError(f"has a bad shard {os.path.basename(path)}: it {exc}") from None
            raise
        for name, info in (header or {}).items():
            shapes[name] = tuple(int(v) for v in info["shape"])
    return shapes

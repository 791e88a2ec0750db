"""Crash-safe file writes: a file is either the old version or the complete new one.

Why: the server may be killed at any instant (kill -9, power loss). Writing to a
temporary file in the same directory, fsyncing it, renaming it over the target and
fsyncing the directory means a reader never sees a half-written record.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename/creation inside ``path`` durable (a no-op where directories cannot
    be opened, e.g. Windows)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_synced(path: str | os.PathLike, data) -> None:
    """Write bytes-like ``data`` to a new file and fsync it (not atomic on its own; used
    inside staging directories that are published by one rename)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Replace ``path`` with ``obj`` as UTF-8 JSON, atomically and durably."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False).encode("utf-8"))


def remove_temp_files(directory: str | os.PathLike) -> int:
    """Delete ``.*.tmp`` leftovers of interrupted atomic writes in ``directory``; -> count."""
    removed = 0
    for entry in Path(directory).glob(".*.tmp"):
        if entry.is_file():
            entry.unlink(missing_ok=True)
            removed += 1
    return removed

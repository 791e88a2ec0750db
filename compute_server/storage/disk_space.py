"""How much the data directory can still hold, and what a full or read-only disk means
to a client.

Why a module of its own: a full disk is not a server bug. The job manager, the method
handlers and ``server.info`` all need the same two answers, "is this OSError the disk
being full (or read-only)?" and "how much room is left?", so that every place reports it
with the same code (``no_space``) and a sentence saying what to free.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from compute_server.errors import UserError

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY_ERRNOS = frozenset({errno.EROFS})
_NO_SPACE_TEXT = "No space left on device"  # libraries that wrap an OSError keep its text


@dataclass(frozen=True)
class DiskState:
    """The file system under one folder, as seen now.

    free_bytes: bytes an unprivileged writer can still use (``f_bavail``); 0 when unknown.
    total_bytes: the file system's size in bytes; 0 when unknown.
    writable: the folder exists and this process may create files in it (not a
        read-only mount, not a folder it lacks permission for).
    """

    path: Path
    free_bytes: int
    total_bytes: int
    writable: bool

    def to_wire(self) -> dict:
        return {"data_dir": str(self.path), "free_bytes": self.free_bytes, "total_bytes": self.total_bytes,
                "writable": self.writable}


def disk_state(path: str | os.PathLike) -> DiskState:
    """Free space and writability of the file system holding ``path`` (never raises)."""
    path = Path(path)
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):  # gone, or no statvfs (Windows)
        import shutil

        try:
            usage = shutil.disk_usage(path)
        except OSError:
            return DiskState(path, 0, 0, False)
        return DiskState(path, int(usage.free), int(usage.total), os.access(path, os.W_OK))
    read_only = bool(st.f_flag & getattr(os, "ST_RDONLY", 1))
    writable = not read_only and os.access(path, os.W_OK | os.X_OK)
    return DiskState(path, int(st.f_bavail * st.f_frsize), int(st.f_blocks * st.f_frsize), writable)


def _os_errors(exc: BaseException):
    """``exc`` and the exceptions it was raised from or during (a wrapper keeps the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is the disk or quota being full."""
    return any((isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS) or _NO_SPACE_TEXT in str(e)
               for e in _os_errors(exc))


def is_read_only(exc: BaseException) -> bool:
    return any(isinstance(e, OSError) and e.errno in READ_ONLY_ERRNOS for e in _os_errors(exc))


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; for messages people read."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


FREE_SPACE_HINT = ("free space there (delete avatars you no longer need with avatar.delete, or let the server "
                   "forget old jobs: headsplat serve --keep-jobs / --keep-job-days)")


def no_space_error(root: str | os.PathLike, *, needed_bytes: int | None = None, what: str = "") -> UserError:
    """The ``no_space`` error a client gets, with how much is free and what to do."""
    state = disk_state(root)
    need = f"; {what} needs about {format_bytes(needed_bytes)}" if needed_bytes else ""
    return UserError("no_space", f"the server's data disk is full: {format_bytes(state.free_bytes)} free in "
                                 f"{state.path}{need}; {FREE_SPACE_HINT}, then submit again",
                     free_bytes=state.free_bytes, **({"needed_bytes": int(needed_bytes)} if needed_bytes else {}))


def read_only_error(root: str | os.PathLike) -> UserError:
    return UserError("unavailable", f"the server's data directory {Path(root)} is read-only (a read-only mount "
                                    "or missing permission); existing avatars can still be read, but no job "
                                    "can run until it is writable again")


def storage_error(exc: BaseException, root: str | os.PathLike) -> UserError | None:
    """A full or read-only disk behind ``exc`` -> the UserError to report; else None."""
    if is_no_space(exc):
        return no_space_error(root)
    if is_read_only(exc):
        return read_only_error(root)
    return None

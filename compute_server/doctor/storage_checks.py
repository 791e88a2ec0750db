"""The data directory: it can be created and written, has room for an avatar, and no
other server holds its lock.

Why write a file rather than ask ``os.access``: network shares, read-only mounts,
quotas and root-owned folders all answer "writable" to the permission bits and then
fail the first atomic write of a job. The probe is one small file, removed at once.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ..errors import UserError
from ..storage.data_dir import DataDir, DataDirLock
from .records import FAIL, OK, WARN, Check, DoctorSettings

GROUP = "data directory"
MIN_FREE_BYTES = 256 * 2**20      # a standard avatar (~100 MB with previews) and a render's frames
WARN_FREE_BYTES = 2 * 2**30       # a few avatars and 1080p frame sequences
DATA_FIX = "choose a writable folder with --data DIR (or $HEADSPLAT_DATA), or fix the folder's permissions"


def _check(name: str, verdict: str, detail: str, fix: str = "") -> Check:
    return Check(name, verdict, detail, fix, GROUP)


def writable_check(root: Path) -> tuple[Check, DataDir | None]:
    """Create the directory (as the server would) and write, flush and remove a probe file."""
    try:
        data = DataDir.open(root)
    except UserError as exc:
        return _check("data directory writable", FAIL, exc.message, DATA_FIX), None
    probe = data.jobs / f".doctor-probe-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as f:
            f.write(b"headsplat doctor")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return _check("data directory writable", FAIL, f"cannot write in {data.root}: {exc.strerror or exc}",
                      DATA_FIX), None
    finally:
        probe.unlink(missing_ok=True)
    return _check("data directory writable", OK, f"{data.root} is writable"), data


def free_space_check(data: DataDir) -> Check:
    free = shutil.disk_usage(data.root).free
    detail = f"{free / 2**30:.1f} GiB free on the disk of {data.root}"
    if free < MIN_FREE_BYTES:
        return _check("data directory free space", FAIL, detail + f"; an avatar needs about "
                                                                  f"{MIN_FREE_BYTES / 2**20:.0f} MiB",
                      "free disk space or move the data directory (--data DIR)")
    if free < WARN_FREE_BYTES:
        return _check("data directory free space", WARN, detail + "; enough for an avatar, not for many "
                                                                  "rendered sequences", "free some disk space")
    return _check("data directory free space", OK, detail)


def lock_check(data: DataDir) -> Check:
    """Whether a server could open this directory now (its lock is free)."""
    lock = DataDirLock(data.lock_file)
    try:
        lock.acquire()
    except UserError:
        try:
            pid = data.lock_file.read_text().strip() or "?"
        except OSError:
            pid = "?"
        return _check("data directory lock", WARN, f"a HeadSplat server (pid {pid}) is using {data.root}; fine if "
                                                   "that is your server, but a second one cannot start on it",
                      "stop that server, or give another one its own --data DIR")
    lock.release()
    return _check("data directory lock", OK, "free: a server can start on this directory")


def checks(settings: DoctorSettings) -> list[Check]:
    writable, data = writable_check(Path(settings.data_dir))
    if data is None:
        return [writable]
    return [writable, free_space_check(data), lock_check(data)]

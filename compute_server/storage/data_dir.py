"""The server's data directory: where it is, what is inside, and who owns it.

Layout (docs/formats.md, "Data directory"):
    DATA/server.lock        held (advisory lock) by the one server using this directory
    DATA/avatars/           the avatar store (see avatar_store.py)
    DATA/jobs/<job>.json    job records
    DATA/jobs/<job>/        a job's outputs (result.pack, rendered frames, ...)
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from compute_server.errors import UserError

ENV_DATA_DIR = "HEADSPLAT_DATA"
log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """$HEADSPLAT_DATA, else the per-user data folder of the platform:
    ``$XDG_DATA_HOME/headsplat`` (~/.local/share/headsplat) on Linux,
    ``~/Library/Application Support/HeadSplat`` on macOS, ``%LOCALAPPDATA%\\HeadSplat``
    on Windows."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "HeadSplat"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "HeadSplat"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "headsplat"


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data directory (created on ``open``)."""

    root: Path

    @property
    def avatars(self) -> Path:
        return self.root / "avatars"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def lock_file(self) -> Path:
        return self.root / "server.lock"

    @classmethod
    def open(cls, root: str | os.PathLike) -> "DataDir":
        data = cls(Path(root).expanduser().resolve())
        try:
            for path in (data.root, data.avatars, data.jobs):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError("bad_request", f"cannot create the data directory {data.root}: {exc.strerror}; "
                                           "choose another with --data") from None
        return data


class DataDirLock:
    """An exclusive advisory lock so two servers never share a data directory.

    The OS releases it when the process dies (even on kill -9), so a crashed server never
    blocks its successor.
    """

    def __init__(self, path: Path):
        self.path = path
        self._file = None

    def acquire(self) -> None:
        """Take the lock (busy if another server holds it). On a read-only disk the
        existing lock file is locked for reading; on a full one the pid is not written.
        Neither stops the server: it serves what it can and reports the disk."""
        try:
            f = open(self.path, "a+b", buffering=0)  # unbuffered: nothing left to flush at close
        except OSError as exc:
            try:
                f = open(self.path, "rb", buffering=0)  # read-only disk: flock works on a read-only handle too
            except OSError:
                log.warning("cannot open the lock file %s (%s); make sure no other server uses %s", self.path,
                            exc.strerror, self.path.parent)
                return
        try:
            _lock_exclusive(f)
        except OSError:
            f.close()
            raise UserError("busy", f"another HeadSplat server is using the data directory {self.path.parent}; "
                                    "stop it or choose another with --data") from None
        if f.writable():
            try:
                f.seek(0)
                f.truncate()
                f.write(str(os.getpid()).encode())
            except OSError as exc:  # a full disk: the lock holds all the same
                log.warning("cannot write the pid into %s: %s", self.path, exc.strerror)
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


def _lock_exclusive(f) -> None:
    if sys.platform == "win32":
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

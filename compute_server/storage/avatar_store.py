"""The avatar store: one directory per finished avatar, published atomically.

Why this shape: an avatar is a handful of files (arrays, a preview, metadata) that later
issues decide; the store only guarantees that a listed avatar is complete. Files are
staged in ``.incoming/<id>-<random>/``, fsynced, ``avatar.json`` is written last, and the
directory is renamed to ``<id>/`` in one step. A crash at any point leaves either nothing
or a complete avatar; staging leftovers are removed on the next start. Deletion renames
into ``.trash/`` first, so a half-deleted avatar is never listed either.

Avatar ids match ``av_[0-9a-z]{8,32}`` and are checked on every access, so no id can name
a path outside the store.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import string
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from compute_server.errors import UserError
from shared.records import AvatarSummary
from shared.text import clean_text

from .atomic import fsync_dir, write_synced

log = logging.getLogger(__name__)

AVATAR_ID_PATTERN = re.compile(r"av_[0-9a-z]{8,32}")
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
METADATA_FILE = "avatar.json"
AVATAR_FORMAT_VERSION = 1
_INCOMING = ".incoming"
_TRASH = ".trash"
_ID_ALPHABET = string.digits + string.ascii_lowercase


def check_avatar_id(value) -> str:
    """Return ``value`` if it is a well-formed avatar id, else raise bad_request."""
    if isinstance(value, str) and AVATAR_ID_PATTERN.fullmatch(value):
        return value
    shown = repr(value)[:60]
    raise UserError("bad_request", f"{shown} is not an avatar id; ids look like 'av_' followed by 8 to 32 "
                                   "lowercase letters or digits (see avatar.list)")


def _check_file_name(name) -> str:
    if not isinstance(name, str) or not FILE_NAME_PATTERN.fullmatch(name) or name == METADATA_FILE:
        raise ValueError(f"avatar file name {name!r} is not allowed (letters, digits, '.', '_', '-'; "
                         f"not {METADATA_FILE})")
    return name


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _ID_ALPHABET[r] + out
        if n == 0:
            return out


class AvatarWriter:
    """Stages one avatar's files; ``commit`` publishes them, ``abort`` discards them.

    Use as a context manager: leaving the block without commit (e.g. on an exception or
    cancel) discards the staging directory.
    """

    def __init__(self, store: "AvatarStore", avatar_id: str, staging_dir: Path, job: str | None = None):
        self.store = store
        self.avatar_id = avatar_id
        self.staging_dir = staging_dir
        self.job = job
        self._done = False

    def write(self, name: str, value) -> Path:
        """Add one file.

        value: bytes-like (written as-is); ``np.ndarray`` (name must end ``.npy``);
               a mapping of names to arrays (name must end ``.npz``); or a path to an
               existing file (copied).
        """
        path = self.path_for(name)
        if isinstance(value, np.ndarray):
            if not name.endswith(".npy"):
                raise ValueError(f"array file {name!r} must end with .npy")
            with open(path, "xb") as f:
                np.save(f, value, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        elif isinstance(value, Mapping):
            if not name.endswith(".npz"):
                raise ValueError(f"array bundle {name!r} must end with .npz")
            with open(path, "xb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in value.items()})
                f.flush()
                os.fsync(f.fileno())
        elif isinstance(value, (bytes, bytearray, memoryview)):
            write_synced(path, value)
        elif isinstance(value, os.PathLike):
            shutil.copyfile(value, path)
        else:
            raise TypeError(f"cannot store a {type(value).__name__} as avatar file {name!r}")
        return path

    def path_for(self, name: str) -> Path:
        """Where a file called ``name`` goes, for code that writes files itself (e.g. a
        PLY exporter); such files are fsynced at commit."""
        if self._done:
            raise RuntimeError("this avatar was already committed or aborted")
        return self.staging_dir / _check_file_name(name)

    def commit(self, metadata: Mapping | None = None) -> Path:
        """Write ``avatar.json`` last and publish the avatar atomically; -> its directory.

        metadata: JSON-serializable map saved in avatar.json (e.g. "name", the config
                  that produced the avatar); "avatar", "format", "created_at" and "files"
                  are set by the store.
        """
        if self._done:
            raise RuntimeError("this avatar was already committed or aborted")
        files = {}
        for entry in sorted(self.staging_dir.iterdir()):
            with open(entry, "rb") as f:
                os.fsync(f.fileno())
            files[entry.name] = entry.stat().st_size
        record = {**dict(metadata or {}), "avatar": self.avatar_id, "format": AVATAR_FORMAT_VERSION,
                  "created_at": time.time(), "files": files}
        if self.job is not None:  # lets a restart tell that the job got this far (see published_by)
            record["job"] = self.job
        record["name"] = clean_text(str(record.get("name") or ""))[:200]  # shown everywhere: no control characters
        write_synced(self.staging_dir / METADATA_FILE, json.dumps(record, indent=1, sort_keys=True).encode())
        fsync_dir(self.staging_dir)
        target = self.store.root / self.avatar_id
        if target.exists():
            self.abort()
            raise UserError("conflict", f"avatar {self.avatar_id} already exists")
        os.rename(self.staging_dir, target)
        fsync_dir(self.store.root)
        self._done = True
        log.info("published avatar", extra={"avatar": self.avatar_id})
        return target

    def abort(self) -> None:
        if not self._done:
            self._done = True
            shutil.rmtree(self.staging_dir, ignore_errors=True)

    def __enter__(self) -> "AvatarWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()


class AvatarStore:
    """Avatars under ``root`` (DATA/avatars). See the module docstring."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for path in (self.root, self.root / _INCOMING, self.root / _TRASH):
            path.mkdir(parents=True, exist_ok=True)

    def recover(self) -> int:
        """Delete staging and trash leftovers of a crashed run; -> entries removed. Never
        raises for a full or read-only disk: what cannot be removed now is logged and
        removed by a later start."""
        removed = 0
        for folder in (self.root / _INCOMING, self.root / _TRASH):
            try:
                entries = list(folder.iterdir())
            except OSError as exc:
                log.warning("cannot read %s to clean it up: %s", folder, exc)
                continue
            for entry in entries:
                try:
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("cannot remove the unfinished avatar write %s: %s", entry, exc)
                    continue
                removed += 1
        if removed:
            log.warning("removed %d unfinished avatar writes or deletions left by a previous run", removed)
        return removed

    def new_id(self) -> str:
        """A fresh id: time-ordered prefix (ms) plus randomness, e.g. ``av_lx2k9f3a7q1zr0``."""
        suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
        return f"av_{_base36(time.time_ns() // 1_000_000)}{suffix}"

    def begin(self, avatar_id: str | None = None, *, job: str | None = None) -> AvatarWriter:
        """Start staging an avatar (a new id unless one is given). job: the id of the job
        making it, recorded in avatar.json as ``job``."""
        avatar_id = check_avatar_id(avatar_id) if avatar_id is not None else self.new_id()
        staging = self.root / _INCOMING / f"{avatar_id}-{secrets.token_hex(4)}"
        staging.mkdir()
        return AvatarWriter(self, avatar_id, staging, job)

    def publish(self, avatar_id: str | None, files: Mapping[str, object], metadata: Mapping | None = None, *,
                job: str | None = None) -> str:
        """Stage ``files`` (see AvatarWriter.write) and publish them; -> the avatar id."""
        with self.begin(avatar_id, job=job) as writer:
            for name, value in files.items():
                writer.write(name, value)
            writer.commit(metadata)
        return writer.avatar_id

    def for_job(self, job: str) -> "JobAvatarStore":
        """This store as job ``job`` sees it: the avatars it publishes name the job."""
        return JobAvatarStore(self, job)

    def published_by(self, jobs: Iterable[str]) -> dict[str, AvatarSummary]:
        """job id -> the avatar that job published, for the jobs in ``jobs`` that did (a
        crash between publishing and recording the job as done leaves such pairs)."""
        wanted = set(jobs)
        if not wanted:
            return {}
        return {s.metadata["job"]: s for s in self.list() if s.metadata.get("job") in wanted}

    def exists(self, avatar_id: str) -> bool:
        return (self.root / check_avatar_id(avatar_id) / METADATA_FILE).is_file()

    def path(self, avatar_id: str) -> Path:
        """The directory of a published avatar; raises not_found if there is none."""
        if not self.exists(avatar_id):
            raise UserError("not_found", f"there is no avatar {avatar_id} on this server (see avatar.list)")
        return self.root / avatar_id

    def metadata(self, avatar_id: str) -> dict:
        with open(self.path(avatar_id) / METADATA_FILE, "rb") as f:
            return json.load(f)

    def list(self) -> list[AvatarSummary]:
        """Published avatars, newest first; unreadable entries are skipped (and logged)."""
        summaries = []
        for entry in self.root.iterdir():
            if not AVATAR_ID_PATTERN.fullmatch(entry.name) or not (entry / METADATA_FILE).is_file():
                continue
            try:
                with open(entry / METADATA_FILE, "rb") as f:
                    meta = json.load(f)
                size = sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable avatar %s: %s", entry.name, exc)
                continue
            summaries.append(AvatarSummary(entry.name, str(meta.get("name", "")), float(meta.get("created_at", 0.0)),
                                           size, meta))
        summaries.sort(key=lambda s: s.created_at, reverse=True)
        return summaries

    def get(self, avatar_id: str, include: Iterable[str] | None = None) -> tuple[dict, dict, dict]:
        """-> ``(metadata, arrays, files)`` of a published avatar.

        arrays: ``<stem>`` -> read-only array for each ``.npy`` file (memory-mapped) and
                ``<stem>`` -> {key: array} for each ``.npz`` file.
        files: ``<name>`` -> bytes for every other file.
        include: file names to load (default: all); unknown names raise not_found.
        """
        folder = self.path(avatar_id)
        metadata = self.metadata(avatar_id)
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != METADATA_FILE)
        if include is not None:
            wanted = list(include)
            missing = [n for n in wanted if n not in names]
            if missing:
                raise UserError("not_found", f"avatar {avatar_id} has no file {missing[0]!r}; it has {', '.join(names)}")
            names = [n for n in names if n in wanted]
        arrays, files = {}, {}
        for name in names:
            path = folder / name
            stem = name.rsplit(".", 1)[0]
            if name.endswith(".npy"):
                arrays[stem] = _load_npy(path)
            elif name.endswith(".npz"):
                with np.load(path, allow_pickle=False) as bundle:
                    arrays[stem] = {key: bundle[key] for key in bundle.files}
            else:
                files[name] = path.read_bytes()
        return metadata, arrays, files

    def delete(self, avatar_id: str) -> None:
        """Remove a published avatar (raises not_found if there is none)."""
        folder = self.path(avatar_id)
        trash = self.root / _TRASH / f"{avatar_id}-{secrets.token_hex(4)}"
        os.rename(folder, trash)
        fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)
        log.info("deleted avatar", extra={"avatar": avatar_id})


class JobAvatarStore:
    """An AvatarStore seen from one running job: ``begin``/``publish`` record the job's
    id in the avatar's metadata; everything else is the store's own."""

    def __init__(self, store: AvatarStore, job: str):
        self._store = store
        self.job = job

    def begin(self, avatar_id: str | None = None) -> AvatarWriter:
        return self._store.begin(avatar_id, job=self.job)

    def publish(self, avatar_id: str | None, files: Mapping[str, object], metadata: Mapping | None = None) -> str:
        return self._store.publish(avatar_id, files, metadata, job=self.job)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # zero-size arrays cannot be memory-mapped
        return np.load(path, allow_pickle=False)

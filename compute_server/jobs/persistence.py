"""Job records and results on disk (DATA/jobs/), safe against crashes and racing writers.

    DATA/jobs/<job>.json          the JobRecord, replaced atomically on every save
    DATA/jobs/<job>/              the job's output folder (JobContext.output_dir)
    DATA/jobs/<job>/result.pack   the full result of a done job (packed_file format)

``forget`` removes a job (record first, then its folder); a folder whose record is gone
(a crash between the two) is removed by the next ``load_all``. Reading never fails for a
full or read-only disk (clean-ups that cannot happen now are logged and retried at the
next start); ``save`` raises the OSError and the JobManager decides what it means.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

from compute_server.storage.atomic import atomic_write_json, remove_temp_files
from compute_server.storage.packed_file import load_packed, save_packed

from .records import JOB_ID_PATTERN, JobRecord

log = logging.getLogger(__name__)

RESULT_FILE = "result.pack"


class JobRecordStore:
    """Reads and writes job records under ``root``; ``save`` may be called from any thread."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._written_revision: dict[str, int] = {}

    def record_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def output_dir(self, job_id: str, *, create: bool = False) -> Path:
        path = self.root / job_id
        if create:
            path.mkdir(exist_ok=True)
        return path

    def save(self, snapshot: dict) -> None:
        """Write a record snapshot (``JobRecord.to_json()``), unless a newer revision of
        the same job was written already."""
        job_id, revision = snapshot["job"], snapshot["revision"]
        with self._lock:
            if self._written_revision.get(job_id, -1) > revision:
                return
            atomic_write_json(self.record_path(job_id), snapshot)
            self._written_revision[job_id] = revision

    def load_all(self) -> list[JobRecord]:
        """Every readable record; unreadable files are logged and skipped."""
        try:
            remove_temp_files(self.root)
            self._remove_orphan_folders()
        except OSError as exc:  # a read-only disk: serve what is there, clean up another time
            log.warning("cannot clean up %s now: %s", self.root, exc)
        records = []
        for path in self.root.glob("job_*.json"):
            if not JOB_ID_PATTERN.fullmatch(path.stem):
                continue
            try:
                records.append(JobRecord.from_json(json.loads(path.read_bytes())))
            except Exception as exc:  # a record from a newer/older format or a damaged disk
                log.warning("skipping unreadable job record %s: %s", path.name, exc)
        return records

    def forget(self, job_id: str) -> None:
        """Remove a finished job's record and output folder from disk."""
        with self._lock:
            try:
                self.record_path(job_id).unlink(missing_ok=True)
            except OSError as exc:  # read-only disk: the next start forgets it again
                log.warning("cannot remove the record of job %s: %s", job_id, exc)
            self._written_revision.pop(job_id, None)
        self.remove_output(job_id)

    def remove_output(self, job_id: str) -> None:
        """Delete a job's output folder (a failed or cancelled job's partial files: an
        upload, frames of a render that will not be served)."""
        shutil.rmtree(self.output_dir(job_id), ignore_errors=True)

    def _remove_orphan_folders(self) -> None:
        for path in self.root.glob("job_*"):
            if path.is_dir() and JOB_ID_PATTERN.fullmatch(path.name) and not self.record_path(path.name).exists():
                log.info("removing the output folder of forgotten job %s", path.name)
                shutil.rmtree(path, ignore_errors=True)

    def save_result(self, job_id: str, result: dict) -> None:
        save_packed(self.output_dir(job_id, create=True) / RESULT_FILE, result)

    def load_result(self, job_id: str) -> dict:
        return load_packed(self.output_dir(job_id) / RESULT_FILE)

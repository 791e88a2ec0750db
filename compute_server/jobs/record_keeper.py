"""Saving job records when the disk may refuse: keep what could not be written, retry it,
and remember the newest fault for ``server.info``'s health.

Why: the job manager saves a record at every state change, from the network thread and
the worker thread. On a full or read-only disk that save raises; if the exception ends
the worker, every later job waits forever behind a server that still answers as if all
were well (issue 17). Here a failed save is not an error of the job: the record stays
right in memory, the newest snapshot of each job is retried (``flush``) until it is on
disk, and ``health()`` says how many are waiting and what went wrong last.
"""

from __future__ import annotations

import logging
import threading
import time

from compute_server.storage.disk_space import storage_error
from shared.protocol import ErrorCode

from .persistence import JobRecordStore

log = logging.getLogger(__name__)


class RecordKeeper:
    """``save`` that never raises, over a JobRecordStore (``records``); thread-safe."""

    def __init__(self, records: JobRecordStore):
        self.records = records
        self.last_problem: dict | None = None  # {"at", "where", "code", "job", "message"}
        self._unsaved: dict[str, dict] = {}  # job -> newest snapshot that could not be written
        self._lock = threading.Lock()

    @property
    def unsaved(self) -> int:
        with self._lock:
            return len(self._unsaved)

    def note_problem(self, where: str, exc: BaseException, job: str | None = None, *,
                     traceback: bool | None = None) -> str:
        """Remember a fault for health() and log it (a full or read-only disk without a
        traceback: that is the machine's state, not a bug). -> its error code."""
        known = storage_error(exc, self.records.root)
        code = known.code if known else ErrorCode.INTERNAL.value
        self.last_problem = {"at": time.time(), "where": where, "code": code, "job": job,
                             "message": f"{type(exc).__name__}: {str(exc)[:300]}"}
        if traceback is False or (traceback is None and known):
            log.error("%s failed: %s", where, exc, extra={"job": job, "code": code})
        else:
            log.error("%s failed", where, exc_info=exc, extra={"job": job, "code": code})
        return code

    def save(self, snapshot: dict, where: str = "saving a job record") -> bool:
        """Write a record snapshot (``JobRecord.to_json()``); on failure keep it for
        ``flush``. -> whether it is on disk."""
        job_id = snapshot["job"]
        try:
            self.records.save(snapshot)
        except Exception as exc:
            with self._lock:
                newest = self._unsaved.get(job_id)
                if newest is None or newest["revision"] <= snapshot["revision"]:
                    self._unsaved[job_id] = snapshot
            self.note_problem(f"{where} ({job_id})", exc, job_id)
            return False
        with self._lock:
            newest = self._unsaved.get(job_id)
            if newest is not None and newest["revision"] <= snapshot["revision"]:
                del self._unsaved[job_id]
        return True

    def flush(self) -> bool:
        """Try again to write the records that could not be saved. -> all on disk now."""
        with self._lock:
            pending = list(self._unsaved.values())
        for snapshot in pending:
            try:
                self.records.save(snapshot)
            except Exception as exc:
                log.debug("the record of %s still cannot be saved: %s", snapshot["job"], exc)
                return False
            with self._lock:
                if self._unsaved.get(snapshot["job"]) is snapshot:
                    del self._unsaved[snapshot["job"]]
        if pending:
            log.info("saved %d job record(s) that could not be written before", len(pending))
        return True

    def forget(self, job_id: str) -> None:
        """The job is gone (retention): nothing of it is left to save."""
        with self._lock:
            self._unsaved.pop(job_id, None)

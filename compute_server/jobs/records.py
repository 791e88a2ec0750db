"""Job records: what the server remembers about every job, on disk as JSON.

A record never holds the job's input or output payload, only small summaries
(``summarize``) so that ``job.list`` stays cheap and records stay readable by people.
The full result of a done job is kept separately (see persistence.py).
"""

from __future__ import annotations

import re
import secrets
import string
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from compute_server.errors import UserError
from shared.protocol import ErrorInfo
from shared.records import JobInfo, JobState

JOB_ID_PATTERN = re.compile(r"job_[0-9a-z]{8,32}")
RECORD_FORMAT_VERSION = 1
_ALPHABET = string.digits + string.ascii_lowercase


def new_job_id() -> str:
    """A fresh, time-ordered job id, e.g. ``job_lx2k9f3a7q1zr0``."""
    n, digits = time.time_ns() // 1_000_000, ""
    while n:
        n, r = divmod(n, 36)
        digits = _ALPHABET[r] + digits
    return "job_" + digits + "".join(secrets.choice(_ALPHABET) for _ in range(6))


def check_job_id(value) -> str:
    """Return ``value`` if it is a well-formed job id, else raise bad_request."""
    if isinstance(value, str) and JOB_ID_PATTERN.fullmatch(value):
        return value
    raise UserError("bad_request", f"{repr(value)[:60]} is not a job id; ids look like 'job_' followed by "
                                   "lowercase letters and digits (see job.list)")


def summarize(value, *, depth: int = 0):
    """A small JSON-safe description of a params/result tree: arrays and byte strings
    become descriptions, long strings and lists are cut, deep nesting is elided."""
    if depth > 4:
        return "..."
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):  # records are strict JSON: no NaN or infinity
        return value if np.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:197] + "..."
    if isinstance(value, np.ndarray):
        return f"array {value.dtype.str} {list(value.shape)}"
    if isinstance(value, np.generic):
        return summarize(value.item(), depth=depth)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{memoryview(value).nbytes} bytes"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:200]: summarize(v, depth=depth + 1) for k, v in items[:32]}
        if len(items) > 32:
            out["..."] = f"{len(items) - 32} more"
        return out
    if isinstance(value, (list, tuple)):
        out = [summarize(v, depth=depth + 1) for v in value[:16]]
        return out + [f"... {len(value) - 16} more"] if len(value) > 16 else out
    return type(value).__name__


@dataclass
class JobRecord:
    """The server's mutable record of one job (owned by the JobManager's lock).

    revision: incremented on every change, so a slower writer never overwrites a newer
              record on disk with an older snapshot.
    """

    job: str
    kind: str
    state: JobState
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    eta_s: float | None = None
    error: ErrorInfo | None = None
    params: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    revision: int = 0
    worker: str | None = None   # the cluster worker(s) that ran it (headsplat serve --cluster)

    def to_json(self) -> dict:
        data = asdict(self)
        data["state"] = self.state.value
        data["error"] = self.error.to_wire() if self.error else None
        data["format"] = RECORD_FORMAT_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict) -> "JobRecord":
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["state"] = JobState(data["state"])
        values["error"] = ErrorInfo.from_wire(data["error"]) if data.get("error") else None
        check_job_id(values["job"])
        return cls(**values)

    def to_info(self, *, position: int | None = None, cancel_requested: bool = False) -> JobInfo:
        return JobInfo(job=self.job, kind=self.kind, state=self.state, created_at=self.created_at,
                       started_at=self.started_at, finished_at=self.finished_at, stage=self.stage,
                       fraction=self.fraction, message=self.message, eta_s=self.eta_s, error=self.error,
                       params=self.params, result=self.result, position=position,
                       cancel_requested=cancel_requested, worker=self.worker)

    def finish(self, state: JobState, error: ErrorInfo | None = None, message: str | None = None) -> None:
        self.state = state
        self.error = error
        self.finished_at = time.time()
        if message is not None:
            self.message = message
        self.revision += 1

"""Typed records for what the server reports about jobs and avatars.

The server builds them and sends ``to_wire()``; clients (CLI, add-on) read them back
with ``from_wire()``, so the field list lives in one place. Timestamps are Unix epoch
seconds (float); ``fraction`` is overall progress in [0, 1].
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field

from .protocol import ErrorInfo


class JobState(str, enum.Enum):
    """A job's life: queued -> running -> done | failed | cancelled (queued may go
    straight to cancelled or, on shutdown/restart, failed)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    def __str__(self) -> str:
        return self.value


@dataclass
class JobFields:
    """What the server knows about one job: the fields it stores on disk and reports on the
    wire. ``JobInfo`` (the wire record) and the server's ``JobRecord`` both derive from it, so
    the two can never drift apart.

    params: a small summary of the request (arrays and large bytes replaced by
            descriptions), never the payload itself.
    result: a summary of the result of a done job.
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
    worker: str | None = None   # the cluster worker(s) that ran it; None on a server without a cluster

    def _plain(self) -> dict:
        """Every field as plain data (the state by value, the error as its wire map)."""
        data = asdict(self)
        data["state"] = self.state.value
        data["error"] = self.error.to_wire() if self.error else None
        return data

    @classmethod
    def _values_from_plain(cls, data: dict) -> dict:
        """The constructor's arguments from plain data; unknown keys (newer peers) are ignored."""
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["state"] = JobState(data["state"])
        values["error"] = ErrorInfo.from_wire(data["error"]) if data.get("error") else None
        return values

    def job_fields(self) -> dict:
        """The shared fields only, as they are (for building the other record type)."""
        return {name: getattr(self, name) for name in JobFields.__dataclass_fields__}


@dataclass
class JobInfo(JobFields):
    """One job as ``job.status`` / ``job.list`` / ``job.cancel`` report it: the stored fields
    plus what only the live queue knows.

    position: place in the queue (0 = next to run) while queued, else None.
    """

    position: int | None = None
    cancel_requested: bool = False

    def to_wire(self) -> dict:
        return self._plain()

    @classmethod
    def from_wire(cls, data: dict) -> "JobInfo":
        return cls(**cls._values_from_plain(data))


@dataclass(frozen=True)
class AvatarSummary:
    """One stored avatar as ``avatar.list`` reports it.

    metadata: the avatar's ``avatar.json`` (what produced it, its head model, ...).
    size_bytes: total size of the avatar's files on the server's disk.
    """

    avatar: str
    name: str
    created_at: float
    size_bytes: int
    metadata: dict = field(default_factory=dict)

    def to_wire(self) -> dict:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict) -> "AvatarSummary":
        return cls(avatar=data["avatar"], name=data.get("name", ""), created_at=float(data.get("created_at", 0.0)),
                   size_bytes=int(data.get("size_bytes", 0)), metadata=dict(data.get("metadata") or {}))

"""Which finished jobs the server forgets, and when.

Why: every job's record and result stay on disk so that ``job.result`` can serve them and
clients can reattach after a restart, but a render result holds every frame it made: a
server that runs for months would fill its disk with shots nobody will fetch again. The
newest ``keep_jobs`` finished jobs are kept, and none older than ``keep_days``. Queued and
running jobs are never touched, and avatars are not jobs: they stay until deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .records import JobRecord

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class RetentionPolicy:
    """keep_jobs: most finished jobs kept (newest first), at least 1 so that the job a
    client just watched finish can still be fetched; keep_days: finished jobs older than
    this are forgotten (0 means no age limit)."""

    keep_jobs: int = 500
    keep_days: float = 14.0

    def __post_init__(self):
        if self.keep_jobs < 1:
            raise ValueError(f"keep_jobs must be at least 1, got {self.keep_jobs}")
        if self.keep_days < 0:
            raise ValueError(f"keep_days must be 0 (no limit) or more, got {self.keep_days}")


def jobs_to_forget(records: Iterable[JobRecord], now: float, policy: RetentionPolicy) -> list[str]:
    """Ids of the finished jobs ``policy`` lets go at time ``now`` (seconds since the epoch)."""
    finished = sorted((r for r in records if r.state.finished),
                      key=lambda r: r.finished_at or r.created_at, reverse=True)
    max_age_s = policy.keep_days * SECONDS_PER_DAY
    forget = []
    for rank, record in enumerate(finished):
        too_old = max_age_s > 0 and now - (record.finished_at or record.created_at) > max_age_s
        if rank >= policy.keep_jobs or too_old:
            forget.append(record.job)
    return forget

"""The doctor's summary in ``server.info``: the cheap checks, computed once when the
server starts and then refreshed in the background at most every ``REFRESH_S``, so
``server.info`` (answered on the network thread, polled by every client) only ever
returns a cached map and never waits for a check.

The summary names the problems (warn and fail lines with their fixes) and counts the
rest; ``headsplat doctor`` on the server's machine runs the full set.
"""

from __future__ import annotations

import logging
import threading
import time

from .records import FAIL, WARN, DoctorSettings
from .runner import run_cheap

REFRESH_S = 300.0
log = logging.getLogger(__name__)


class DoctorSummary:
    """Callable provider: ``summary()`` -> the cached wire map; a stale one is returned
    as it is while a background thread computes the next."""

    def __init__(self, settings: DoctorSettings, refresh_s: float = REFRESH_S):
        self.settings = settings
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cached: dict | None = None
        self._at = 0.0
        self._refreshing = False

    def __call__(self) -> dict:
        with self._lock:
            cached, stale = self._cached, time.monotonic() - self._at > self.refresh_s
            start = cached is not None and stale and not self._refreshing
            if start:
                self._refreshing = True
        if cached is None:
            return self.refresh()
        if start:
            threading.Thread(target=self.refresh, name="headsplat-doctor-summary", daemon=True).start()
        return cached

    def refresh(self) -> dict:
        """Compute the summary now (at server start, and in the background thread)."""
        try:
            summary = self._compute()
        except Exception as exc:  # a broken check must not break server.info
            log.exception("the doctor's summary failed")
            summary = {"checked_at": round(time.time(), 3), "failed": True, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self._cached, self._at, self._refreshing = summary, time.monotonic(), False
        return summary

    def _compute(self) -> dict:
        report = run_cheap(self.settings)
        cuda = next((c for c in report.checks if c.name == "CUDA"), None)
        return {
            "checked_at": round(time.time(), 3),
            "cuda": cuda is not None and cuda.verdict == "ok",
            "counts": report.counts(),
            "failed": report.failed,
            "problems": [c.to_wire() for c in report.checks if c.verdict in (FAIL, WARN)],
            "full_check": "run `headsplat doctor` on the server's machine",
        }

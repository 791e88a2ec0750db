"""The doctor's summary in ``server.info``: the cheap checks, computed at most once per
``REFRESH_S`` and cached, so ``server.info`` (answered on the network thread, polled by
every client) stays fast.

The summary names the problems (warn and fail lines with their fixes) and counts the
rest; ``headsplat doctor`` on the server's machine runs the full set.
"""

from __future__ import annotations

import threading
import time

from .records import FAIL, WARN, DoctorSettings
from .runner import run_cheap

REFRESH_S = 300.0


class DoctorSummary:
    """Callable provider: ``summary()`` -> the wire map (see ``to_wire``)."""

    def __init__(self, settings: DoctorSettings, refresh_s: float = REFRESH_S):
        self.settings = settings
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cached: dict | None = None
        self._at = 0.0

    def __call__(self) -> dict:
        with self._lock:
            if self._cached is None or time.monotonic() - self._at > self.refresh_s:
                self._cached = self._compute()
                self._at = time.monotonic()
            return self._cached

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

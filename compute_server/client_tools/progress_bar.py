"""A terminal progress bar for jobs: stage, percent, ETA, on one line that updates in place
(or one line per stage when the output is not a terminal, e.g. in CI logs)."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, title: str, stream=None, width: int = 30):
        self.title = title
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_stage = None
        self._last_line_at = 0.0
        self.started = time.monotonic()

    def __call__(self, event: dict) -> None:
        stage = event.get("stage") or self._last_stage or ""
        fraction = float(event.get("fraction") or 0.0)
        message = event.get("message") or ""
        eta = event.get("eta_s")
        if self.tty:
            filled = int(round(self.width * fraction))
            bar = "#" * filled + "-" * (self.width - filled)
            eta_text = f" ETA {self._clock(eta)}" if eta else ""
            line = f"\r{self.title} [{bar}] {fraction * 100:5.1f}% {stage}: {message}{eta_text}"
            self.stream.write(line[:160].ljust(160))
            self.stream.flush()
        elif stage != self._last_stage or time.monotonic() - self._last_line_at > 15:
            self.stream.write(f"{self.title}: {fraction * 100:5.1f}% {stage}: {message}\n")
            self.stream.flush()
            self._last_line_at = time.monotonic()
        self._last_stage = stage

    def finish(self, message: str) -> None:
        elapsed = self._clock(time.monotonic() - self.started)
        self.stream.write(("\n" if self.tty else "") + f"{self.title}: {message} ({elapsed})\n")
        self.stream.flush()

    @staticmethod
    def _clock(seconds) -> str:
        seconds = int(max(0, seconds or 0))
        return f"{seconds // 60}:{seconds % 60:02d}"

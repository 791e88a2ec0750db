"""Start and stop a HeadSplat server on this machine for the user, without blocking.

Users who installed the server in a virtual environment give the command once in the
preferences (e.g. ``/home/me/headsplat/.venv/bin/headsplat serve --bind {endpoint}``);
the add-on starts it when they connect and stops it when they ask or Blender quits.
``{endpoint}`` in the command is replaced by the endpoint from the preferences. No bpy
here: the timer calls ``poll()`` to notice a server that exited, and ``stop()`` only
sends the signal (``poll()`` escalates to a kill after the grace period).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

STOP_GRACE_S = 10.0
LOG_PREFIX, LOG_SUFFIX = "headsplat-local-server-", ".log"
KEEP_LOGS = 5               # the newest logs kept in the log folder (each start writes one)


class LocalServerError(Exception):
    """The command cannot be started; the message says what to change."""


@dataclass(frozen=True)
class LocalServerStatus:
    """running: the process is alive. exit_code: its code once it ended (None while
    running or never started). log_tail: the last lines it printed."""

    running: bool
    exit_code: int | None
    log_tail: str
    pid: int | None


def command_args(command: str, endpoint: str) -> list[str]:
    """The argument list for a configured command line (placeholders: ``{endpoint}``)."""
    text = command.strip().replace("{endpoint}", endpoint)
    if not text:
        raise LocalServerError("the local server command is empty; set it in the HeadSplat preferences "
                               "(e.g. 'headsplat serve --bind {endpoint}')")
    try:
        args = shlex.split(text, posix=os.name != "nt")
    except ValueError as exc:
        raise LocalServerError(f"the local server command cannot be read ({exc}); check its quotes") from None
    return [a[1:-1] if os.name == "nt" and len(a) > 1 and a[0] == a[-1] == '"' else a for a in args]


def prune_logs(folder: str, keep: int) -> None:
    """Delete all but the newest ``keep`` local-server logs in ``folder``: every start
    writes one, and a user who starts the server daily would otherwise collect them for
    ever. The newest are the ones worth reading after a failure. A log another Blender's
    server still writes to may be deleted on POSIX (it writes on unharmed) and is skipped
    where the system refuses (Windows)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(LOG_PREFIX) and n.endswith(LOG_SUFFIX)]
    except OSError:
        return
    dated = []
    for path in (os.path.join(folder, n) for n in names):
        try:
            dated.append((os.path.getmtime(path), path))
        except OSError:
            continue
    for _, path in sorted(dated, reverse=True)[max(0, keep):]:
        try:
            os.remove(path)
        except OSError:
            pass


class LocalServer:
    """One server process started by the add-on (at most one at a time)."""

    def __init__(self, log_dir: str | None = None) -> None:
        self._proc: subprocess.Popen | None = None
        self._log_path: str | None = None
        self._stop_requested_at: float | None = None
        self._log_dir = log_dir          # None: the system's temporary folder

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stopping(self) -> bool:
        """A stop was requested and the process has not ended yet."""
        return self._stop_requested_at is not None and self.running

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, command: str, endpoint: str, env: dict | None = None) -> None:
        """Start the command in the background; returns at once. Raises LocalServerError
        when the program cannot be found or started."""
        if self.running:
            return
        args = command_args(command, endpoint)
        prune_logs(self._log_dir or tempfile.gettempdir(), keep=KEEP_LOGS - 1)
        fd, self._log_path = tempfile.mkstemp(prefix=LOG_PREFIX, suffix=LOG_SUFFIX, dir=self._log_dir)
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if sys.platform == "win32" else 0
        try:
            with os.fdopen(fd, "wb") as log_file:
                self._proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})}, creationflags=flags,
                    start_new_session=sys.platform != "win32")
        except OSError as exc:
            self._proc = None
            raise LocalServerError(f"cannot start the local server '{args[0]}': {exc.strerror or exc}. "
                                   "Set the full path of the headsplat command in the preferences") from None
        self._stop_requested_at = None

    def stop(self) -> None:
        """Ask the server to stop (SIGTERM / CTRL_BREAK); ``poll`` kills it if it has not
        stopped after STOP_GRACE_S seconds. Returns at once."""
        if not self.running:
            return
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
            if sys.platform == "win32":
                self._proc.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                self._proc.send_signal(signal.SIGTERM)

    def stop_and_wait(self, timeout_s: float = STOP_GRACE_S) -> None:
        """Stop and wait (for Blender's exit, where nothing else is left to do)."""
        if not self.running:
            return
        self.stop()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5.0)

    def poll(self) -> LocalServerStatus:
        """The process's state; also kills a server that ignored ``stop`` for too long."""
        if self._proc is None:
            return LocalServerStatus(False, None, "", None)
        code = self._proc.poll()
        if code is None and self._stop_requested_at is not None \
                and time.monotonic() - self._stop_requested_at > STOP_GRACE_S:
            self._proc.kill()
            code = self._proc.wait(5.0)
        return LocalServerStatus(code is None, code, self.log_tail(), self._proc.pid)

    def log_tail(self, max_lines: int = 6) -> str:
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(self._log_path) - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(line for line in lines[-max_lines:] if line.strip())

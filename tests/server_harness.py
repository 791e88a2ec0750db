"""Real HeadSplat servers for tests: a subprocess (``running_server``) or a thread
(``inprocess_server``), each on a free loopback port with its own data directory.

Other test modules reuse these; a typical use::

    with running_server(tmp_path) as server:
        with server.client() as client:
            client.info()

Test-only job kinds (tests/job_kinds.py, a server plugin) are on by default (``test_jobs``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from shared.client import Client

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_PLUGIN = "tests.job_kinds"  # the test-only job kinds, loaded as a server plugin (--plugin)
READY_TIMEOUT_S = 60.0


def free_tcp_port() -> int:
    """A loopback TCP port that was free a moment ago (for tests that restart a server
    on the same endpoint)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A ``headsplat serve`` subprocess. ``endpoint`` has the real port."""

    proc: subprocess.Popen
    endpoint: str
    data_dir: Path
    log_path: Path

    def client(self, **kwargs) -> Client:
        kwargs.setdefault("timeout_s", 10.0)
        return Client(self.endpoint, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; -> exit code."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL (kill -9) and wait."""
        if self.running:
            self.proc.kill()
        self.proc.wait(10)


def start_server(data_dir: Path, *, bind: str = "tcp://127.0.0.1:*", extra_args=(), env: dict | None = None,
                 test_jobs: bool = True, log_path: Path | None = None,
                 ready_timeout_s: float = READY_TIMEOUT_S) -> ServerProcess:
    """Start ``headsplat serve`` and wait until it is listening."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoint_file = data_dir.parent / f".{data_dir.name}-endpoint-{time.monotonic_ns()}"
    log_path = log_path or data_dir.parent / f"{data_dir.name}-server-{time.monotonic_ns()}.log"
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    args = [sys.executable, "-m", "compute_server.cli.main", "serve", "--bind", bind, "--data", str(data_dir),
            "--device", "cpu", "--endpoint-file", str(endpoint_file),
            *(("--plugin", TEST_PLUGIN) if test_jobs else ()), *extra_args]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + ready_timeout_s
    while not endpoint_file.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server not ready in {ready_timeout_s} s:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.02)
    endpoint = endpoint_file.read_text().strip()
    endpoint_file.unlink()
    return ServerProcess(proc, endpoint, data_dir, log_path)


@contextlib.contextmanager
def running_server(tmp_path: Path, *, data_dir: Path | None = None, **kwargs):
    """``start_server`` as a context manager; the server gets SIGTERM (then SIGKILL) at exit."""
    server = start_server(data_dir or tmp_path / "data", **kwargs)
    try:
        yield server
    finally:
        try:
            server.terminate(20.0)
        except subprocess.TimeoutExpired:
            server.kill()


@contextlib.contextmanager
def inprocess_server(tmp_path: Path, *, test_methods: bool = True, **config_fields):
    """A Server in a background thread of this process (fast; no process boundary).
    ``config_fields`` override ServerConfig fields (e.g. limits=Limits(...))."""
    from compute_server.server.app import Server
    from compute_server.server.config import ServerConfig

    config = ServerConfig(bind="tcp://127.0.0.1:*", data_dir=tmp_path / "data", device="cpu",
                          plugins=(TEST_PLUGIN,) if test_methods else ())
    server = Server(replace(config, **config_fields))
    server.start_background()
    try:
        yield server
    finally:
        server.stop()
        server.join(30.0)

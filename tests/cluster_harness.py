"""A real local Ray cluster for tests and benchmarks, started the way docs/cluster.md
tells a studio to (``ray start --head``), on loopback with a few CPUs.

The head also serves Ray Client (``ray://``) on a free port of its own, never the
default 10001, so clusters of concurrent test runs do not collide.

The cluster runs in its own process group, so ``stop()`` ends all of it at once (the
head's own SIGTERM handling drains for up to 30 s, too long for a test). Its temporary
folder is short (Ray's socket paths must fit in 107 characters) and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.server_harness import REPO_ROOT, free_tcp_port

RAY = Path(sys.executable).with_name("ray")
READY_TIMEOUT_S = 90.0


@dataclass
class RayCluster:
    proc: subprocess.Popen
    address: str
    client_address: str   # ray://127.0.0.1:PORT, the Ray Client server of the head
    temp_dir: Path
    log_path: Path

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """End the head and everything it started (workers exit with their raylet)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def start_cluster(*, num_cpus: int = 2, env: dict | None = None) -> RayCluster:
    """``ray start --head --block`` with ``num_cpus`` CPUs; -> once it accepts drivers."""
    if not RAY.exists():
        raise RuntimeError(f"no `ray` next to {sys.executable}: pip install 'headsplat[cluster]'")
    temp_dir = Path(tempfile.mkdtemp(prefix="hsray"))
    port, client_port = free_tcp_port(), free_tcp_port()
    log_path = temp_dir / "head.log"
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                        os.environ.get("PYTHONPATH")])),
                "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    args = [str(RAY), "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
            f"--ray-client-server-port={client_port}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    cluster = RayCluster(proc, f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", temp_dir, log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while "block forever" not in cluster.log():
        if not cluster.running or time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"the Ray head did not start:\n{cluster.log()[-3000:]}")
        time.sleep(0.1)
    return cluster


@contextlib.contextmanager
def running_cluster(**kwargs):
    cluster = start_cluster(**kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)

"""Cluster workers' folders: a worker's avatar cache must not outlive its process (Ray stops
actors by killing them), so each new worker removes the folders of dead ones."""

from __future__ import annotations

import os
import subprocess
import sys

from compute_server.cluster.worker import make_worker_root, remove_dead_worker_roots, worker_roots_parent


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_new_worker_removes_the_folders_of_dead_workers_only(tmp_path):
    dead = tmp_path / f"w0-pid{_dead_pid()}-abc"
    (dead / "avatars" / "av_1").mkdir(parents=True)
    (dead / "avatars" / "av_1" / "splats.npz").write_bytes(b"x" * 1000)
    alive = tmp_path / f"w1-pid{os.getpid()}-def"
    alive.mkdir()
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    root = make_worker_root("w2", parent=tmp_path)
    assert root.is_dir() and root.parent == tmp_path and f"-pid{os.getpid()}-" in root.name
    assert not dead.exists() and alive.is_dir() and unrelated.is_dir()
    assert remove_dead_worker_roots(tmp_path) == []   # nothing else is dead


def test_each_user_has_a_folder_of_their_own():
    """Two people's clusters on one machine: a shared /tmp/headsplat-workers made by one of
    them (mode 755) would stop the other's workers from starting."""
    parent = worker_roots_parent()
    assert parent.name.startswith("headsplat-workers-")
    if hasattr(os, "getuid"):
        assert parent.name == f"headsplat-workers-{os.getuid()}"

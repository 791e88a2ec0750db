"""A real full disk: the server's data directory on a 30 MB tmpfs, filled with a file.

Needs root (mount); elsewhere these tests are skipped with the reason, and the same
faults are injected at the storage layer by test_server_faults.py instead."""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid

import pytest

from shared.records import JobState
from tests.server_harness import start_server

TMPFS_SIZE = "30m"
SERVER_ARGS = ["--min-free-mb", "1"]


@pytest.fixture
def small_disk(tmp_path):
    """A mounted 30 MB tmpfs (unmounted afterwards), used as the data directory itself so
    that the harness's endpoint file and the server log stay on a healthy disk."""
    mount_point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(result.stderr or result.stdout).strip() or 'not root'}); "
                    "test_server_faults.py injects ENOSPC at the storage layer instead")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk) -> int:
    """Write zeros into DISK/fill until the disk is full; -> bytes written."""
    written = 0
    with open(disk / "fill", "wb", buffering=0) as f:
        for chunk in (2**20, 4096, 1):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
                written += chunk
    return written


def free(disk) -> None:
    (disk / "fill").unlink()


def wait_state(client, job, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.job_status(job)
        if info.state.finished:
            return info
        time.sleep(0.05)
    raise AssertionError(f"{job} not finished: {info}")


def test_full_disk_refuses_work_up_front_and_serves_again_once_space_is_freed(small_disk):
    """Issue 17.1's reproduction: before, the render failed 'internal', left a ghost job
    'running 0%', and no job ever ran again until a restart."""
    server = start_server(small_disk, extra_args=SERVER_ARGS)
    try:
        with server.client() as client:
            small = client.submit("test.avatar", {"name": "small", "points": 100})
            avatar = client.wait_job(small, timeout_s=20)["avatar"]
            fill(small_disk)
            health = client.info()["health"]
            assert health["ok"] is False and "disk is full" in health["problems"][0], health
            camera = {"world_to_camera": [1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0.6, 0, 0, 0, 1], "fx": 60.0,
                      "fy": 60.0, "cx": 32.0, "cy": 32.0, "width": 64, "height": 64}
            for method, params in (("render.frames", {"avatar": avatar, "cameras": [camera]}),
                                   ("test.count", {"steps": 1})):
                error = client.request(method, params).error
                assert error is not None and error.code == "no_space", error
                assert "free space" in error.message and str(small_disk) in error.message
            assert [j.kind for j in client.list_jobs()] == ["test.avatar"]  # no ghost job
            free(small_disk)
            assert client.info()["health"]["ok"] is True
            assert client.wait_job(client.submit("test.count", {"steps": 2, "step_s": 0.0}), timeout_s=20)["count"] == 2
        assert server.terminate() == 0
        assert "Traceback" not in server.log()
    finally:
        server.kill()


def test_disk_filling_up_under_a_queued_job_fails_it_no_space_and_the_worker_goes_on(small_disk):
    """The job's own writes hit ENOSPC, then its records: the job fails 'no_space', the
    worker takes the next job, and after a restart the job is still 'no_space' (before,
    its failed record was lost and it came back 'interrupted')."""
    data = small_disk
    server = start_server(data, extra_args=SERVER_ARGS)
    try:
        with server.client() as client:
            blocker = client.submit("test.count", {"steps": 40, "step_s": 0.05})
            big = client.submit("test.avatar", {"name": "big", "points": 40_000})  # ~9 MB of splats
            fill(small_disk)
            info = wait_state(client, big)
            assert info.state == JobState.FAILED and info.error.code == "no_space", info
            assert "free space" in info.error.message
            blocked = client.job_status(blocker)  # its result could not be saved either, or just fitted
            assert blocked.state == JobState.DONE or blocked.error.code == "no_space", blocked
            health = client.info()["health"]
            assert health["worker_alive"] and health["last_error"]["code"] == "no_space"
            assert not any(a.name == "big" for a in client.list_avatars())
            free(small_disk)
            assert client.wait_job(client.submit("test.count", {"steps": 2, "step_s": 0.0}), timeout_s=20)["count"] == 2
            deadline = time.monotonic() + 10  # the worker writes what it kept right after each job
            while client.info()["health"]["unsaved_records"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.info()["health"]["unsaved_records"] == 0
        assert server.terminate() == 0
        assert "Traceback" not in server.log()
        again = start_server(data, extra_args=SERVER_ARGS)
        try:
            with again.client() as client:
                info = client.job_status(big)
                assert info.state == JobState.FAILED and info.error.code == "no_space", info
        finally:
            again.terminate()
    finally:
        server.kill()


def test_stop_and_start_on_a_full_then_read_only_disk(small_disk):
    """Issue 17.3: SIGTERM on a full disk, and `headsplat serve` with a job left running
    on a full disk, exited with a traceback; now both work and say what is wrong."""
    data = small_disk
    server = start_server(data, extra_args=SERVER_ARGS)
    try:
        with server.client() as client:
            kept = client.wait_job(client.submit("test.avatar", {"name": "kept", "points": 100}),
                                   timeout_s=20)["avatar"]
            running = client.submit("test.count", {"steps": 10_000, "step_s": 0.05})
            queued = client.submit("test.count", {"steps": 1})
            while client.job_status(running).state != JobState.RUNNING:
                time.sleep(0.05)
            fill(small_disk)
        assert server.terminate() == 0  # shutdown could not record anything
        log = server.log()
        assert "Traceback" not in log and "could not be saved" in log
    finally:
        server.kill()

    for read_only in (False, True):
        if read_only:
            free(small_disk)
            subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        server = start_server(data, extra_args=SERVER_ARGS)
        try:
            with server.client() as client:
                for job in (running, queued):
                    info = client.job_status(job)
                    assert info.state == JobState.FAILED and info.error.code == "interrupted"
                assert [a.avatar for a in client.list_avatars()] == [kept]
                assert client.get_avatar(kept)["metadata"]["name"] == "kept"
                health = client.info()["health"]
                assert health["ok"] is False and health["unsaved_records"] >= 1, health
                if read_only:
                    assert health["writable"] is False and "read-only" in health["problems"][0]
                    error = client.request("test.count", {"steps": 1}).error
                    assert error.code == "unavailable" and "read-only" in error.message
                else:
                    assert "disk is full" in health["problems"][0]
                    assert client.request("test.count", {"steps": 1}).error.code == "no_space"
            assert server.terminate() == 0
            assert "Traceback" not in server.log(), server.log()
        finally:
            server.kill()
    assert os.path.ismount(small_disk)

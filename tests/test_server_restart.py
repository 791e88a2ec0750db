"""Crashes, restarts and shutdown: kill -9 mid-job loses no finished avatar, serves nothing
half-written and reports the interrupted job; clients reconnect; SIGTERM is graceful."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from shared.client import JobFailed
from shared.protocol import Event
from shared.records import JobState
from tests.server_harness import REPO_ROOT, free_tcp_port, running_server, start_server


def wait_for_event(client, job, name, stage=None, timeout_s=20.0) -> Event:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in client.poll(100):
            if isinstance(message, Event) and message.job == job and message.name == name and (
                    stage is None or message.params.get("stage") == stage):
                return message
    raise AssertionError(f"no {name} ({stage}) for {job} within {timeout_s} s")


def test_kill_9_mid_job_then_restart_keeps_finished_avatars_and_reports_the_job(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    data = tmp_path / "data"
    first = start_server(data, bind=endpoint)
    client = first.client(timeout_s=10)
    watcher = first.client(timeout_s=2)
    try:
        finished = client.wait_job(client.submit("test.avatar", {"name": "kept", "points": 3000}), timeout_s=20)
        before = client.get_avatar(finished["avatar"])
        writing = client.submit("test.avatar", {"name": "half", "points": 3000, "hold_s": 120})
        waiting = client.submit("test.count", {"steps": 5})
        wait_for_event(client, writing, "job.progress", stage="writing")
        assert len(list((data / "avatars" / ".incoming").iterdir())) == 1  # files staged, not published

        outcome = {}

        def follow():  # a second client following the job across the crash
            try:
                watcher.wait_job(writing, timeout_s=60, status_interval_s=0.3)
            except BaseException as exc:
                outcome["error"] = exc

        follower = threading.Thread(target=follow)
        follower.start()
        first.kill()  # kill -9 while the avatar is half-written
        second = start_server(data, bind=endpoint)
        try:
            # the same Client instances keep working against the restarted server
            info = client.job_status(writing)
            assert info.state == JobState.FAILED and info.error.code == "interrupted"
            assert "restarted while this job was running" in info.error.message
            queued = client.job_status(waiting)
            assert queued.state == JobState.FAILED and "before this job started" in queued.error.message
            assert [a.avatar for a in client.list_avatars()] == [finished["avatar"]]
            after = client.get_avatar(finished["avatar"])
            assert after["metadata"] == before["metadata"]
            np.testing.assert_array_equal(after["arrays"]["splats"], before["arrays"]["splats"])
            np.testing.assert_array_equal(after["arrays"]["head"]["binding"], before["arrays"]["head"]["binding"])
            assert list((data / "avatars" / ".incoming").iterdir()) == []
            follower.join(30)
            assert isinstance(outcome.get("error"), JobFailed) and outcome["error"].code == "interrupted"
            again = client.submit("test.count", {"steps": 2, "step_s": 0})  # and new jobs run
            assert client.wait_job(again, timeout_s=20)["count"] == 2
        finally:
            second.terminate()
    finally:
        client.close()
        watcher.close()


def test_sigterm_cancels_the_running_job_records_everything_and_exits_0(tmp_path):
    with running_server(tmp_path) as server:
        with server.client() as client:
            running = client.submit("test.count", {"steps": 1000, "step_s": 0.05})
            queued = client.submit("test.count", {"steps": 3})
            wait_for_event(client, running, "job.progress", stage="counting")
            assert server.terminate(20) == 0
            cancelled = wait_for_event(client, running, "job.cancelled", timeout_s=5)
            assert cancelled.job == running
        records = {p.stem: json.loads(p.read_text()) for p in (server.data_dir / "jobs").glob("job_*.json")}
        assert records[running]["state"] == "cancelled"
        assert records[queued]["state"] == "failed" and records[queued]["error"]["code"] == "interrupted"
        assert "shutting down" in server.log() and "stopped" in server.log()


def test_a_second_server_on_the_same_data_dir_or_port_is_refused(tmp_path, server):
    cmd = [sys.executable, "-m", "compute_server.cli.main", "serve", "--device", "cpu"]
    same_data = subprocess.run([*cmd, "--bind", "tcp://127.0.0.1:*", "--data", str(server.data_dir)],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert same_data.returncode == 2
    assert "another HeadSplat server is using the data directory" in same_data.stderr
    same_port = subprocess.run([*cmd, "--bind", server.endpoint, "--data", str(tmp_path / "other")],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert same_port.returncode == 2 and f"cannot listen on {server.endpoint}" in same_port.stderr
    with server.client() as client:
        assert client.info()["protocol"] == 1


def test_sigint_also_shuts_down_cleanly(tmp_path):
    with running_server(tmp_path) as server:
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(20) == 0

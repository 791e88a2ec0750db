"""The client library against a real server: concurrency, the poll API, events, cancel."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from shared.client import Client, JobFailed, ServerError, ServerUnavailable, result_of
from shared.protocol import Event, Reply
from shared.records import JobState
from tests.server_harness import free_tcp_port

N_CLIENTS = 8
CALLS_PER_CLIENT = 25


def test_eight_clients_calling_at_once_each_get_their_own_answers(session_server):
    errors: list[BaseException] = []
    barrier = threading.Barrier(N_CLIENTS)

    def worker(index: int):
        try:
            with session_server.client(timeout_s=20) as client:
                barrier.wait()
                for call in range(CALLS_PER_CLIENT):
                    payload = np.full((1000 + index * 97 + call, 3), index * 1000 + call, dtype=np.float32)
                    echo = client.call("debug.echo", {"who": index, "call": call, "points": payload})["echo"]
                    assert (echo["who"], echo["call"]) == (index, call)
                    np.testing.assert_array_equal(echo["points"], payload)
                    assert client.info()["protocol"] == 1
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]


def test_poll_api_returns_replies_for_many_pending_requests(session_server):
    with session_server.client() as client:
        ids = [client.send("debug.echo", {"n": i}) for i in range(50)]
        assert set(client.pending()) == set(ids) and set(client.pending().values()) == {"debug.echo"}
        replies: dict[str, Reply] = {}
        deadline = time.monotonic() + 20
        while len(replies) < 50 and time.monotonic() < deadline:
            for message in client.poll(100):
                assert isinstance(message, Reply)
                replies[message.id] = message
        assert set(replies) == set(ids) and client.pending() == {}
        assert [result_of(replies[i])["echo"]["n"] for i in ids] == list(range(50))
        assert all(r.method == "debug.echo" for r in replies.values())
        assert client.poll(0) == []


def test_poll_returns_error_replies_that_result_of_raises(session_server):
    with session_server.client() as client:
        request_id = client.send("job.status", {"job": "job_00000000zzzz"})
        deadline = time.monotonic() + 10
        messages = []
        while not messages and time.monotonic() < deadline:
            messages = client.poll(100)
        [reply] = messages
        assert reply.id == request_id and not reply.ok
        with pytest.raises(ServerError) as info:
            result_of(reply)
        assert info.value.code == "not_found" and info.value.method == "job.status"


def test_unanswered_requests_expire_as_server_unavailable():
    with Client(f"tcp://127.0.0.1:{free_tcp_port()}", timeout_s=0.3) as client:  # nobody listens there
        with pytest.raises(ServerUnavailable) as info:
            client.info()
        assert "no reply from tcp://127.0.0.1:" in str(info.value) and "is the server running?" in str(info.value)
        request_id = client.send("server.info")
        assert client.poll(0) == [] and client.expire(60.0) == []
        [expired] = client.expire(0.0)
        assert expired.id == request_id and expired.method == "server.info" and expired.error.code == "timeout"
        with pytest.raises(ServerUnavailable):
            result_of(expired)
        assert client.pending() == {}


def test_progress_events_reach_the_submitter_and_cancel_stops_a_running_job_within_a_second(session_server):
    with session_server.client() as client:
        job = client.submit("test.count", {"steps": 100, "step_s": 0.05})
        progress = []
        deadline = time.monotonic() + 20
        while len(progress) < 3 and time.monotonic() < deadline:
            progress += [m for m in client.poll(100) if isinstance(m, Event) and m.name == "job.progress"]
        assert all(e.job == job for e in progress)
        assert progress[0].params["stage"] == "starting" and progress[-1].params["stage"] == "counting"
        fractions = [e.params["fraction"] for e in progress]
        assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
        assert "eta_s" in progress[-1].params and progress[-1].params["message"].startswith("step")
        asked_at = time.monotonic()
        info = client.cancel(job)
        assert info.cancel_requested or info.state == JobState.CANCELLED
        cancelled = None
        while cancelled is None and time.monotonic() - asked_at < 1.0:
            for message in client.poll(50):
                if isinstance(message, Event) and message.name == "job.cancelled":
                    cancelled = message
        assert cancelled is not None and cancelled.job == job, "job.cancelled did not arrive within 1 s"
        assert client.job_status(job).state == JobState.CANCELLED


def test_wait_job_reports_progress_and_frames(session_server):
    with session_server.client() as client:
        seen = []
        job = client.submit("test.count", {"steps": 6, "step_s": 0.01, "frames": True})
        result = client.wait_job(job, on_progress=seen.append, timeout_s=20)
        assert result["count"] == 6
        frames = [p for p in seen if "frame" in p]
        assert [p["frame_index"] for p in frames] == list(range(6))  # frame events are never throttled away
        assert frames[2]["frame"].shape == (2, 2, 3) and int(frames[2]["frame"][0, 0, 0]) == 2


def test_watch_reroutes_a_jobs_events_to_another_client(session_server):
    with session_server.client() as submitter, session_server.client() as watcher:
        job = submitter.submit("test.count", {"steps": 30, "step_s": 0.02})
        info = watcher.job_status(job, watch=True)
        assert info.job == job
        result = watcher.wait_job(job, timeout_s=20, status_interval_s=60)  # events only, no status polling
        assert result["count"] == 30
        # the submitter stops receiving this job's events once another client watches it
        late = [m for m in submitter.poll(200) if isinstance(m, Event) and m.name == "job.done"]
        assert late == []


def test_wait_job_timeout_and_failure(session_server):
    with session_server.client() as client:
        job = client.submit("test.count", {"steps": 100, "step_s": 0.1})
        with pytest.raises(TimeoutError):
            client.wait_job(job, timeout_s=0.3)
        client.cancel(job)
        with pytest.raises(JobFailed) as info:
            client.wait_job(job, timeout_s=5)
        assert info.value.code == "cancelled"


def test_curve_arguments_must_come_in_pairs():
    with pytest.raises(ValueError):
        Client("tcp://127.0.0.1:1", server_public_key=b"x" * 40)

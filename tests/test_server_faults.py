"""Faults and hostile input against a real server on loopback (issue 17).

The worker survives ENOSPC (injected at the storage layer) in every stage of a job's
bookkeeping and I/O, and a bug in the bookkeeping itself; server.info reports health;
cameras and head parameters are bounded and typed; a crash right after an avatar is
published is recovered as done; and the small things: names, messages, uploads, the CLI.
The same faults on a real full disk are in test_server_disk_full.py."""

from __future__ import annotations

import errno
import subprocess
import sys
import time
import unicodedata

import msgpack
import numpy as np
import pytest
import zmq

from compute_server.jobs import manager as manager_module
from compute_server.storage import avatar_store
from shared.protocol import ErrorCode
from shared.records import JobState
from tests.server_harness import REPO_ROOT, inprocess_server, start_server


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def wait_state(client, job, states=("done", "failed", "cancelled"), timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.job_status(job)
        if info.state.value in states:
            return info
        time.sleep(0.05)
    raise AssertionError(f"{job} still {info.state.value} after {timeout_s} s")


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setattr(manager_module, "PERSIST_PROGRESS_EVERY_S", 0.0)  # every progress step is saved
    with inprocess_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def client(server):
    from shared.client import Client

    with Client(server.endpoint, timeout_s=10) as c:
        yield c


def records_on_disk(server):
    return {path.stem for path in server.data.jobs.glob("job_*.json")}


# ------------------------------------------------------------------------ the worker survives


STAGES = ["submit", "start", "progress", "job output", "result", "finish"]


@pytest.mark.parametrize("stage", STAGES)
def test_enospc_in_any_stage_of_a_job_never_stops_the_worker(server, client, monkeypatch, stage):
    """Reproduces issue 17.1 with the fault injected at the storage layer: before, a full
    disk while saving a record killed the worker thread for good."""
    records = server.ctx.jobs.records
    save, save_result = records.save, records.save_result
    state = {"on": True}

    def faulty_save(snapshot):
        wanted = {"submit": "queued", "start": "running", "finish": ("done", "failed")}.get(stage)
        hit = (snapshot["state"] == wanted or snapshot["state"] in (wanted or ())) if stage != "progress" else (
            snapshot["state"] == "running" and snapshot["stage"] == "writing")
        if state["on"] and hit:
            enospc()
        return save(snapshot)

    def faulty_result(job_id, result):
        if state["on"] and stage == "result":
            enospc()
        return save_result(job_id, result)

    monkeypatch.setattr(records, "save", faulty_save)
    monkeypatch.setattr(records, "save_result", faulty_result)
    if stage == "job output":
        monkeypatch.setattr(avatar_store, "write_synced", enospc)

    reply = client.request("test.avatar", {"name": "x", "points": 50})
    if stage == "submit":
        assert reply.error.code == "no_space" and "free space" in reply.error.message
        assert client.list_jobs() == [] and records_on_disk(server) == set()  # no ghost job
    else:
        info = wait_state(client, reply.result["job"])
        if stage in ("job output", "result"):  # the job's own files could not be written
            assert info.state == JobState.FAILED and info.error.code == "no_space", info
            assert not (server.data.jobs / info.job).exists()  # partial files removed
        else:  # only its record could not be saved: the job itself finished
            assert info.state == JobState.DONE, info
    health = client.info()["health"]
    assert health["worker_alive"] and health["last_error"]["code"] == "no_space"
    state["on"] = False  # space freed
    monkeypatch.setattr(avatar_store, "write_synced", avatar_store.__dict__["write_synced"])
    after = client.wait_job(client.submit("test.count", {"steps": 3, "step_s": 0.01}), timeout_s=20)
    assert after["count"] == 3
    deadline = time.monotonic() + 10  # the worker writes what it kept right after each job
    while (health := client.info()["health"])["unsaved_records"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["ok"] and health["unsaved_records"] == 0, health
    for job in client.list_jobs():  # every record on disk says what the server says
        on_disk = server.ctx.jobs.records.record_path(job.job).read_text()
        assert f'"state": "{job.state.value}"' in on_disk


def test_a_bug_in_the_bookkeeping_fails_the_job_not_the_worker(client, monkeypatch):
    def broken_summarize(value, depth=0):
        raise TypeError("summarize is broken")

    monkeypatch.setattr(manager_module, "summarize", broken_summarize)
    info = wait_state(client, client.submit("test.count", {"steps": 2, "step_s": 0.0}))
    assert info.state == JobState.FAILED and info.error.code == "internal"
    monkeypatch.undo()
    assert client.wait_job(client.submit("test.count", {"steps": 2, "step_s": 0.0}), timeout_s=20)["count"] == 2
    health = client.info()["health"]
    assert health["worker_alive"] and "TypeError" in health["last_error"]["message"]


def test_a_dead_worker_is_reported_and_submissions_are_refused(server, client):
    import threading

    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    live, server.ctx.jobs._worker = server.ctx.jobs._worker, dead
    try:
        health = client.info()["health"]
        assert health["ok"] is False and health["worker_alive"] is False
        assert any("worker" in p for p in health["problems"])
        assert client.request("test.count", {"steps": 1}).error.code == "unavailable"
    finally:
        server.ctx.jobs._worker = live


def test_a_submission_under_the_free_space_floor_is_refused_up_front(tmp_path):
    from dataclasses import replace

    from shared.client import Client
    from shared.protocol import Limits

    with inprocess_server(tmp_path, limits=replace(Limits(), min_free_bytes=2**62)) as srv:
        with Client(srv.endpoint, timeout_s=10) as c:
            error = c.request("test.avatar", {"points": 10}).error
            assert error.code == "no_space" and "reserve" in error.message and error.details["free_bytes"] > 0
            info = c.info()
            health = info["health"]
            assert health["ok"] is False and "disk is full" in health["problems"][0]
            assert c.list_jobs() == []
            from compute_server.cli.info import format_info

            assert "PROBLEM:          the server's disk is full" in format_info(info)  # headsplat info


# ------------------------------------------------------------------------ limits and types


def camera(**overrides) -> dict:
    base = {"world_to_camera": [1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0.6, 0, 0, 0, 1], "fx": 300.0, "fy": 300.0,
            "cx": 32.0, "cy": 32.0, "width": 64, "height": 64}
    return {**base, **overrides}


@pytest.fixture
def avatar(client):
    return client.wait_job(client.submit("test.avatar", {"name": "limits", "points": 10}), timeout_s=20)["avatar"]


@pytest.mark.parametrize("overrides, code, names", [
    ({"width": 40000, "height": 40000}, "too_large", "cameras[0]"),  # issue 17.2: was accepted (~19 GB)
    ({"width": 2**63 - 1}, "bad_request", "camera.width"),           # was internal (OverflowError)
    ({"width": float("inf")}, "bad_request", "camera.width"),        # was internal (OverflowError)
    ({"near": {}}, "bad_request", "camera.near"),                     # was internal (TypeError)
    ({"width": 9000, "height": 16}, "too_large", "8192"),
    ({"width": 64.5}, "bad_request", "camera.width"),
])
def test_explicit_cameras_are_bounded_and_typed(client, avatar, overrides, code, names):
    error = client.request("render.frames", {"avatar": avatar, "cameras": [camera(**overrides)]}).error
    assert error is not None and error.code == code and names in error.message, error


@pytest.mark.parametrize("jaw_pose, expected", [
    (["a", "b", "c"], "params.params.jaw_pose must hold numbers"),           # was internal
    ([[0.0, 0.0, 0.0], [0.0]], "params.params.jaw_pose must be a list of equally long rows"),  # was internal
    (np.zeros((0, 3), np.float32), "params.params.jaw_pose has no frames"),  # was accepted, failed in the job
    (np.zeros((200, 3), np.float32), "params.params.jaw_pose asks for 200 frames"),
])
def test_head_parameters_of_the_wrong_type_or_length_are_bad_requests(tmp_path, jaw_pose, expected):
    from dataclasses import replace

    from shared.client import Client
    from shared.protocol import Limits

    with inprocess_server(tmp_path, limits=replace(Limits(), max_render_frames=100)) as srv:
        with Client(srv.endpoint, timeout_s=10) as c:
            avatar_id = c.wait_job(c.submit("test.avatar", {"points": 10}), timeout_s=20)["avatar"]
            error = c.request("render.frames", {"avatar": avatar_id, "params": {"jaw_pose": jaw_pose},
                                                "cameras": [camera()]}).error
            assert error is not None and error.code in ("bad_request", "too_large") and expected in error.message


def test_render_size_is_bounded_by_the_image_limits(client, avatar):
    error = client.request("render.frames", {"avatar": avatar, "camera_preset": "turntable",
                                             "size": [8192, 8192]}).error
    assert error.code == "too_large" and "megapixels" in error.message


@pytest.mark.parametrize("name, shown", [
    ("clip." + "x" * 250, "clip"),              # issue 17.5: the job failed internal (name too long)
    ("cl\x00ip.mp4", "cl ip.mp4"),              # NUL: was internal
    ("../../etc/passwd.mp4", "passwd.mp4"),
])
def test_video_names_are_made_safe_and_errors_name_the_users_file(client, server, name, shown):
    job = client.submit("motion.track", {"video": {"name": name, "data": b"this is not a video" * 10}})
    info = wait_state(client, job, timeout_s=60)
    assert info.state == JobState.FAILED and info.error.code == "bad_file", info.error
    assert shown.replace(" ", "_") in info.error.message and "tmp" not in info.error.message
    assert not (server.data.jobs / job).exists()  # the failed upload is not kept on disk


def test_avatar_create_video_errors_name_the_users_file(client):
    job = client.submit("avatar.create", {"video": {"name": "my selfie.mov", "data": b"\x00not a video" * 20},
                                          "preset": "draft"})
    info = wait_state(client, job, timeout_s=120)
    assert info.state == JobState.FAILED and info.error.code == "bad_file", info.error
    assert "selfie.mov" in info.error.message and "tmp" not in info.error.message


def test_avatar_names_lose_control_characters(client):
    hostile = "Ann\x00e\u202e\u200b  Smith\n\x1b[31m"
    avatar_id = client.wait_job(client.submit("test.avatar", {"name": hostile, "points": 10}), timeout_s=20)["avatar"]
    name = next(a.name for a in client.list_avatars() if a.avatar == avatar_id)
    assert name == "Ann e Smith [31m"
    assert not any(unicodedata.category(c)[0] == "C" for c in name)


@pytest.mark.parametrize("header, expected", [
    ({"v": 1, "id": "big", "method": "debug.echo", "params": {f"k{i}": 0 for i in range(200_000)}},
     "too many entries"),
    ({"v": 1, "id": "int", "method": "debug.echo", "params": {1: 2}}, "key that is not a string"),
])
def test_header_errors_say_what_is_wrong(server, header, expected):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    try:
        sock.send(msgpack.packb(header, use_bin_type=True, strict_types=False))
        assert sock.poll(10_000)
        reply = msgpack.unpackb(sock.recv(), raw=False)
        assert reply["error"]["code"] == ErrorCode.BAD_REQUEST.value and expected in reply["error"]["message"]
    finally:
        sock.close()
        ctx.term()


@pytest.mark.parametrize("frames, expected", [("-5", "must be at least 1"), ("0", "must be at least 1"),
                                              ("two", "not a whole number")])
def test_cli_render_refuses_frame_counts_below_one(tmp_path, frames, expected):
    result = subprocess.run([sys.executable, "-m", "compute_server.cli.main", "render", "av_0000000000",
                             "--camera", "turntable", "--frames", frames, "--out", str(tmp_path / "out")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_cli_render_turntable_frame_count_is_sent_as_given():
    import argparse

    from compute_server.cli.render import request_params

    args = argparse.Namespace(avatar="av_0000000000", format="png", depth=False, motion=None, camera="turntable",
                              size=None, frames=None)
    assert request_params(args)["params"]["jaw_pose"].shape == (48, 3)
    args.frames = 1
    assert request_params(args)["params"]["jaw_pose"].shape == (1, 3)


# ------------------------------------------------------------------------ crash after publishing


def test_kill_9_after_the_avatar_is_published_recovers_the_job_as_done(tmp_path):
    """Issue 17.6: the job used to come back 'interrupted, submit it again' beside a
    complete avatar, and resubmitting made a duplicate."""
    data = tmp_path / "data"
    first = start_server(data)
    try:
        with first.client() as client:
            job = client.submit("test.avatar", {"name": "window", "points": 100, "hold_after_s": 120})
            deadline = time.monotonic() + 30
            while client.job_status(job).stage != "published":
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        first.kill()
    second = start_server(data)
    try:
        with second.client() as client:
            info = client.job_status(job)
            assert info.state == JobState.DONE and "recovered" in info.message, info
            result = client.call("job.result", {"job": job})["result"]
            avatars = [a for a in client.list_avatars() if a.name == "window"]
            assert len(avatars) == 1 and result["avatar"] == avatars[0].avatar and result["recovered"] is True
            assert avatars[0].metadata["job"] == job
    finally:
        second.terminate()


def test_memory_and_records_stay_json_for_nan_params(client):
    """A NaN in a request's params summary used to make the record unsavable (strict JSON)."""
    job = client.submit("test.count", {"steps": 1, "step_s": 0.0, "extra": float("nan")})
    assert client.wait_job(job, timeout_s=20)["count"] == 1


def test_server_info_health_lists_the_data_directory(client, server):
    health = client.info()["health"]
    assert health["data_dir"] == str(server.data.root) and health["total_bytes"] >= health["free_bytes"] > 0
    assert health["last_error"] is None and health["min_free_bytes"] == 256 * 2**20




def test_serve_says_when_it_cannot_write_its_endpoint_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "compute_server.cli.main", "serve", "--bind", "tcp://127.0.0.1:*",
                             "--data", str(tmp_path / "data"), "--device", "cpu",
                             "--endpoint-file", str(tmp_path / "missing" / "endpoint")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cannot write the endpoint file" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_an_avatar_whose_expression_colour_does_not_fit_its_head_fails_to_render_clearly(client, server):
    """An avatar on disk whose splats.npz carries an expression colour of the wrong code
    length (damaged, or made for another head model): render.frames fails with bad_file
    naming the avatar and the problem, and the server stays up."""
    from compute_server.head.model import load_head_model
    from compute_server.pipeline.avatar_files import rig_arrays
    from compute_server.storage.avatar_store import AvatarStore
    from shared.splat_format import EXPRESSION_COLOUR_FIELD, EXPRESSION_COLOUR_FILE, LocalSplats

    head = load_head_model()
    n = head.n_faces
    splats = LocalSplats(np.zeros((n, 3)), np.full((n, 3), -4.0), np.tile([1.0, 0, 0, 0], (n, 1)), np.zeros(n),
                         np.zeros((n, 3)), np.zeros((n, 3, 3)), np.arange(n))
    with AvatarStore(server.data.avatars).begin() as writer:
        writer.write("splats.npz", splats.arrays())
        writer.write(EXPRESSION_COLOUR_FILE, {EXPRESSION_COLOUR_FIELD: np.zeros((n, 5, 3), np.float32)})
        writer.write("rig.npz", rig_arrays(head, np.zeros(head.n_shape, np.float32)))
        writer.commit({"name": "damaged", "head_model": {"name": "builtin"}})
    avatar = writer.avatar_id
    job = client.submit("render.frames", {"avatar": avatar, "cameras": [camera()]})
    info = wait_state(client, job, timeout_s=60)
    assert info.state == JobState.FAILED and info.error.code == "bad_file", info.error
    assert avatar in info.error.message and "expression colour" in info.error.message
    assert client.info()["protocol"] == 1

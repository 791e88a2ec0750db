"""Every method and error code over a real loopback socket (the session server)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from shared.client import JobFailed, ServerError
from shared.records import JobState
from tests.conftest import SESSION_MAX_MESSAGE_BYTES


@pytest.fixture
def client(session_server):
    with session_server.client(timeout_s=10.0) as c:
        yield c


def error_of(client, method, params=None) -> ServerError:
    with pytest.raises(ServerError) as info:
        client.call(method, params)
    assert " " in info.value.message  # a sentence, not a bare code
    return info.value


def png_bytes(width, height) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 90)).save(buf, format="PNG")
    return buf.getvalue()


def test_server_info_reports_identity_device_models_and_limits(client):
    info = client.info()
    assert info["name"] == "HeadSplat compute server" and info["protocol"] == 1
    assert info["version"] and info["device"].startswith("cpu")
    builtin = [m for m in info["head_models"] if m["name"] == "builtin"]
    assert builtin and builtin[0]["default"] is True and builtin[0]["n_expr"] > 0
    assert info["diffusion_models"] == []
    assert info["limits"] == {"max_message_bytes": SESSION_MAX_MESSAGE_BYTES, "max_image_pixels": 1_000_000,
                              "max_render_frames": 100, "max_queued_jobs": 3, "max_image_side": 8192,
                              "max_video_frames": 10_000, "min_free_bytes": 256 * 2**20}
    health = info["health"]
    assert health["ok"] is True and health["problems"] == [] and health["writable"] is True
    assert health["worker_alive"] is True and health["free_bytes"] > 0 and health["unsaved_records"] == 0
    assert {"server.info", "job.status", "job.list", "job.cancel", "job.result", "avatar.list", "avatar.get",
            "avatar.delete"} <= set(info["methods"])
    assert info["queue"]["queued"] >= 0 and info["uptime_s"] >= 0 and info["secure"] is False


def test_a_failing_handler_answers_internal_and_the_server_keeps_serving(client, session_server):
    err = error_of(client, "debug.fail")
    assert err.code == "internal" and "RuntimeError" in err.message and "server log" in err.message
    assert client.info()["protocol"] == 1
    assert "debug.fail was called" in session_server.log()  # the traceback went to the log


def test_unknown_method(client):
    err = error_of(client, "avatar.explode")
    assert err.code == "unknown_method" and "avatar.explode" in err.message


def test_a_placeholder_method_answers_unavailable():
    from compute_server.server.registry import Call, MethodRegistry
    from compute_server.errors import UserError

    registry = MethodRegistry()
    registry.add_placeholder("render.frames")
    ctx = type("Ctx", (), {"version": "9.9"})()
    with pytest.raises(UserError) as info:
        registry.get("render.frames")(ctx, Call("render.frames", {}, b"c", "1"))
    assert info.value.code == "unavailable" and "not implemented" in info.value.message
    assert "render.frames" not in registry.implemented()


@pytest.mark.parametrize("method", ["avatar.create", "motion.track", "render.frames"])
def test_pipeline_methods_refuse_malformed_params_before_queueing(client, method):
    err = error_of(client, method, {"image": b"x"})
    assert err.code == "bad_request" and "params." in err.message


def test_job_lifecycle_methods(client):
    job = client.submit("test.count", {"steps": 3, "step_s": 0.01})
    result = client.wait_job(job, timeout_s=20)
    np.testing.assert_array_equal(result["squares"], [0, 1, 4])
    info = client.job_status(job)
    assert info.state == JobState.DONE and info.kind == "test.count" and info.params == {"steps": 3, "step_s": 0.01}
    assert info.result == {"count": 3, "squares": "array <i8 [3]"}
    assert job in [j.job for j in client.list_jobs()]
    assert job in [j.job for j in client.list_jobs(states=["done"], limit=1000)]
    assert job not in [j.job for j in client.list_jobs(states=["failed"], limit=1000)]
    np.testing.assert_array_equal(client.job_result(job)["squares"], [0, 1, 4])
    assert client.cancel(job).state == JobState.DONE  # nothing to cancel


def test_job_methods_check_their_params(client):
    assert error_of(client, "job.status", {"job": "job_00000000zzzz"}).code == "not_found"
    assert error_of(client, "job.result", {"job": "job_00000000zzzz"}).code == "not_found"
    assert error_of(client, "job.cancel", {"job": "job_00000000zzzz"}).code == "not_found"
    err = error_of(client, "job.status", {})
    assert err.code == "bad_request" and "params.job is missing" in err.message
    err = error_of(client, "job.status", {"job": 12})
    assert err.code == "bad_request" and "params.job must be a string" in err.message
    assert error_of(client, "job.status", {"job": "../jobs/x"}).code == "bad_request"
    assert error_of(client, "job.list", {"states": ["sleeping"]}).code == "bad_request"
    assert error_of(client, "job.list", {"limit": 0}).code == "bad_request"
    assert error_of(client, "job.list", {"limit": "ten"}).code == "bad_request"
    assert error_of(client, "test.count", {"steps": "many"}).code == "bad_request"


def test_failed_and_cancelled_jobs_report_their_codes(client):
    failing = client.submit("test.count", {"steps": 5, "step_s": 0.0, "fail_at": 1, "fail_code": "bad_file"})
    with pytest.raises(JobFailed) as info:
        client.wait_job(failing, timeout_s=20)
    assert info.value.code == "bad_file" and info.value.job == failing
    assert error_of(client, "job.result", {"job": failing}).code == "bad_file"
    crashing = client.submit("test.count", {"steps": 5, "step_s": 0.0, "crash_at": 0})
    with pytest.raises(JobFailed) as info:
        client.wait_job(crashing, timeout_s=20)
    assert info.value.code == "internal" and "server log" in info.value.message
    slow = client.submit("test.count", {"steps": 100, "step_s": 0.2})
    assert error_of(client, "job.result", {"job": slow}).code == "not_ready"
    client.cancel(slow)
    with pytest.raises(JobFailed) as info:
        client.wait_job(slow, timeout_s=5)
    assert info.value.code == "cancelled"
    assert error_of(client, "job.result", {"job": slow}).code == "cancelled"


def test_a_job_that_runs_the_gpu_out_of_memory_fails_with_advice_and_the_server_goes_on(client):
    """Real GPUs cannot run here: test.count raises the error torch raises when CUDA runs
    out of memory; the pipeline plugin's classifier must turn it into out_of_memory."""
    job = client.submit("test.count", {"steps": 5, "step_s": 0.0, "oom_at": 1})
    with pytest.raises(JobFailed) as info:
        client.wait_job(job, timeout_s=20)
    assert info.value.code == "out_of_memory"
    assert "ran out of memory" in info.value.message and "smaller preset" in info.value.message
    assert client.wait_job(client.submit("test.count", {"steps": 2, "step_s": 0.0}), timeout_s=20) is not None


def test_queue_limit_answers_busy(client):
    jobs = [client.submit("test.count", {"steps": 100, "step_s": 0.2})]  # runs; the next three wait
    try:
        for _ in range(100):
            if client.job_status(jobs[0]).state == JobState.RUNNING:
                break
            time.sleep(0.05)
        jobs += [client.submit("test.count", {"steps": 1}) for _ in range(3)]
        err = error_of(client, "test.count", {"steps": 1})
        assert err.code == "busy" and "limit is 3" in err.message
    finally:
        for job in jobs:
            client.cancel(job)
    for job in jobs:
        with pytest.raises(JobFailed):
            client.wait_job(job, timeout_s=5)


def test_limits_on_images_and_frames(client):
    ok = client.wait_job(client.submit("test.image", {"image": png_bytes(100, 80)}), timeout_s=20)
    assert ok == {"width": 100, "height": 80, "format": "png"}
    err = error_of(client, "test.image", {"image": png_bytes(1100, 1000)})
    assert err.code == "too_large" and "1100x1000" in err.message
    assert error_of(client, "test.image", {"image": b"definitely not an image"}).code == "bad_image"
    assert error_of(client, "test.image", {"image": "a string"}).code == "bad_request"
    err = error_of(client, "test.count", {"steps": 101})
    assert err.code == "too_large" and "at most 100" in err.message


def test_messages_over_the_size_limit_get_too_large_and_the_server_stays_up(client):
    payload = np.zeros(SESSION_MAX_MESSAGE_BYTES // 4 + 1024, dtype=np.float32)
    err = error_of(client, "debug.echo", {"a": payload})
    assert err.code == "too_large" and "MiB" in err.message
    assert client.info()["protocol"] == 1


def test_avatar_methods(client):
    avatar = client.wait_job(client.submit("test.avatar", {"name": "Ada", "points": 500}), timeout_s=20)["avatar"]
    listed = {a.avatar: a for a in client.list_avatars()}
    assert listed[avatar].name == "Ada" and listed[avatar].size_bytes > 500 * 59 * 4
    got = client.get_avatar(avatar)
    assert got["avatar"] == avatar and got["metadata"]["name"] == "Ada"
    assert got["arrays"]["splats"].shape == (500, 59) and got["arrays"]["splats"][1, 0] == 59.0
    assert got["arrays"]["head"]["binding"].dtype == np.uint32
    assert bytes(got["files"]["note.txt"]) == b"test avatar Ada"
    only = client.get_avatar(avatar, include=["note.txt"])
    assert only["arrays"] == {} and list(only["files"]) == ["note.txt"]
    assert error_of(client, "avatar.get", {"avatar": avatar, "include": ["nope.npy"]}).code == "not_found"
    client.delete_avatar(avatar)
    assert avatar not in {a.avatar for a in client.list_avatars()}
    assert error_of(client, "avatar.get", {"avatar": avatar}).code == "not_found"
    assert error_of(client, "avatar.delete", {"avatar": avatar}).code == "not_found"


def test_an_avatar_in_use_cannot_be_deleted(client):
    avatar = client.wait_job(client.submit("test.avatar", {"points": 10}), timeout_s=20)["avatar"]
    holder = client.submit("test.avatar", {"points": 10, "hold_s": 60, "uses": avatar})
    try:
        err = error_of(client, "avatar.delete", {"avatar": avatar})
        assert err.code == "conflict" and "cancel that job" in err.message
    finally:
        client.cancel(holder)
    with pytest.raises(JobFailed):
        client.wait_job(holder, timeout_s=5)
    client.delete_avatar(avatar)


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "/etc/passwd", "av_abcdefgh/../../x", "av_abc\x00defgh",
                                    "av_ÄÖÜabcdefgh", "av_abcdefgh\n", "..", "", 7, None, {"$x": 1}])
def test_avatar_ids_that_could_escape_the_data_directory_are_refused(client, bad_id):
    for method in ("avatar.get", "avatar.delete"):
        with pytest.raises(ServerError) as info:
            client.call(method, {"avatar": bad_id} if not isinstance(bad_id, dict) else {"avatar": {"x": 1}})
        assert info.value.code == "bad_request"
    assert client.info()["protocol"] == 1


def test_a_named_plugin_that_cannot_be_loaded_stops_the_server_with_its_name(tmp_path):
    """``--plugin MODULE`` is how the tests add their job kinds; a typo must say so, not be skipped."""
    from compute_server.errors import UserError
    from compute_server.server.app import Server
    from compute_server.server.config import ServerConfig

    config = ServerConfig(bind="tcp://127.0.0.1:*", data_dir=tmp_path / "data", device="cpu",
                          plugins=("tests.no_such_plugin",))
    with pytest.raises(UserError, match="tests.no_such_plugin"):
        Server(config)
    with pytest.raises(UserError, match="no register"):
        Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=tmp_path / "data", device="cpu",
                            plugins=("tests.shared_data",)))
    server = Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=tmp_path / "data", device="cpu"))
    server.start_background()
    try:   # the data directory was released each time, and no test kind leaks into a plain server
        assert "test.count" not in server.ctx.registry.job_kinds
        assert "avatar.create" in server.ctx.registry.job_kinds
    finally:
        server.stop()
        server.join(30.0)

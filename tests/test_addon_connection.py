"""The add-on's connection in real headless Blender against real servers on loopback:
connecting, clear reports when the server is down, refuses the key or dies mid-job,
non-blocking operators finished by the timer, reattaching after reopening a .blend,
cancel, and the local server the add-on starts and stops."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import zmq
import zmq.auth

from shared.protocol import decode_request, encode_result

from tests import blender_helpers as bh
from tests.server_harness import free_tcp_port, running_server, start_server

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender


@pytest.fixture
def scene():
    bh.installed_addon()
    return bh.new_scene()


def _connection():
    return bh.addon_module("connection")


def _jobs():
    return bh.addon_module("jobs")


def _entry(scene):
    return scene.headsplat.jobs[-1]


def test_connect_reports_the_server(scene):
    server = bh.shared_server()
    bh.connect(server.endpoint)
    state = _connection().state()
    assert state.status == "CONNECTED"
    assert state.info["name"] == "HeadSplat compute server" and "avatar.get" in state.info["methods"]
    assert "cpu" in state.message


def test_server_down_is_a_clear_report_and_blender_keeps_working(scene):
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    bh.configure(endpoint, request_timeout_s=1.0)
    with pytest.raises(RuntimeError, match="no reply from .* within 1 s: is the server running"):
        bpy.ops.headsplat.connect(wait="WAIT")
    assert _connection().state().status == "ERROR"
    with pytest.raises(RuntimeError, match="not connected to a HeadSplat server"):
        bpy.ops.headsplat.import_avatar(avatar_id="av_00000000aaaa", wait="WAIT")
    bpy.ops.mesh.primitive_cube_add()  # Blender still works
    assert bpy.context.active_object.name.startswith("Cube")
    bh.connect(bh.shared_server().endpoint)  # and the add-on recovers
    assert _connection().state().status == "CONNECTED"


def test_wrong_curve_key_times_out_with_a_key_hint(scene, tmp_path):
    server_public, _ = zmq.auth.create_certificates(tmp_path, "server")
    authorized = tmp_path / "authorized_clients"
    authorized.mkdir()
    zmq.auth.create_certificates(authorized, "good_client")
    _, rogue_secret = zmq.auth.create_certificates(tmp_path, "rogue_client")
    with running_server(tmp_path, extra_args=("--curve-secret", str(tmp_path / "server.key_secret"),
                                              "--curve-clients", str(authorized))) as server:
        bh.configure(server.endpoint, request_timeout_s=1.5, server_key=server_public, client_key=rogue_secret)
        with pytest.raises(RuntimeError, match="refused this computer's CURVE key"):
            bpy.ops.headsplat.connect(wait="WAIT")
        bh.configure(server.endpoint, request_timeout_s=5.0, server_key=server_public,
                     client_key=str(tmp_path / "authorized_clients" / "good_client.key_secret"))
        bpy.ops.headsplat.connect(wait="WAIT")
        assert _connection().state().info["secure"] is True


def _old_server(endpoint: str, stop: threading.Event) -> None:
    """A server that speaks protocol 1 but is too old for the add-on (a tiny real ROUTER)."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind(endpoint)
    try:
        while not stop.is_set():
            if sock.poll(50):
                routing_id, *frames = sock.recv_multipart()
                request = decode_request(frames)
                info = {"name": "HeadSplat compute server", "version": "0.0.3", "protocol": 1,
                        "methods": ["server.info", "job.status"], "device": "cpu"}
                sock.send_multipart([routing_id, *encode_result(request.id, info)])
    finally:
        sock.close(0)


def test_too_old_server_is_refused_with_a_sentence(scene):
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    stop = threading.Event()
    thread = threading.Thread(target=_old_server, args=(endpoint, stop), daemon=True)
    thread.start()
    try:
        bh.configure(endpoint, request_timeout_s=5.0)
        with pytest.raises(RuntimeError, match="version 0.0.3 is too old for this add-on"):
            bpy.ops.headsplat.connect(wait="WAIT")
        assert _connection().state().status == "ERROR"
    finally:
        stop.set()
        thread.join(5)


def test_operators_return_at_once_and_the_timer_finishes_the_work(scene):
    """Interactive mode: no operator waits on the network; the timer completes the work."""
    server = bh.shared_server()
    avatar_id = bh.write_avatar(server.data_dir, bh.synthetic_rig(), n_splats=300, name="Timer")
    bh.connect(server.endpoint)
    connection = _connection()
    with bh.interactive_mode() as waits:
        assert bpy.ops.headsplat.import_avatar(avatar_id=avatar_id) == {"FINISHED"}  # wait='AUTO'
        assert connection.get_session().busy  # the reply has not been handled yet...
        assert not any(o.get("headsplat_avatar_id") == avatar_id for o in scene.objects)  # ...nor imported
        assert bpy.app.timers.is_registered(connection.tick_function())
        ticks = bh.tick_until(lambda: any(o.get("headsplat_avatar_id") == avatar_id for o in scene.objects))
        assert ticks >= 1

        ticket = _jobs().start_job(scene, "test.count", {"steps": 20, "step_s": 0.05}, label="Count")
        assert _entry(scene).state == "submitting" and not ticket.finished
        bh.tick_until(lambda: _entry(scene).state == "running")
        assert 0 <= _entry(scene).fraction < 1 and _entry(scene).stage in ("starting", "counting")
        bh.tick_until(lambda: ticket.finished)
        assert ticket.failure is None and _entry(scene).state == "done" and _entry(scene).fraction == 1.0
    assert waits  # the timer polled (never waiting: checked by interactive_mode)


def test_job_reattaches_after_the_blend_is_reopened(scene, tmp_path):
    server = bh.shared_server()
    bh.connect(server.endpoint)
    connection = _connection()
    _jobs().start_job(scene, "test.count", {"steps": 30, "step_s": 0.05}, label="Long count")
    bh.tick_until(lambda: bool(_entry(scene).job_id))
    job_id = _entry(scene).job_id
    path = tmp_path / "with_job.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    connection.close_session()  # Blender closed: nobody follows the job any more
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    scene = bpy.context.scene
    assert _entry(scene).job_id == job_id and not _entry(scene).finished
    # No reattach call: the jobs module's on-connected hook (connection.add_connected_hook)
    # follows the file's unfinished jobs as soon as the connection is up.
    bh.connect(server.endpoint)
    bh.tick_until(lambda: _entry(scene).state == "done")
    assert _entry(scene).state == "done", _entry(scene).message


def test_cancel_job(scene):
    bh.connect(bh.shared_server().endpoint)
    _jobs().start_job(scene, "test.count", {"steps": 200, "step_s": 0.05}, label="Endless count")
    bh.tick_until(lambda: _entry(scene).state == "running")
    bpy.ops.headsplat.cancel_job(wait="WAIT")
    assert _entry(scene).state == "cancelled"
    assert "cancelled" in scene.headsplat.status


def test_server_killed_mid_job_is_reported_and_recovered(scene, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    server = start_server(tmp_path / "data", bind=endpoint)
    try:
        bh.connect(endpoint, request_timeout_s=1.0, lost_contact_s=3.0)
        _jobs().start_job(scene, "test.count", {"steps": 400, "step_s": 0.05}, label="Doomed count")
        bh.tick_until(lambda: _entry(scene).state == "running")
        server.kill()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="lost contact with the server"):
            bpy.ops.headsplat.reattach_jobs(wait="WAIT")
        assert time.monotonic() - started < 30
        assert _entry(scene).state == "lost"
        bpy.ops.mesh.primitive_cube_add()  # Blender keeps working
        assert bpy.context.active_object.type == "MESH"
        # the server comes back on the same data: the job is reported as interrupted
        server = start_server(tmp_path / "data", bind=endpoint)
        bh.connect(endpoint, request_timeout_s=5.0)
        with pytest.raises(RuntimeError, match="restarted while this job was running"):
            bpy.ops.headsplat.reattach_jobs(wait="WAIT")
        assert _entry(scene).state == "failed"
    finally:
        server.kill()


def test_local_server_is_started_and_stopped(scene, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    bh.configure(endpoint, request_timeout_s=60.0)
    prefs = bh.addon_prefs()
    prefs.start_local_server = True
    prefs.local_server_command = f'"{sys.executable}" -m compute_server.cli.main serve --bind {{endpoint}} ' \
                                 f'--data "{tmp_path / "local-data"}" --device cpu'
    connection = _connection()
    try:
        bpy.ops.headsplat.connect(wait="WAIT")
        assert connection.state().status == "CONNECTED"
        assert connection.local_server().running
        assert "Local server running" in connection.local_server_status_line()
        bpy.ops.headsplat.stop_local_server()
        assert not connection.local_server().running
        assert "exited with code 0" in connection.local_server_status_line()
    finally:
        prefs.start_local_server = False
        connection.local_server().stop_and_wait()


def test_connecting_to_a_server_whose_disk_is_full_says_so(scene, tmp_path):
    with running_server(tmp_path, extra_args=("--min-free-mb", str(2**40))) as server:
        bh.configure(server.endpoint, request_timeout_s=5.0)
        bpy.ops.headsplat.connect(wait="WAIT")
        state = _connection().state()
        assert state.status == "CONNECTED" and "the server's disk is full" in state.message, state.message

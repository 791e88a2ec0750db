"""The add-on's pure modules, without Blender: the non-blocking Session against a real
server, shot planning, avatar checking, splat attributes, the local-server command and
the packaging rules."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from blender_addon import local_server, shot
from blender_addon.scene_import import avatar_data, splat_layout
from blender_addon.session import Failure, JobHandlers, Session
from build_addon import WheelName, check_manifest, manifest_text, wheel_runs_on
from shared.camera import orbit_camera
from shared.client import Client
from shared.splat_format import LocalSplats, pose_splats
from tests import blender_helpers as bh
from tests.server_harness import free_tcp_port

# ----------------------------------------------------------------------------- Session


class Recorder:
    def __init__(self):
        self.progress, self.done, self.failed, self.states = [], [], [], []

    def handlers(self) -> JobHandlers:
        return JobHandlers(on_progress=self.progress.append, on_done=self.done.append, on_failed=self.failed.append,
                           on_state=self.states.append)


def pump_until(session: Session, predicate, timeout_s: float = 20.0) -> None:
    assert session.wait_until(predicate, timeout_s, poll_ms=20), "timed out"


@pytest.fixture
def session(inproc_server):
    s = Session(Client(inproc_server.endpoint), request_timeout_s=5.0, status_interval_s=0.2)
    yield s
    s.close()


def test_session_requests_resolve_through_callbacks(session):
    results, failures = [], []
    session.request("server.info", on_result=results.append)
    session.request("job.status", {"job": "job_0000000000zz"}, on_error=failures.append)
    assert session.busy and not results  # nothing happens before a pump
    pump_until(session, lambda: results and failures)
    assert results[0]["protocol"] == 1
    assert failures[0].code == "not_found" and "job_0000000000zz" in failures[0].message
    assert not session.busy


def test_session_follows_a_job_to_its_result(session):
    rec = Recorder()
    queued = []
    session.submit("test.count", {"steps": 5, "step_s": 0.02}, rec.handlers(), on_queued=queued.append)
    pump_until(session, lambda: rec.done or rec.failed)
    assert queued and queued[0].startswith("job_")
    assert rec.done[0]["count"] == 5 and list(rec.done[0]["squares"]) == [0, 1, 4, 9, 16]
    assert [p["fraction"] for p in rec.progress][-1] == pytest.approx(1.0)


def test_session_reports_job_errors_with_the_server_code(session):
    rec = Recorder()
    session.submit("test.count", {"steps": 5, "fail_at": 2, "fail_code": "no_face"}, rec.handlers())
    pump_until(session, lambda: rec.failed)
    assert rec.failed[0].code == "no_face" and "step 2" in rec.failed[0].message
    refused = Recorder()
    session.submit("test.count", {"steps": 0}, refused.handlers())  # refused before queueing
    pump_until(session, lambda: refused.failed)
    assert refused.failed[0].code == "bad_request"


def test_a_second_session_reattaches_and_gets_the_result(inproc_server, session):
    job_id = Client(inproc_server.endpoint).submit("test.count", {"steps": 10, "step_s": 0.05})
    rec = Recorder()
    session.watch(job_id, rec.handlers())  # events went to another client; status polling finds the end
    pump_until(session, lambda: rec.done)
    assert rec.done[0]["count"] == 10


def test_a_silent_server_times_requests_out_and_loses_jobs():
    session = Session(Client(f"tcp://127.0.0.1:{free_tcp_port()}"), request_timeout_s=0.3, lost_contact_s=0.8,
                      status_interval_s=0.1)
    try:
        failures, rec = [], Recorder()
        session.request("server.info", on_error=failures.append)
        session.watch("job_0000000000ab", rec.handlers())
        started = time.monotonic()
        pump_until(session, lambda: failures and rec.failed, timeout_s=10)
        assert failures[0].code == "timeout"
        assert rec.failed[0].code == "lost" and "reconnect and press Reattach" in rec.failed[0].message
        assert time.monotonic() - started >= 0.8
    finally:
        session.close()


def test_a_failing_callback_ends_its_job_not_the_pump(session):
    failures = []

    def broken_done(result):
        raise KeyError("no such field")

    session.submit("test.count", {"steps": 2, "step_s": 0.01},
                   JobHandlers(on_done=broken_done, on_failed=failures.append))
    ok = []
    session.request("server.info", on_result=ok.append)
    pump_until(session, lambda: failures and ok)
    assert failures[0].code == "internal" and "no such field" in failures[0].message
    assert "KeyError" in session.stats.callback_errors[0]


def test_session_cancel(session):
    rec = Recorder()
    ids = []
    session.submit("test.count", {"steps": 500, "step_s": 0.02}, rec.handlers(), on_queued=ids.append)
    pump_until(session, lambda: rec.progress)
    session.cancel(ids[0])
    pump_until(session, lambda: rec.failed)
    assert rec.failed[0] == Failure("cancelled", f"job {ids[0]} was cancelled")


# ----------------------------------------------------------------------------- shot planning


def test_render_request_sends_one_camera_when_it_does_not_move():
    cam = orbit_camera(0, 0, 0.6, width=64, height=48)
    params = {"expr": np.zeros((3, 4)), "jaw_pose": np.zeros((3, 3))}
    request = shot.render_request("av_00000000abcd", shot.ShotSamples(np.array([7, 8, 9]), params, [cam] * 3),
                                  fmt="EXR", depth=True)
    assert request["first_frame"] == 7 and request["format"] == "exr" and request["depth"] is True
    assert len(request["cameras"]) == 1 and request["params"]["expr"].dtype == np.float32
    moving = [orbit_camera(a, 0, 0.6, width=64, height=48) for a in (0, 5, 10)]
    request = shot.render_request("av_00000000abcd", shot.ShotSamples(np.array([1, 2, 3]), params, moving))
    assert len(request["cameras"]) == 3 and request["format"] == "png" and "depth" not in request


def test_shot_output_paths_and_result_ranges(tmp_path):
    assert shot.output_dir(str(tmp_path) + "/", "Ana: v2", "/fallback") == str(tmp_path / "headsplat" / "Ana_ v2")
    assert shot.output_dir(str(tmp_path / "shot_"), "Ana", "/x") == str(tmp_path / "headsplat" / "Ana")
    assert shot.output_dir("//renders/", "Ana", str(tmp_path)) == str(tmp_path / "headsplat" / "Ana")
    assert shot.frame_file_name(12, "png") == "frame_0012.png"
    assert shot.result_ranges([0, 1, 2, 5, 6, 9], chunk=2) == [(0, 2), (2, 3), (5, 7), (9, 10)]
    assert shot.check_frame_count(120, {"max_render_frames": 100}).startswith("the shot has 120 frames")
    assert shot.check_frame_count(100, {"max_render_frames": 100}) is None
    depth = shot.depth_to_blender_units(np.array([[0.0, 1.0]]), 0.5)
    assert depth[0, 0] == 1e10 and depth[0, 1] == 2.0


# ----------------------------------------------------------------------------- avatar data


def _reply(rig: dict, n: int = 50) -> dict:
    keys = ("rest_vertices", "faces", "expression_deltas", "joint_rest", "joint_parents", "skin_weights", "face_region")
    return {"avatar": "av_00000000abcd", "metadata": bh.avatar_metadata(rig, n, "Ana", 1),
            "arrays": {"rig": {k: rig[k] for k in keys}, "splats": bh.random_splats(rig, n)}}


def test_avatar_reply_is_checked_with_sentences():
    rig = bh.synthetic_rig(6, 8)
    data = avatar_data.avatar_from_reply(_reply(rig))
    assert data.name == "Ana" and data.rig.expression_names == rig["expression_names"]
    assert data.portrait_camera is not None and data.splats.count == 50
    bad = _reply(rig)
    bad["arrays"]["rig"]["skin_weights"] = rig["skin_weights"][:, :4]
    with pytest.raises(avatar_data.AvatarDataError, match=r"skin_weights must be \(\d+, 5\)"):
        avatar_data.avatar_from_reply(bad)
    bad = _reply(rig)
    bad["arrays"]["splats"]["binding"][0] = 10**6
    with pytest.raises(avatar_data.AvatarDataError, match="outside"):
        avatar_data.avatar_from_reply(bad)
    bad = _reply(rig)
    del bad["arrays"]["rig"]
    with pytest.raises(avatar_data.AvatarDataError, match="has no rig.npz"):
        avatar_data.avatar_from_reply(bad)
    unnamed = _reply(rig)
    unnamed["metadata"]["head_model"]["expression_names"] = ["a"]
    assert avatar_data.avatar_from_reply(unnamed).rig.expression_names[:2] == ["expr_000", "expr_001"]


def test_splat_points_hold_ply_fields_and_binding():
    rig = bh.synthetic_rig(6, 8)
    local = LocalSplats.from_arrays(bh.random_splats(rig, 200, sh_degree=2))
    points = splat_layout.splat_points(local, rig["rest_vertices"], rig["faces"])
    world = pose_splats(local, rig["rest_vertices"], rig["faces"])
    h = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)
    np.testing.assert_allclose(points.positions, world.means @ h.T, atol=1e-6)
    assert points.attributes["f_rest_23"][0] == "FLOAT" and "f_rest_24" not in points.attributes
    corners = np.stack([points.attributes[n][1] for n in ("hs_v0", "hs_v1", "hs_v2")], 1)
    np.testing.assert_array_equal(corners, rig["faces"][local.binding])
    np.testing.assert_allclose(points.attributes["scale_0"][1], np.log(world.scales[:, 0]), atol=1e-5)
    rank = points.attributes["hs_lod"][1]
    assert sorted(np.round(rank * 200).astype(int).tolist()) == list(range(200))


def test_sh_coefficients_survive_the_two_per_float_packing():
    """The true splats' material gets the 45 higher SH coefficients in 7 RGBA instance
    attributes (EEVEE's limit is 8 per material): unpacked, each is within the 12-bit
    step of the splat's largest coefficient, and every packed value is an exact float32."""
    rng = np.random.default_rng(3)
    for bases in (0, 3, 8, 15):
        sh_rest = rng.normal(0.0, 0.4, size=(300, bases, 3))
        sh_rest[0] = 0.0  # a splat without view-dependent colour
        packs = splat_layout.pack_sh(sh_rest)
        assert packs.shape == (300, 7, 4) and packs.dtype == np.float32
        packed = packs.astype(np.float64)
        assert np.all(packed[:, :, :3] < 2 ** 24) and np.all(packed[:, :, :3] == np.rint(packed[:, :, :3]))
        full = np.zeros((300, 15, 3))
        full[:, :bases] = sh_rest
        largest = np.abs(full).reshape(300, -1).max(axis=1)
        error = np.abs(splat_layout.unpack_sh(packs) - full).reshape(300, -1).max(axis=1)
        assert np.all(error <= largest / (splat_layout.SH_LEVELS - 1) + 1e-9)
        assert np.all(splat_layout.unpack_sh(packs)[0] == 0.0)
    with pytest.raises(ValueError, match="at most 15"):
        splat_layout.pack_sh(np.zeros((2, 24, 3)))


def test_local_transforms_are_rotation_times_scale_and_the_mean():
    rng = np.random.default_rng(4)
    quats = rng.normal(size=(50, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    log_scales, means = rng.normal(-3, 1, size=(50, 3)), rng.normal(size=(50, 3))
    transforms = splat_layout.local_transforms(quats, log_scales, means).astype(np.float64)
    from shared.rotations import quat_to_matrix
    np.testing.assert_allclose(transforms[:, :3, :3], quat_to_matrix(quats) * np.exp(log_scales)[:, None, :],
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(transforms[:, :3, 3], means, rtol=1e-6)
    # Blender's FLOAT4X4 attributes are column-major: value 4 c + r is row r of column c
    flat = splat_layout.matrix_attribute_values(transforms.astype(np.float32))
    np.testing.assert_array_equal(flat[:, 12:15], transforms[:, :3, 3].astype(np.float32))
    np.testing.assert_allclose(splat_layout.inverse_variances(log_scales), np.exp(-2 * log_scales), rtol=1e-5)


def test_preview_radius_is_the_alpha_iso_contour_of_the_disc():
    scales = np.array([[0.01, 0.01, 1e-5], [0.01, 0.01, 1e-5], [0.02, 0.005, 0.01]])
    radius = splat_layout.preview_radius(scales, np.array([1.0, 0.2, 1.0]))
    cutoff = splat_layout.PREVIEW_ALPHA_CUTOFF
    assert radius[0] == pytest.approx(0.01 * np.sqrt(2 * np.log(1 / cutoff)), rel=1e-5)  # flat disc: not a dot
    assert radius[1] == 0.0  # fainter than the cutoff everywhere
    assert radius[2] == pytest.approx(np.sqrt(0.02 * 0.01) * np.sqrt(2 * np.log(1 / cutoff)), rel=1e-5)


def test_lod_rank_keeps_the_biggest_most_opaque_splats_first():
    rng = np.random.default_rng(0)
    opac = rng.uniform(0.01, 1.0, 5000)
    scales = np.exp(rng.normal(-5, 1, size=(5000, 3)))
    rank = splat_layout.lod_rank(opac, scales, seed=1)
    weight = opac * np.exp(2 * np.log(scales).mean(1))
    kept = rank < 0.2
    assert weight[kept].mean() > 2 * weight[~kept].mean()
    assert splat_layout.default_density(50_000, 100_000) == 1.0
    assert splat_layout.default_density(400_000, 100_000) == 0.25


# ----------------------------------------------------------------------------- local server


def test_local_server_command_and_process(tmp_path):
    args = local_server.command_args('"/opt/my venv/bin/headsplat" serve --bind {endpoint}', "tcp://127.0.0.1:9")
    if os.name != "nt":
        assert args == ["/opt/my venv/bin/headsplat", "serve", "--bind", "tcp://127.0.0.1:9"]
    with pytest.raises(local_server.LocalServerError, match="command is empty"):
        local_server.command_args("  ", "tcp://x:1")
    server = local_server.LocalServer()
    with pytest.raises(local_server.LocalServerError, match="cannot start the local server"):
        server.start(str(tmp_path / "no-such-program") + " serve", "tcp://127.0.0.1:9")
    server.start(f'"{sys.executable}" -c "import sys; print(\'hello {{endpoint}}\'); sys.exit(3)"',
                 "tcp://127.0.0.1:9")
    assert bh.wait_for(lambda: not server.poll().running, 20)
    status = server.poll()
    assert status.exit_code == 3 and "hello tcp://127.0.0.1:9" in status.log_tail


def test_local_server_keeps_only_its_newest_logs(tmp_path):
    """Every start writes a log; older ones beyond the newest few are deleted, other files stay."""
    for i in range(8):
        old = tmp_path / f"{local_server.LOG_PREFIX}old{i}{local_server.LOG_SUFFIX}"
        old.write_text(f"run {i}")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "notes.log").write_text("not ours")
    server = local_server.LocalServer(log_dir=str(tmp_path))
    server.start(f'"{sys.executable}" -c "print(\'up\')"', "tcp://127.0.0.1:9")
    assert bh.wait_for(lambda: not server.poll().running, 20)
    logs = sorted(p.name for p in tmp_path.glob(f"{local_server.LOG_PREFIX}*"))
    assert len(logs) == local_server.KEEP_LOGS
    assert [n for n in logs if "old" in n] == [f"{local_server.LOG_PREFIX}old{i}{local_server.LOG_SUFFIX}"
                                               for i in range(8 - local_server.KEEP_LOGS + 1, 8)]
    assert "up" in server.poll().log_tail and (tmp_path / "notes.log").exists()


# ----------------------------------------------------------------------------- packaging rules


def test_wheel_selection_follows_blender_platforms_and_abi():
    linux311 = "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"
    abi3 = "pyzmq-27.3.0-cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"
    universal = "pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl"
    assert WheelName.parse(linux311).project == "pyzmq"
    assert wheel_runs_on(linux311, "linux-x64", "3.11") and not wheel_runs_on(linux311, "linux-x64", "3.13")
    assert wheel_runs_on(abi3, "linux-x64", "3.13") and not wheel_runs_on(abi3, "linux-x64", "3.11")
    assert not wheel_runs_on(abi3, "linux-arm64", "3.13")
    assert wheel_runs_on(universal, "macos-arm64", "3.11") and wheel_runs_on(universal, "macos-x64", "3.11")
    assert wheel_runs_on("msgpack-1.2.4-cp313-cp313-win_amd64.whl", "windows-x64", "3.13")


def test_manifest_checks_catch_what_blender_refuses():
    good = {"schema_version": "1.0.0", "id": "headsplat", "version": "0.1.0", "name": "HeadSplat",
            "tagline": "Gaussian heads", "maintainer": "x", "type": "add-on", "blender_version_min": "4.2.0",
            "license": ["SPDX:Apache-2.0"], "permissions": {"network": "Talks to a server"},
            "wheels": ["./wheels/a.whl"], "platforms": ["linux-x64"]}
    assert check_manifest(good, {"__init__.py", "wheels/a.whl"}) == []
    bad = dict(good, blender_version_min="4.1.0", tagline="x" * 70, permissions={}, wheels=["./wheels/b.whl"])
    problems = " | ".join(check_manifest(bad, {"__init__.py"}))
    for expected in ("4.2.0", "tagline", "permissions.network", "wheels/b.whl"):
        assert expected in problems
    text = manifest_text(good)
    assert 'wheels = ["./wheels/a.whl"]' in text and text.index("[permissions]") > text.index("wheels")

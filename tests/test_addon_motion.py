"""Motions in real headless Blender: a motion .npz keyed on a rig at the scene's frame
rate, exported back (exact round trip through bones in any rotation mode), and a
driving video tracked on the server (motion.track)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.motion import Motion
from tests import blender_helpers as bh

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def avatar():
    server = bh.shared_server()
    rig = bh.synthetic_rig()
    return bh.write_avatar(server.data_dir, rig, n_splats=200, name="Mover"), rig


@pytest.fixture
def rig_root(avatar):
    bh.installed_addon()
    scene = bh.new_scene()
    scene.render.fps, scene.render.fps_base = 50, 1.0
    scene.frame_start, scene.frame_end = 1, 20
    bh.connect(bh.shared_server().endpoint)
    return bh.import_avatar(avatar[0])


def make_motion(names: list[str], n: int = 26, fps: float = 25.0) -> Motion:
    t = np.linspace(0.0, 1.0, n)[:, None]
    motion = Motion.neutral(n, len(names), fps=fps, expr_names=names, head_model="synthetic")
    motion.expr[:] = np.sin(3 * t + np.arange(len(names))) * 0.5
    motion.jaw_pose[:] = np.concatenate([0.3 * t, 0.05 * t, -0.02 * t], 1)
    motion.neck_pose[:] = np.concatenate([0.1 * np.sin(4 * t), 0.2 * t, 0 * t], 1)
    motion.rotation[:] = np.concatenate([0 * t, 0.15 * np.cos(2 * t), 0.05 * t], 1)
    motion.eyes_pose[:] = np.tile(np.concatenate([0.1 * t, -0.2 * t, 0 * t], 1), (1, 2))
    motion.translation[:] = np.concatenate([0.01 * t, -0.02 * t, 0.005 * t], 1)
    return motion


def _channelbag(id_block):
    from bpy_extras import anim_utils

    anim = id_block.animation_data
    return anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot)


@pytest.mark.parametrize("jaw_mode", ["QUATERNION", "XYZ", "AXIS_ANGLE"])
def test_motion_npz_is_keyed_at_scene_rate_and_exports_back(rig_root, avatar, tmp_path, jaw_mode):
    _, rig = avatar
    scene = bpy.context.scene
    rig_root.pose.bones["jaw"].rotation_mode = jaw_mode
    motion = make_motion(list(reversed(rig["expression_names"])))  # names, not positions, decide
    motion.expr[:, 0] *= 6.0  # beyond the default slider range: the slider widens, keys are not clamped
    path = tmp_path / "talk.npz"
    motion.save(path)
    bpy.ops.headsplat.import_motion(filepath=str(path), target=rig_root.name)
    assert scene.frame_end == 51  # one second at 50 fps, from frame 1; the range grew to hold it
    head = next(c for c in rig_root.children if c.get("headsplat_role") == "head")
    key_curves = _channelbag(head.data.shape_keys).fcurves
    assert len(key_curves) == len(rig["expression_names"])
    assert all(len(fc.keyframe_points) == 51 for fc in key_curves)
    pose_curves = {fc.data_path for fc in _channelbag(rig_root).fcurves}
    jaw_path = {"QUATERNION": "rotation_quaternion", "XYZ": "rotation_euler",
                "AXIS_ANGLE": "rotation_axis_angle"}[jaw_mode]
    assert f'pose.bones["jaw"].{jaw_path}' in pose_curves

    out = tmp_path / "back.npz"
    bpy.ops.headsplat.export_motion(filepath=str(out), target=rig_root.name)
    back = Motion.load(out)
    expected = motion.resample(50.0)
    assert back.fps == 50.0 and back.n_frames == 51 and back.expr_names == rig["expression_names"]
    order = [motion.expr_names.index(n) for n in rig["expression_names"]]
    np.testing.assert_allclose(back.expr, expected.expr[:, order], atol=1e-6)
    for key in ("jaw_pose", "neck_pose", "rotation", "eyes_pose", "translation"):
        np.testing.assert_allclose(getattr(back, key), getattr(expected, key), atol=2e-5, err_msg=key)


def test_motion_keys_replace_only_their_frame_range(rig_root, avatar, tmp_path):
    _, rig = avatar
    jaw = rig_root.pose.bones["jaw"]
    jaw.rotation_quaternion = (0.9, 0.43589, 0, 0)
    jaw.keyframe_insert("rotation_quaternion", frame=200)  # an animator's key after the motion
    motion = make_motion(rig["expression_names"], n=11, fps=50.0)
    path = tmp_path / "short.npz"
    motion.save(path)
    bpy.ops.headsplat.import_motion(filepath=str(path), target=rig_root.name, first_frame=10)
    curve = next(fc for fc in _channelbag(rig_root).fcurves
                 if fc.data_path == 'pose.bones["jaw"].rotation_quaternion' and fc.array_index == 1)
    frames = [kp.co[0] for kp in curve.keyframe_points]
    assert frames[:11] == list(range(10, 21)) and frames[-1] == 200


def test_bad_motion_file_is_reported(rig_root, tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="broken.npz is not a HeadSplat motion"):
        bpy.ops.headsplat.import_motion(filepath=str(path), target=rig_root.name)


def test_driving_video_is_tracked_on_the_server(tmp_path):
    bh.installed_addon()
    scene = bh.new_scene()
    bh.connect(bh.shared_server().endpoint, request_timeout_s=30.0, lost_contact_s=600.0)
    avatar_id = bh.write_avatar(bh.shared_server().data_dir, bh.builtin_rig(), n_splats=200, name="Tracked")
    rig_root = bh.import_avatar(avatar_id)
    video = bh.DATA_DIR / "driving" / "liveportrait_d18.mp4"
    scene.render.fps = 25
    bpy.ops.headsplat.import_motion(filepath=str(video), target=rig_root.name, max_frames=12, wait="WAIT")
    head = next(c for c in rig_root.children if c.get("headsplat_role") == "head")
    assert len(_channelbag(head.data.shape_keys).fcurves) == 24  # every expression, matched by name
    keys = len(_channelbag(rig_root).fcurves[0].keyframe_points)
    assert 2 <= keys <= 12  # 12 video frames resampled to the scene's 25 fps
    entry = scene.headsplat.jobs[-1]
    assert entry.state == "done" and f"Keyed {keys} frames" in entry.result

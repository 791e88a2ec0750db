"""Motions <-> keyframes on a rig: import a motion (.npz, or a video tracked on the
server by ``motion.track``) as keys resampled to the scene's frame rate, and export the
rig's animation as a motion .npz.

Keys are written in bulk (``keyframe_points.add`` + ``foreach_set``), with linear
interpolation (a motion is dense: one key per frame), onto the head mesh's shape keys and
the armature's pose bones, i.e. exactly the channels an animator edits afterwards.
Blender 4.4+ layered actions are reached with ``Action.fcurve_ensure_for_datablock``;
older Blenders use ``Action.fcurves``.
"""

from __future__ import annotations

import json

import bpy
import numpy as np
from mathutils import Quaternion

from . import jobs
from ._shared import curve_sampling, motion as motion_mod, rig_math, rotations
from .anim_sampling import expression_names, sample_rig
from .scene_import.rig import PROP_AVATAR_ID, PROP_HEAD_MODEL, find_head_object, rest_matrices, widen_slider
from .session import Failure

INTERPOLATION_LINEAR = 1  # index of 'LINEAR' in Blender's keyframe interpolation enum


def _action_for(id_block, name: str):
    if id_block.animation_data is None:
        id_block.animation_data_create()
    action = id_block.animation_data.action
    if action is None:
        action = bpy.data.actions.new(name)
        id_block.animation_data.action = action
    return action


def _fcurve(action, id_block, data_path: str, index: int, group: str):
    if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+
        return action.fcurve_ensure_for_datablock(id_block, data_path, index=index, group_name=group)
    fcurve = action.fcurves.find(data_path, index=index)
    return fcurve or action.fcurves.new(data_path, index=index, action_group=group)


def _set_keys(fcurve, frames: np.ndarray, values: np.ndarray) -> None:
    """Replace the curve's keys inside [frames[0], frames[-1]] by (frames, values)."""
    points = fcurve.keyframe_points
    old = np.empty(2 * len(points), np.float32)
    points.foreach_get("co", old)
    old = old.reshape(-1, 2)
    keep = old[(old[:, 0] < frames[0] - 0.5) | (old[:, 0] > frames[-1] + 0.5)]
    merged = np.concatenate([keep, curve_sampling.keyframe_coordinates(frames, values).reshape(-1, 2)])
    merged = merged[np.argsort(merged[:, 0], kind="stable")]
    points.clear()
    points.add(len(merged))
    points.foreach_set("co", merged.ravel())
    points.foreach_set("interpolation", np.full(len(merged), INTERPOLATION_LINEAR, np.int32))
    fcurve.update()


def _rotation_channels(pose_bone, quats: np.ndarray) -> tuple[str, np.ndarray]:
    """Keys for the bone's rotation mode: quaternions (T, 4) as they are, or converted
    to axis-angle (T, 4) or Euler angles (T, 3) in the bone's order, continuous in time."""
    mode = pose_bone.rotation_mode
    if mode == "QUATERNION":
        return "rotation_quaternion", quats
    if mode == "AXIS_ANGLE":
        aa = rotations.quat_to_axis_angle(quats)
        angle = np.linalg.norm(aa, axis=1, keepdims=True)
        axis = np.where(angle > 1e-12, aa / np.maximum(angle, 1e-12), [[0.0, 1.0, 0.0]])
        return "rotation_axis_angle", np.concatenate([angle, axis], axis=1)
    eulers = np.empty((len(quats), 3))
    previous = None
    for t, q in enumerate(quats):
        euler = Quaternion(q).to_euler(mode, previous) if previous is not None else Quaternion(q).to_euler(mode)
        eulers[t] = euler
        previous = euler
    return "rotation_euler", eulers


def key_motion(scene, rig_root, motion: motion_mod.Motion, *, first_frame: int | None = None) -> dict:
    """Key ``motion`` on the rig from ``first_frame`` (default: the scene's start);
    -> a summary (frames keyed, expression matching, warnings)."""
    head = find_head_object(rig_root)
    fps = curve_sampling.scene_fps(scene.render.fps, scene.render.fps_base)
    first_frame = scene.frame_start if first_frame is None else first_frame
    frames, resampled = curve_sampling.motion_on_scene_frames(motion, fps, first_frame)
    frames_f = frames.astype(np.float64)

    names = expression_names(rig_root, head)
    mapping = rig_math.map_expressions(resampled.expr_names, resampled.expr.shape[1], names)
    warnings = []
    if motion.head_model and rig_root.get(PROP_HEAD_MODEL) and motion.head_model != rig_root.get(PROP_HEAD_MODEL):
        warnings.append(f"the motion was tracked with head model '{motion.head_model}', the avatar uses "
                        f"'{rig_root.get(PROP_HEAD_MODEL)}': expressions may not match")
    if mapping.unmatched_source:
        warnings.append(f"{len(mapping.unmatched_source)} expression component(s) of the motion have no shape key")
    keys = head.data.shape_keys
    if keys is not None and mapping.target_keys:
        action = _action_for(keys, f"{rig_root.name} Expressions")
        for column, name in zip(mapping.source_columns, mapping.target_keys):
            widen_slider(keys.key_blocks[name], resampled.expr[:, column])
            fcurve = _fcurve(action, keys, f'key_blocks["{name}"].value', 0, "Expressions")
            _set_keys(fcurve, frames_f, resampled.expr[:, column])

    quats, locations = rig_math.pose_from_head_params(resampled.frame_arrays(), rest_matrices(rig_root))
    action = _action_for(rig_root, f"{rig_root.name} Pose")
    for j, bone in enumerate(rig_math.JOINT_NAMES):
        path, channels = _rotation_channels(rig_root.pose.bones[bone], quats[:, j])
        for c in range(channels.shape[1]):
            _set_keys(_fcurve(action, rig_root, f'pose.bones["{bone}"].{path}', c, bone), frames_f, channels[:, c])
    for c in range(3):
        _set_keys(_fcurve(action, rig_root, 'pose.bones["root"].location', c, "root"), frames_f, locations[:, c])

    if frames[-1] > scene.frame_end:
        scene.frame_end = int(frames[-1])
        warnings.append(f"the scene now ends at frame {scene.frame_end} to hold the whole motion")
    scene.frame_set(scene.frame_current)
    return {"frames": len(frames), "first": int(frames[0]), "last": int(frames[-1]),
            "matched": len(mapping.target_keys), "by_name": mapping.by_name, "warnings": warnings}


def motion_from_rig(scene, rig_root, frames) -> motion_mod.Motion:
    """The rig's animation over scene ``frames`` as a Motion at the scene's frame rate."""
    samples = sample_rig(scene, rig_root, frames, with_camera=False)
    head = find_head_object(rig_root)
    fps = curve_sampling.scene_fps(scene.render.fps, scene.render.fps_base)
    pose = {k: v for k, v in samples.params.items() if k != "expr"}
    return curve_sampling.motion_from_samples(fps, samples.params["expr"], pose,
                                              expr_names=expression_names(rig_root, head),
                                              head_model=str(rig_root.get(PROP_HEAD_MODEL) or ""))


def summary_message(rig_name: str, summary: dict) -> str:
    text = (f"Keyed {summary['frames']} frames ({summary['first']}-{summary['last']}) on '{rig_name}', "
            f"{summary['matched']} expression(s) {'by name' if summary['by_name'] else 'by position'}")
    return text + "".join(f"; {w}" for w in summary["warnings"])


@jobs.controller_for("motion.track")
class MotionTrackController(jobs.JobController):
    """motion.track: key the tracked motion on the target rig."""

    def done(self, result: dict) -> None:
        ctx = self.context
        scene = self.scene
        rig_root = scene.objects.get(ctx.get("rig", "")) if scene is not None else None
        if rig_root is None or not rig_root.get(PROP_AVATAR_ID):
            self.fail(Failure("not_found", f"the rig '{ctx.get('rig')}' is gone; the tracked motion was not keyed"))
            return
        try:
            motion = motion_mod.Motion.from_npz(bytes(result["motion"]))
        except (KeyError, TypeError, motion_mod.MotionFormatError) as exc:
            self.fail(Failure("bad_file", f"the server's tracked motion cannot be read: {exc}"))
            return
        summary = key_motion(scene, rig_root, motion, first_frame=int(ctx.get("first_frame", scene.frame_start)))
        missing = result.get("missing_frames") or []
        if missing:
            summary["warnings"].append(f"{len(missing)} video frame(s) had no face and were interpolated")
        if ctx.get("save_path"):
            motion.save(ctx["save_path"])
        self.finish(summary_message(rig_root.name, summary), json.dumps(summary))

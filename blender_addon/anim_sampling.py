"""Sample what a rig and the scene camera do, frame by frame, as FLAME parameters and
head-space cameras (bpy glue; the maths is shared.rig_math and shared.camera).

Values are read from the evaluated depsgraph after ``scene.frame_set``, so keyframes,
drivers, NLA strips and constraints (e.g. eyes tracking a target) all count. Pose is
taken from the final bone matrices (``pose_bone.matrix``) and converted back to each
bone's local rotation, which is what FLAME's joint rotations are.
"""

from __future__ import annotations

import json

import bpy
import numpy as np

from ._shared import camera as camera_mod, rig_math
from .scene_import.rig import PROP_EXPRESSION_NAMES, find_head_object, rest_matrices
from .shot import ShotSamples


def expression_names(rig_root, head_object) -> list[str]:
    """The rig's expression components in the head model's order (stored at import),
    else every shape key but the basis."""
    stored = rig_root.get(PROP_EXPRESSION_NAMES)
    if stored:
        try:
            return [str(n) for n in json.loads(stored)]
        except ValueError:
            pass
    keys = head_object.data.shape_keys
    if keys is None:
        return []
    return [kb.name for kb in keys.key_blocks if kb != keys.reference_key]


def _expression_values(head_object, names: list[str], depsgraph) -> np.ndarray:
    keys = head_object.data.shape_keys
    values = np.zeros(len(names), np.float32)
    if keys is None:
        return values
    evaluated = keys.evaluated_get(depsgraph)
    blocks = evaluated.key_blocks
    for i, name in enumerate(names):
        block = blocks.get(name)
        if block is not None and not block.mute:
            values[i] = block.value
    return values


def _pose_matrices(rig_root, depsgraph) -> np.ndarray:
    evaluated = rig_root.evaluated_get(depsgraph)
    return np.array([np.array(evaluated.pose.bones[name].matrix) for name in rig_math.JOINT_NAMES])


def blender_camera_data(camera_object, scene, depsgraph) -> camera_mod.BlenderCameraData:
    """The evaluated camera and render settings as ``BlenderCameraData``."""
    evaluated = camera_object.evaluated_get(depsgraph)
    data = evaluated.data
    if data.type != "PERSP":
        raise ValueError(f"the camera '{camera_object.name}' is {data.type.lower()}; HeadSplat renders "
                         "perspective cameras only")
    render = scene.render
    scale = render.resolution_percentage / 100.0
    return camera_mod.BlenderCameraData(
        matrix_world=np.array(evaluated.matrix_world), lens_mm=data.lens, sensor_width_mm=data.sensor_width,
        sensor_height_mm=data.sensor_height, sensor_fit=data.sensor_fit, shift_x=data.shift_x, shift_y=data.shift_y,
        resolution_x=max(1, int(render.resolution_x * scale)), resolution_y=max(1, int(render.resolution_y * scale)),
        pixel_aspect_x=render.pixel_aspect_x, pixel_aspect_y=render.pixel_aspect_y,
        clip_start=data.clip_start, clip_end=data.clip_end)


def sample_rig(scene, rig_root, frames, *, with_camera: bool = True) -> ShotSamples:
    """Sample ``rig_root`` (and the scene camera) at scene ``frames`` (T,).

    Returns ShotSamples with expr (T, E) in the head model's order, the pose parameters,
    and T head-space cameras (empty when ``with_camera`` is False). The scene returns to
    its current frame afterwards.
    """
    head_object = find_head_object(rig_root)
    names = expression_names(rig_root, head_object)
    rest = rest_matrices(rig_root)
    frames = np.asarray(frames, dtype=np.int64)
    expr = np.zeros((len(frames), len(names)), np.float32)
    pose = np.zeros((len(frames), len(rig_math.JOINT_NAMES), 4, 4))
    cameras: list[camera_mod.Camera] = []
    metres_per_unit = 1.0
    original_frame, original_subframe = scene.frame_current, scene.frame_subframe
    try:
        for t, frame in enumerate(frames):
            scene.frame_set(int(frame))
            depsgraph = bpy.context.evaluated_depsgraph_get()
            expr[t] = _expression_values(head_object, names, depsgraph)
            pose[t] = _pose_matrices(rig_root, depsgraph)
            if with_camera:
                if scene.camera is None:
                    raise ValueError("the scene has no active camera; add one (or import an avatar, which adds its "
                                     "portrait camera)")
                root_world = np.array(rig_root.evaluated_get(depsgraph).matrix_world)
                blender_to_head = camera_mod.BLENDER_TO_HEAD @ np.linalg.inv(root_world)
                cameras.append(camera_mod.camera_from_blender(blender_camera_data(scene.camera, scene, depsgraph),
                                                              blender_to_head=blender_to_head))
                metres_per_unit = 1.0 / max(float(np.mean(np.linalg.norm(root_world[:3, :3], axis=0))), 1e-12)
    finally:
        scene.frame_set(original_frame, subframe=original_subframe)
    basis = rig_math.basis_from_pose_matrices(pose, rest)
    params = {"expr": expr, **rig_math.head_params_from_basis(basis, rest)}
    return ShotSamples(frames, params, cameras, metres_per_unit)

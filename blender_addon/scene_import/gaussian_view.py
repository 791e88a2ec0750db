"""Switch the splat objects between true splats and the point preview, and keep the
true splats' Pixel Angle (the server's eps2d blur) in step with the scene camera."""

from __future__ import annotations

import bpy

from . import gaussian_nodes, geometry_nodes as gn
from .rig import PROP_ROLE


def splat_objects(scene, rig_roots=None) -> list:
    """The HeadSplat splat objects of ``scene`` (of ``rig_roots`` only, when given)."""
    roots = None if rig_roots is None else {root.name for root in rig_roots}
    return [obj for obj in scene.objects if obj.get(PROP_ROLE) == "splats"
            and (roots is None or (obj.parent is not None and obj.parent.name in roots))]


def scene_pixel_angle(scene) -> float:
    """1 / focal length in pixels of the scene camera at the render resolution (0 when
    the scene has no perspective camera: no blur)."""
    from ..anim_sampling import blender_camera_data  # bpy glue shared with shot sampling

    if scene.camera is None or scene.camera.type != "CAMERA" or scene.camera.data.type != "PERSP":
        return 0.0
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return gaussian_nodes.pixel_angle_for_scene(blender_camera_data(scene.camera, scene, depsgraph))


def sync_pixel_angle(scene, objects=None) -> float:
    """Set every splat object's Pixel Angle from the scene camera; -> the value."""
    value = scene_pixel_angle(scene)
    for obj in splat_objects(scene) if objects is None else objects:
        modifier = gn.pose_modifier(obj)
        key = gn.input_identifier(modifier.node_group, gn.INPUT_PIXEL_ANGLE)
        if abs(float(modifier.get(key, 0.0)) - value) > 1e-12:
            gn.set_input(obj, gn.INPUT_PIXEL_ANGLE, value)
    return value


def show_gaussians(obj, enabled: bool) -> None:
    """True splats (``enabled``) or the fast point preview on one splat object."""
    gn.set_input(obj, gn.INPUT_GAUSSIANS, bool(enabled))

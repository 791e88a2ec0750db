"""Import one avatar into a scene: a collection with the rig (armature + head mesh), the
splat preview and, when the avatar has one, its portrait camera."""

from __future__ import annotations

import json
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from .._shared import camera as camera_mod
from . import gaussian_view, rig as rig_mod, splats as splats_mod
from .avatar_data import AvatarData
from .splat_layout import splat_points


@dataclass
class ImportedAvatar:
    collection: object
    rig_root: object
    head: object
    splats: object
    camera: object | None


def _unique_collection(scene, name: str):
    collection = bpy.data.collections.new(name)
    scene.collection.children.link(collection)
    return collection


def _portrait_camera(name: str, camera: camera_mod.Camera, collection, rig_root, scene):
    data = camera_mod.camera_to_blender(camera, head_to_blender=np.array(rig_root.matrix_world) @ camera_mod.HEAD_TO_BLENDER)
    cam_data = bpy.data.cameras.new(name)
    cam_data.sensor_fit = data.sensor_fit
    cam_data.sensor_width, cam_data.sensor_height = data.sensor_width_mm, data.sensor_height_mm
    cam_data.lens = data.lens_mm
    cam_data.shift_x, cam_data.shift_y = data.shift_x, data.shift_y
    cam_data.clip_start, cam_data.clip_end = data.clip_start, data.clip_end
    cam_object = bpy.data.objects.new(name, cam_data)
    cam_object.matrix_world = Matrix(data.matrix_world.tolist())
    collection.objects.link(cam_object)
    if scene.camera is None:  # a new scene: frame the avatar like its photo
        scene.camera = cam_object
        scene.render.resolution_x, scene.render.resolution_y = data.resolution_x, data.resolution_y
        scene.render.resolution_percentage = 100
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = data.pixel_aspect_x, data.pixel_aspect_y
    return cam_object


def import_avatar(scene, avatar: AvatarData, *, endpoint: str = "", density: float | None = None) -> ImportedAvatar:
    """Build the avatar's objects in ``scene`` (see the module docstring)."""
    name = avatar.name or avatar.avatar_id
    collection = _unique_collection(scene, f"HeadSplat {name}")
    rig_root, head = rig_mod.build_rig(name, avatar.rig, collection, scene)
    rig_root[rig_mod.PROP_AVATAR_ID] = avatar.avatar_id
    rig_root[rig_mod.PROP_AVATAR_NAME] = name
    rig_root[rig_mod.PROP_HEAD_MODEL] = avatar.rig.head_model
    rig_root[rig_mod.PROP_EXPRESSION_NAMES] = json.dumps(avatar.rig.expression_names)
    if endpoint:
        rig_root["headsplat_server"] = endpoint
    points = splat_points(avatar.splats, avatar.rig.rest_vertices, avatar.rig.faces)
    splat_object = splats_mod.build_splat_object(f"{name} Splats", points, collection, rig_root, head,
                                                 density=density, sh_degree=avatar.splats.sh_degree)
    camera = None
    if avatar.portrait_camera is not None:
        camera = _portrait_camera(f"{name} Portrait Camera", avatar.portrait_camera, collection, rig_root, scene)
    gaussian_view.sync_pixel_angle(scene, [splat_object])
    return ImportedAvatar(collection, rig_root, head, splat_object, camera)

"""The avatar's rig: an armature (root, neck, jaw, left_eye, right_eye) and the head mesh
with one shape key per expression component, skinned by the head model's weights.

Everything an animator touches is a normal, keyframable property: shape-key values
(expression coefficients, linear) and pose-bone rotations (FLAME joints). The armature
object is the rig's root: it maps head space to Blender with ``HEAD_TO_BLENDER`` (its
children have identity parent offsets) and carries ``headsplat_avatar_id``. Bone rest
frames come from ``shared.rig_math.bone_layout``; the exact FLAME <-> bone conversion
uses the rest matrices Blender stores (``bone.matrix_local``).
"""

from __future__ import annotations

import re

import bpy
import numpy as np
from mathutils import Matrix

from .._shared import camera as camera_mod, rig_math
from .avatar_data import RigData

_H = camera_mod.HEAD_TO_BLENDER[:3, :3]
PCA_SLIDER_RANGE = (-3.0, 3.0)  # FLAME's PCA components are unit-variance: 3 sigma either way
NAMED_SLIDER_RANGE = (-1.0, 2.0)  # named components (blink_left, smile...): 1 is the full expression
SLIDER_LIMIT = 10.0  # Blender's own bound for shape-key sliders
PROP_AVATAR_ID = "headsplat_avatar_id"
PROP_AVATAR_NAME = "headsplat_avatar_name"
PROP_HEAD_MODEL = "headsplat_head_model"
PROP_ROLE = "headsplat_role"
PROP_EXPRESSION_NAMES = "headsplat_expression_names"  # JSON list, the head model's order


def to_object_space(points_head: np.ndarray) -> np.ndarray:
    """(..., 3) head-space points -> armature (object) space, float32."""
    return (np.asarray(points_head, dtype=np.float64) @ _H.T).astype(np.float32)


def head_mesh(name: str, rig: RigData):
    """The rest head mesh (object space) with the expression shape keys added later."""
    mesh = bpy.data.meshes.new(name)
    n_faces = len(rig.faces)
    mesh.vertices.add(rig.n_vertices)
    mesh.vertices.foreach_set("co", to_object_space(rig.rest_vertices).ravel())
    mesh.loops.add(3 * n_faces)
    mesh.loops.foreach_set("vertex_index", rig.faces.astype(np.int32).ravel())
    mesh.polygons.add(n_faces)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_faces, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.validate(clean_customdata=False)
    if rig.face_region.size == n_faces:
        region = mesh.attributes.new("headsplat_region", "INT", "FACE")
        region.data.foreach_set("value", rig.face_region.astype(np.int32))
    return mesh


def expression_slider_range(names: list[str]) -> tuple[float, float]:
    """Slider limits that suit the components: PCA-style (expr_000...) or named."""
    if all(re.fullmatch(r"(expr|exp|e)_?\d+", name) for name in names):
        return PCA_SLIDER_RANGE
    return NAMED_SLIDER_RANGE


def widen_slider(key_block, values: np.ndarray) -> None:
    """Let a shape key's slider hold ``values`` (a key's value is clamped to its slider
    range, so keys beyond it would not play back as written)."""
    low, high = float(np.min(values)), float(np.max(values))
    if low < key_block.slider_min:
        key_block.slider_min = max(-SLIDER_LIMIT, np.floor(low))
    if high > key_block.slider_max:
        key_block.slider_max = min(SLIDER_LIMIT, np.ceil(high))


def add_shape_keys(head_object, rig: RigData) -> None:
    """Basis plus one shape key per expression component (value = coefficient)."""
    head_object.shape_key_add(name="Basis", from_mix=False)
    rest = rig.rest_vertices.astype(np.float64)
    low, high = expression_slider_range(rig.expression_names)
    for name, delta in zip(rig.expression_names, rig.expression_deltas):
        key = head_object.shape_key_add(name=name, from_mix=False)
        key.data.foreach_set("co", to_object_space(rest + delta).ravel())
        key.slider_min, key.slider_max = low, high
        key.value = 0.0
    head_object.data.shape_keys.use_relative = True


def add_skin_weights(head_object, weights: np.ndarray) -> None:
    """One vertex group per joint; vertices sharing a weight are added in one call."""
    for j, joint in enumerate(rig_math.JOINT_NAMES):
        group = head_object.vertex_groups.new(name=joint)
        column = weights[:, j]
        nonzero = np.flatnonzero(column > 0)
        values, inverse = np.unique(column[nonzero], return_inverse=True)
        for k, value in enumerate(values):
            group.add(nonzero[inverse == k].tolist(), float(value), "REPLACE")


def _window_override(scene, view_layer, obj) -> dict:
    override = {"scene": scene, "view_layer": view_layer, "active_object": obj, "object": obj,
                "selected_objects": [obj], "selected_editable_objects": [obj]}
    wm = bpy.context.window_manager
    if wm is not None and wm.windows:
        override["window"] = wm.windows[0]
    return override


def build_bones(arm_object, layout: rig_math.BoneLayout, scene) -> None:
    """Create the five bones in edit mode (the only way Blender makes bones)."""
    view_layer = scene.view_layers[0]
    for layer in scene.view_layers:
        if layer.objects.get(arm_object.name) is not None:
            view_layer = layer
            break
    previous_active = view_layer.objects.active
    view_layer.objects.active = arm_object
    with bpy.context.temp_override(**_window_override(scene, view_layer, arm_object)):
        if bpy.context.mode != "OBJECT" and bpy.ops.object.mode_set.poll():
            bpy.ops.object.mode_set(mode="OBJECT")
        bpy.ops.object.mode_set(mode="EDIT")
        edit_bones = arm_object.data.edit_bones
        for j, name in enumerate(layout.names):
            bone = edit_bones.new(name)
            bone.head = layout.heads[j]
            bone.tail = layout.tails[j]
            bone.matrix = Matrix(layout.matrices[j].tolist())
            bone.use_deform = True
            bone.use_connect = False
            if layout.parents[j] >= 0:
                bone.parent = edit_bones[layout.names[layout.parents[j]]]
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = previous_active


def setup_pose_bones(arm_object) -> None:
    """Quaternion rotation everywhere (exact FLAME round trip, no gimbal lock); only the
    root may move, the other joints only rotate as in FLAME."""
    for pose_bone in arm_object.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
        if pose_bone.name != "root":
            pose_bone.lock_location = (True, True, True)
        pose_bone.lock_scale = (True, True, True)


def rest_matrices(arm_object) -> np.ndarray:
    """(5, 4, 4) bone rest matrices in armature space, JOINT_NAMES order."""
    bones = arm_object.data.bones
    missing = [name for name in rig_math.JOINT_NAMES if bones.get(name) is None]
    if missing:
        raise ValueError(f"the rig '{arm_object.name}' has no bone {missing[0]!r}; re-import the avatar")
    return np.array([np.array(bones[name].matrix_local) for name in rig_math.JOINT_NAMES], dtype=np.float64)


def build_rig(name: str, rig: RigData, collection, scene):
    """-> (armature object = rig root, head mesh object), linked into ``collection``."""
    armature = bpy.data.armatures.new(f"{name} Rig")
    armature.display_type = "STICK"
    arm_object = bpy.data.objects.new(f"{name} Rig", armature)
    collection.objects.link(arm_object)
    arm_object.show_in_front = True
    layout = rig_math.bone_layout(rig.joint_rest, rig.rest_vertices, rig.skin_weights)
    build_bones(arm_object, layout, scene)
    setup_pose_bones(arm_object)

    head_object = bpy.data.objects.new(f"{name} Head", head_mesh(f"{name} Head", rig))
    collection.objects.link(head_object)
    head_object.parent = arm_object
    add_shape_keys(head_object, rig)
    add_skin_weights(head_object, rig.skin_weights)
    modifier = head_object.modifiers.new("Armature", "ARMATURE")
    modifier.object = arm_object
    modifier.use_vertex_groups = True
    modifier.use_deform_preserve_volume = False  # FLAME skins linearly
    head_object.display_type = "WIRE"
    head_object.hide_render = True
    head_object[PROP_ROLE] = "head"
    arm_object[PROP_ROLE] = "rig"
    return arm_object, head_object


def find_head_object(rig_root):
    """The head mesh of a rig root (its child marked as the head)."""
    for child in rig_root.children:
        if child.get(PROP_ROLE) == "head" and child.type == "MESH":
            return child
    raise ValueError(f"'{rig_root.name}' has no HeadSplat head mesh; re-import the avatar")


def find_rig_roots(scene) -> list:
    """Every HeadSplat rig root in the scene (objects carrying headsplat_avatar_id)."""
    return [obj for obj in scene.objects if obj.type == "ARMATURE" and obj.get(PROP_AVATAR_ID)]

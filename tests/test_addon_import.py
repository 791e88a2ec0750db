"""Importing avatars in real headless Blender from a real server: the rig, its shape keys
and bones, the splat object and its geometry-nodes preview, compared against the numpy
and torch references the server uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import blender_helpers as bh

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender

from compute_server.head.lbs import batch_rigid_transform, batch_rodrigues  # noqa: E402
from shared.camera import HEAD_TO_BLENDER  # noqa: E402
from shared.rig_math import JOINT_NAMES, JOINT_PARENTS, pose_from_head_params  # noqa: E402
from shared.splat_format import LocalSplats, ply_property_names, pose_splats  # noqa: E402


@pytest.fixture(scope="module")
def server():
    return bh.shared_server()


@pytest.fixture(scope="module")
def synthetic_avatar(server):
    rig = bh.synthetic_rig()
    return bh.write_avatar(server.data_dir, rig, n_splats=600, name="Synthetic", sh_degree=1), rig


@pytest.fixture(scope="module")
def builtin_avatar(server):
    rig = bh.builtin_rig()
    return bh.write_avatar(server.data_dir, rig, n_splats=3000, name="Builtin", sh_degree=3), rig


@pytest.fixture
def scene(server):
    bh.installed_addon()
    scene = bh.new_scene()
    bh.connect(server.endpoint)
    return scene


def _vertices(obj) -> np.ndarray:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(3 * len(mesh.vertices), np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        evaluated.to_mesh_clear()
    return co.reshape(-1, 3).astype(np.float64)


def _points(obj) -> dict[str, np.ndarray]:
    """The point preview's points (the object is switched to the point preview)."""
    gn = bh.addon_module("scene_import.geometry_nodes")
    modifier = gn.pose_modifier(obj)
    if modifier[gn.input_identifier(modifier.node_group, gn.INPUT_GAUSSIANS)]:
        gn.set_input(obj, gn.INPUT_GAUSSIANS, False)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    geometry = evaluated.evaluated_geometry()
    cloud = geometry.pointcloud
    out = {}
    for name, key, width in (("position", "vector", 3), ("radius", "value", 1), ("hs_rotation", "value", 4),
                             ("hs_scale", "vector", 3), ("hs_face", "value", 1)):
        attribute = cloud.attributes.get(name)
        if attribute is None:
            continue
        values = np.empty(len(attribute.data) * width, np.float32 if name != "hs_face" else np.int32)
        attribute.data.foreach_get(key, values)
        out[name] = values.reshape(-1, width) if width > 1 else values
    return out


def _set_orientation(splat_object, enabled: bool) -> None:
    gn = bh.addon_module("scene_import.geometry_nodes")
    modifier = splat_object.modifiers[0]
    modifier[gn.input_identifier(modifier.node_group, gn.INPUT_ORIENTATION)] = enabled
    splat_object.update_tag()


def _children(rig_root):
    head = next(c for c in rig_root.children if c.get("headsplat_role") == "head")
    splats = next(c for c in rig_root.children if c.get("headsplat_role") == "splats")
    return head, splats


def test_import_builds_a_keyframable_rig_and_a_splat_object(scene, synthetic_avatar):
    avatar_id, rig = synthetic_avatar
    rig_root = bh.import_avatar(avatar_id)
    assert rig_root.type == "ARMATURE" and rig_root["headsplat_avatar_id"] == avatar_id
    assert rig_root.users_collection[0].name.startswith("HeadSplat Synthetic")
    assert [b.name for b in rig_root.data.bones] == list(JOINT_NAMES)
    assert rig_root.data.bones["neck"].parent.name == "root" and rig_root.data.bones["jaw"].parent.name == "neck"
    head, splats = _children(rig_root)
    keys = head.data.shape_keys.key_blocks
    assert [k.name for k in keys][1:] == rig["expression_names"]
    assert [g.name for g in head.vertex_groups] == list(JOINT_NAMES)
    assert head.modifiers[0].type == "ARMATURE" and head.modifiers[0].object == rig_root
    # every 3DGS PLY field is a point attribute of the splat mesh, plus the binding
    attributes = set(splats.data.attributes.keys())
    ply = set(ply_property_names(1)) - {"x", "y", "z", "nx", "ny", "nz"}
    assert ply <= attributes
    assert {"hs_face", "hs_v0", "hs_v1", "hs_v2", "hs_mean_local", "hs_quat_local", "hs_color"} <= attributes
    assert len(splats.data.vertices) == 600 and len(splats.data.polygons) == 0
    assert splats.modifiers[0].type == "NODES" and head.hide_render and splats.hide_render
    # true splats by default: one Gaussian box instance per splat, carrying its colour and opacity
    evaluated = splats.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    instances = evaluated.instances_pointcloud()
    assert instances is not None and len(instances.points) == 600
    assert set(instances.attributes.keys()) >= {"hs_rgba", *[f"hs_sh_pack_{i}" for i in range(7)]}
    assert scene.camera is not None and scene.render.resolution_x == 256  # the avatar's portrait camera
    # controls are real, keyframable properties
    assert keys["smile"].keyframe_insert("value", frame=1)
    assert rig_root.pose.bones["jaw"].keyframe_insert("rotation_quaternion", frame=1)


def test_rig_deforms_exactly_like_flame_skinning(scene, builtin_avatar):
    """Shape keys + bones set from FLAME parameters give the server's LBS (no pose correctives)."""
    avatar_id, rig = builtin_avatar
    rig_root = bh.import_avatar(avatar_id)
    head, _ = _children(rig_root)
    rng = np.random.default_rng(3)
    params = {"rotation": rng.normal(scale=0.2, size=(1, 3)), "neck_pose": rng.normal(scale=0.2, size=(1, 3)),
              "jaw_pose": np.array([[0.25, 0.02, -0.03]]), "eyes_pose": rng.normal(scale=0.2, size=(1, 6)),
              "translation": np.array([[0.01, -0.02, 0.03]])}
    expr = rng.uniform(-0.5, 1.0, size=len(rig["expression_names"]))
    rest = bh.addon_module("scene_import.rig").rest_matrices(rig_root)
    quats, location = pose_from_head_params(params, rest)
    for j, name in enumerate(JOINT_NAMES):
        rig_root.pose.bones[name].rotation_quaternion = quats[0, j]
    rig_root.pose.bones["root"].location = location[0]
    for name, value in zip(rig["expression_names"], expr):
        head.data.shape_keys.key_blocks[name].value = value
    bpy.context.view_layer.update()

    # reference: FLAME LBS in torch with the server's own kinematics
    shaped = rig["rest_vertices"].astype(np.float64) + np.einsum("e,evc->vc", expr, rig["expression_deltas"])
    pose = np.concatenate([params["rotation"], params["neck_pose"], params["jaw_pose"], params["eyes_pose"]], 1)
    rot = batch_rodrigues(torch.as_tensor(pose.reshape(-1, 3))).reshape(1, 5, 3, 3)
    _, transforms = batch_rigid_transform(rot, torch.as_tensor(rig["joint_rest"][None], dtype=torch.float64),
                                          torch.tensor(JOINT_PARENTS))
    per_vertex = np.einsum("vj,jrc->vrc", rig["skin_weights"].astype(np.float64), transforms[0].numpy())
    expected = np.einsum("vrc,vc->vr", per_vertex[:, :3, :3], shaped) + per_vertex[:, :3, 3] + params["translation"]
    got = _vertices(head) @ HEAD_TO_BLENDER[:3, :3]  # object space -> head space
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_geometry_nodes_preview_poses_splats_like_the_reference(scene, builtin_avatar):
    avatar_id, rig = builtin_avatar
    rig_root = bh.import_avatar(avatar_id)
    head, splats = _children(rig_root)
    head.data.shape_keys.key_blocks[rig["expression_names"][10]].value = 0.9
    rig_root.pose.bones["jaw"].rotation_quaternion = (0.97, 0.24, 0.0, 0.0)
    rig_root.pose.bones["neck"].rotation_quaternion = (0.98, 0.05, 0.19, 0.0)
    _set_orientation(splats, True)
    bpy.context.view_layer.update()
    vertices = _vertices(head)
    points = _points(splats)
    local = LocalSplats.from_arrays(dict(np.load(_avatar_file(avatar_id, "splats.npz"))))
    world = pose_splats(local, vertices, rig["faces"])
    np.testing.assert_array_equal(points["hs_face"], local.binding)
    np.testing.assert_allclose(points["position"], world.means, atol=2e-6)
    np.testing.assert_allclose(points["hs_scale"], world.scales, rtol=1e-4, atol=1e-9)
    quats = np.where(points["hs_rotation"][:, :1] < 0, -points["hs_rotation"], points["hs_rotation"])
    expected_q = np.where(world.quats[:, :1] < 0, -world.quats, world.quats)
    np.testing.assert_allclose(quats, expected_q, atol=2e-5)
    # radius: the preview sphere of each posed Gaussian (Point Size 1)
    layout = bh.addon_module("scene_import.splat_layout")
    np.testing.assert_allclose(points["radius"], layout.preview_radius(world.scales, world.opacities), rtol=1e-4)
    # the preview follows the animation: a frame change re-poses it
    jaw_points = points["position"].copy()
    rig_root.pose.bones["jaw"].rotation_quaternion = (1, 0, 0, 0)
    bpy.context.view_layer.update()
    moved = np.linalg.norm(_points(splats)["position"] - jaw_points, axis=1)
    assert (moved > 1e-4).sum() > 0 and (moved < 1e-7).sum() > 0


def _avatar_file(avatar_id: str, name: str):
    return bh.shared_server().data_dir / "avatars" / avatar_id / name


def test_big_avatars_start_at_a_lighter_level_of_detail(scene, server, monkeypatch):
    layout = bh.addon_module("scene_import.splat_layout")
    monkeypatch.setattr(layout, "DEFAULT_VIEWPORT_SPLATS", 400)  # the budget only: default_density runs as shipped
    avatar_id = bh.write_avatar(server.data_dir, bh.synthetic_rig(), n_splats=2000, name="Big")
    rig_root = bh.import_avatar(avatar_id)
    _, splats = _children(rig_root)
    gn = bh.addon_module("scene_import.geometry_nodes")
    modifier = splats.modifiers[0]
    density = modifier[gn.input_identifier(modifier.node_group, gn.INPUT_DENSITY)]
    assert density == pytest.approx(0.2)
    assert len(_points(splats)["position"]) == 400
    modifier[gn.input_identifier(modifier.node_group, gn.INPUT_DENSITY)] = 1.0
    splats.update_tag()
    bpy.context.view_layer.update()
    assert len(_points(splats)["position"]) == 2000


def test_keys_survive_save_and_reopen(scene, synthetic_avatar, tmp_path):
    avatar_id, rig = synthetic_avatar
    rig_root = bh.import_avatar(avatar_id)
    head, _ = _children(rig_root)
    key = head.data.shape_keys.key_blocks[rig["expression_names"][0]]
    jaw = rig_root.pose.bones["jaw"]
    for frame, value, angle in ((1, 0.0, 0.0), (2, 0.6, 0.2), (3, 1.0, 0.35)):
        key.value = value
        key.keyframe_insert("value", frame=frame)
        jaw.rotation_quaternion = (np.cos(angle / 2), np.sin(angle / 2), 0, 0)
        jaw.keyframe_insert("rotation_quaternion", frame=frame)
    path = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    reopened = [o for o in bpy.context.scene.objects if o.get("headsplat_avatar_id") == avatar_id]
    assert len(reopened) == 1
    rig_root = reopened[0]
    head, splats = _children(rig_root)
    scene = bpy.context.scene
    scene.frame_set(3)
    assert head.data.shape_keys.key_blocks[rig["expression_names"][0]].value == pytest.approx(1.0)
    assert rig_root.pose.bones["jaw"].rotation_quaternion[1] == pytest.approx(np.sin(0.175), abs=1e-6)
    scene.frame_set(2)
    assert head.data.shape_keys.key_blocks[rig["expression_names"][0]].value == pytest.approx(0.6)
    assert len(_points(splats)["position"]) == 600  # the preview still evaluates after reopening

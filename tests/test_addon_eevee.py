"""True splats in real headless Blender: EEVEE draws the imported avatar like the server's
``render.frames`` (PSNR over the head, centred and near a corner with a wide lens), the
splats follow the rig, and Render Shot's EEVEE mode renders a shot to the output path.

EEVEE runs through software GL here: renders are 256 x 256 with few samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import blender_helpers as bh

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender

from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Matrix  # noqa: E402

from shared.rotations import quat_to_matrix  # noqa: E402
from shared.splat_format import LocalSplats  # noqa: E402

AGREEMENT_PSNR_DB = 28.0


@pytest.fixture(scope="module")
def avatar():
    """Random splats (SH degree 3: every packed coefficient the material unpacks) on the
    built-in head, a few thousand of them."""
    rig = bh.builtin_rig()
    return bh.write_avatar(bh.shared_server().data_dir, rig, n_splats=3000, name="Eevee", sh_degree=3), rig


@pytest.fixture
def rig_root(avatar, tmp_path):
    bh.installed_addon()
    scene = bh.new_scene()
    scene.render.filepath = str(tmp_path / "renders") + "/"
    bh.connect(bh.shared_server().endpoint)
    root = bh.import_avatar(avatar[0])
    scene.headsplat.setup_compositor = False
    scene.view_settings.view_transform = "Standard"
    scene.render.film_transparent = True
    scene.render.image_settings.color_mode = "RGBA"
    # the server's sampling: one sample at each pixel's centre (its eps2d blur is in the splats)
    scene.eevee.taa_render_samples = 1
    scene.render.filter_size = 0.0
    scene.frame_start = scene.frame_end = scene.frame_current = 1
    return root


def _children(rig_root):
    head = next(c for c in rig_root.children if c.get("headsplat_role") == "head")
    splats = next(c for c in rig_root.children if c.get("headsplat_role") == "splats")
    return head, splats


def _pose_expression_and_jaw(rig_root, rig) -> None:
    head, _ = _children(rig_root)
    head.data.shape_keys.key_blocks[rig["expression_names"][0]].value = 1.5
    head.data.shape_keys.key_blocks[rig["expression_names"][3]].value = -1.0
    angle = 0.3
    rig_root.pose.bones["jaw"].rotation_quaternion = (np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0)
    bpy.context.view_layer.update()


def _read_premultiplied(path) -> np.ndarray:
    """(H, W, 4) display-referred RGB times alpha, and alpha, rows top-down."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    rgba = pixels.reshape(height, width, 4)[::-1].copy()
    rgba[..., :3] *= rgba[..., 3:]
    return rgba


def _server_frame(scene, rig_root) -> np.ndarray:
    assert bpy.ops.headsplat.render_shot(mode="SERVER", wait="WAIT") == {"FINISHED"}
    folder = bh.addon_module("shot").output_dir(scene.render.filepath, rig_root["headsplat_avatar_name"], "")
    return _read_premultiplied(Path(folder) / "frame_0001.png")


def _eevee_frame(scene, path) -> np.ndarray:
    eevee_shot = bh.addon_module("eevee_shot")
    setup = eevee_shot.EeveeShotSetup(scene.name)
    try:
        setup.apply(None)
        scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
    finally:
        setup.restore()
    return _read_premultiplied(path)


def _psnr_over_head(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    mask = (a[..., 3] > 0.5) | (b[..., 3] > 0.5)
    mse = float(np.mean((a[mask][:, :3] - b[mask][:, :3]) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12)), int(mask.sum())


def _agreement(scene, rig_root, tmp_path) -> float:
    server = _server_frame(scene, rig_root)
    eevee = _eevee_frame(scene, tmp_path / "eevee.png")
    psnr, covered = _psnr_over_head(server, eevee)
    print(f"EEVEE vs server: {psnr:.2f} dB over {covered} head pixels")
    assert covered > 2000  # the head is in the frame
    return psnr


def test_eevee_matches_the_server_with_the_head_centred(rig_root, avatar, tmp_path):
    _pose_expression_and_jaw(rig_root, avatar[1])
    assert _agreement(bpy.context.scene, rig_root, tmp_path) >= AGREEMENT_PSNR_DB


def _head_centre_ndc(scene, rig_root):
    head, _ = _children(rig_root)
    centre = head.matrix_world @ (sum((v.co for v in head.data.vertices), head.data.vertices[0].co * 0)
                                  / len(head.data.vertices))
    return world_to_camera_view(scene, scene.camera, centre)


def test_eevee_matches_the_server_near_a_corner_with_a_wide_lens(rig_root, avatar, tmp_path):
    scene = bpy.context.scene
    _pose_expression_and_jaw(rig_root, avatar[1])
    camera = scene.camera
    camera.data.lens = 14.0  # 104 degrees across the 36 mm sensor
    # turn the camera so the head sits in the upper-right part of the frame, and come closer
    camera.matrix_world = (camera.matrix_world @ Matrix.Translation((0.0, 0.0, -0.2))
                           @ Matrix.Rotation(0.6, 4, "Y") @ Matrix.Rotation(-0.7, 4, "X"))
    bpy.context.view_layer.update()
    ndc = _head_centre_ndc(scene, rig_root)
    assert _agreement(scene, rig_root, tmp_path) >= AGREEMENT_PSNR_DB


def _render_small(scene, path) -> np.ndarray:
    scene.render.resolution_x = scene.render.resolution_y = 96
    return _eevee_frame(scene, path)


def test_eevee_splats_follow_the_jaw_and_the_shape_keys(rig_root, avatar, tmp_path):
    _, rig = avatar
    scene = bpy.context.scene
    head, splats = _children(rig_root)
    rest = _render_small(scene, tmp_path / "rest.png")
    rig_root.pose.bones["jaw"].rotation_quaternion = (np.cos(0.2), np.sin(0.2), 0.0, 0.0)
    jaw = _render_small(scene, tmp_path / "jaw.png")
    rig_root.pose.bones["jaw"].rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    head.data.shape_keys.key_blocks[rig["expression_names"][0]].value = 3.0
    expression = _render_small(scene, tmp_path / "expression.png")
    head.data.shape_keys.key_blocks[rig["expression_names"][0]].value = 0.0
    again = _render_small(scene, tmp_path / "again.png")
    assert rest[..., 3].max() > 0.9
    np.testing.assert_allclose(again, rest, atol=1e-6)  # deterministic: a change is the rig's doing
    for moved in (jaw, expression):
        changed = np.abs(moved - rest).max(-1) > 0.05
        assert 20 < changed.sum() < 0.5 * (rest[..., 3] > 0.5).sum()  # the mouth moves, not the whole head
    assert splats.hide_render  # Render Shot's SERVER mode keeps Blender from drawing them


def test_render_shot_eevee_mode_renders_the_frame_range(rig_root, avatar, tmp_path):
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 96
    scene.render.engine = "CYCLES"
    scene.frame_start, scene.frame_end = 1, 2
    jaw = rig_root.pose.bones["jaw"]
    for frame, angle in ((1, 0.0), (2, 0.4)):
        jaw.rotation_quaternion = (np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0)
        jaw.keyframe_insert("rotation_quaternion", frame=frame)
    scene.render.filepath = str(tmp_path / "eevee_shot" / "shot_")
    bpy.ops.headsplat.disconnect()  # no server needed after the import
    assert bpy.ops.headsplat.render_shot(mode="EEVEE") == {"FINISHED"}
    frames = [_read_premultiplied(tmp_path / "eevee_shot" / f"shot_{f:04d}.png") for f in (1, 2)]
    assert all(f[..., 3].max() > 0.9 for f in frames)
    assert np.abs(frames[1] - frames[0]).max() > 0.1  # the jaw opened between the frames
    _, splats = _children(rig_root)
    assert scene.render.engine == "CYCLES" and splats.hide_render  # the scene is as it was


def test_gaussian_boxes_are_the_posed_gaussians(rig_root, avatar):
    """Each instance transform is [R diag(scale) | mean] of shared.splat_format.pose_splats
    on the evaluated head (no blur: Pixel Angle 0), so the material's box coordinates are
    the Gaussian's whitened ones."""
    _, rig = avatar
    _pose_expression_and_jaw(rig_root, rig)
    head, splats = _children(rig_root)
    gn = bh.addon_module("scene_import.geometry_nodes")
    gn.set_input(splats, gn.INPUT_PIXEL_ANGLE, 0.0)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = head.evaluated_get(depsgraph).to_mesh()
    vertices = np.empty(3 * len(mesh.vertices), np.float32)
    mesh.vertices.foreach_get("co", vertices)
    head.evaluated_get(depsgraph).to_mesh_clear()
    local = LocalSplats.from_arrays(dict(np.load(bh.shared_server().data_dir / "avatars" / rig_root[
        "headsplat_avatar_id"] / "splats.npz")))
    means, quats, scales = bh.addon_module("scene_import.splat_layout").posed_reference(
        local, vertices.reshape(-1, 3).astype(np.float64), rig["faces"])
    expected = quat_to_matrix(quats) * scales[:, None, :]
    to_object = np.linalg.inv(np.array(splats.matrix_world))
    got = np.array([to_object @ np.array(inst.matrix_world) for inst in depsgraph.object_instances
                    if inst.is_instance and inst.parent is not None and inst.parent.original == splats])
    assert len(got) == local.count
    order = np.lexsort(got[:, :3, 3].T)  # instances and splats in the same order (by mean)
    reference = np.lexsort(means.T)
    np.testing.assert_allclose(got[order, :3, 3], means[reference], atol=2e-6)
    np.testing.assert_allclose(got[order, :3, :3], expected[reference], atol=1e-6)

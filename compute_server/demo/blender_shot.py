"""The demo's Blender part, run in its own process: install the add-on into a throw-away
Blender profile, import the avatar as a rig, key it with a motion, light a small set,
render the shot with the server's splat frames composited by Blender, save the .blend.

    python -m compute_server.demo.blender_shot --endpoint tcp://... --avatar av_... \
        --motion motion.npz --out DIR [--frames 24] [--size 360]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_MODULE = "headsplat_demo"
# Exit status meaning "Blender (bpy) is not importable here": the demo skips this step on
# it instead of failing, since Blender is an optional part of `headsplat demo`.
EXIT_NO_BLENDER = 3
BLENDER_INSTALL_HINT = "pip install 'headsplat[blender]' (./dev.sh demo installs it)"


def _install_addon(bpy, work: Path) -> str:
    """Build the extension zip for this platform and install it like a user would."""
    dist = work / "dist"
    built = subprocess.run([sys.executable, str(REPO_ROOT / "build_addon.py"), "--platforms", "current",
                            "--out", str(dist), "--wheel-cache", str(REPO_ROOT / ".cache" / "wheels"),
                            "--no-validate"], capture_output=True, text=True, cwd=REPO_ROOT)
    if built.returncode != 0:
        raise RuntimeError(f"building the add-on failed:\n{built.stdout}\n{built.stderr}")
    extension = Path(built.stdout.split()[0])
    repo_dir = work / "extensions"
    repo_dir.mkdir()
    bpy.context.preferences.extensions.repos.new(name="HeadSplat demo", module=REPO_MODULE,
                                                 custom_directory=str(repo_dir), source="USER")
    result = bpy.ops.extensions.package_install_files(filepath=str(extension), repo=REPO_MODULE,
                                                      enable_on_install=True)
    package = f"bl_ext.{REPO_MODULE}.headsplat"
    if result != {"FINISHED"} or bpy.context.preferences.addons.get(package) is None:
        raise RuntimeError(f"installing {extension.name} into Blender failed: {result}")
    return package


def _set_stage(bpy, rig_root, size: int) -> None:
    """A backdrop, a key and a fill light, and a camera framing the head."""
    import mathutils

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.film_transparent = False
    world = bpy.data.worlds.new("Demo World")
    if bpy.app.version < (5, 0, 0):  # 5.0+ always uses node trees
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.18, 0.2, 0.24, 1.0)
    scene.world = world
    head_z = rig_root.matrix_world.translation.z
    bpy.ops.mesh.primitive_plane_add(size=3.0, location=(0.0, 0.45, head_z), rotation=(1.5708, 0.0, 0.0))
    backdrop = bpy.context.object
    backdrop.name = "Backdrop"
    material = bpy.data.materials.new("Backdrop")
    if bpy.app.version < (5, 0, 0):  # 5.0+ always uses node trees
        material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.55, 0.35, 0.25, 1.0)
    backdrop.data.materials.append(material)
    for name, location, energy in (("Key", (1.2, -1.5, head_z + 1.2), 250.0), ("Fill", (-1.5, -1.0, head_z + 0.3), 80.0)):
        light = bpy.data.lights.new(name, "AREA")
        light.energy = energy
        light.size = 1.0
        obj = bpy.data.objects.new(name, light)
        obj.location = location
        obj.rotation_euler = (mathutils.Vector((0, 0, head_z)) - obj.location).to_track_quat("-Z", "Y").to_euler()
        scene.collection.objects.link(obj)
    camera = bpy.data.objects.new("Demo Camera", bpy.data.cameras.new("Demo Camera"))
    camera.data.lens = 85.0
    camera.location = (0.22, -0.78, head_z + 0.03)
    camera.rotation_euler = (mathutils.Vector((0, 0, head_z)) - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(camera)
    scene.camera = camera


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--avatar", required=True)
    parser.add_argument("--motion", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=360)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="headsplat-demo-blender-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(work / "user")  # never touch the user's own Blender profile
    try:
        try:
            import bpy
        except ImportError as exc:
            print(f"Blender is not importable as a Python module ({exc}); to include this step: "
                  f"{BLENDER_INSTALL_HINT}", file=sys.stderr)
            return EXIT_NO_BLENDER
        package = _install_addon(bpy, work)
        prefs = bpy.context.preferences.addons[package].preferences
        prefs.endpoint = args.endpoint
        prefs.start_local_server = False
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        scene.render.fps = 24
        bpy.ops.headsplat.connect(wait="WAIT")
        bpy.ops.headsplat.import_avatar(avatar_id=args.avatar, wait="WAIT")
        rig_root = next(o for o in scene.objects if o.get("headsplat_avatar_id") == args.avatar)
        bpy.ops.headsplat.import_motion(filepath=str(args.motion), target=rig_root.name, first_frame=1)
        scene.frame_start, scene.frame_end = 1, args.frames
        _set_stage(bpy, rig_root, args.size)
        args.out.mkdir(parents=True, exist_ok=True)
        scene.render.filepath = str(args.out / "shot_")
        scene.render.image_settings.file_format = "PNG"
        bpy.ops.headsplat.render_shot(wait="WAIT")       # splat frames from the server + compositor setup
        bpy.ops.render.render(animation=True)            # Blender's own render, composited (the F12 result)
        bpy.ops.wm.save_as_mainfile(filepath=str(args.out / "demo.blend"))
        print(f"blender shot: {args.frames} frames in {args.out}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Ground-truth renders of the head scan with Blender's Cycles (bpy, headless).

    python -m bench.gt_render SPEC.json OUT_DIR

SPEC.json is a ``GroundTruthSpec`` (``bench.quality`` writes it and caches the output);
OUT_DIR receives ``view_000.png``... (RGBA, 8-bit sRGB, transparent film: the alpha is the
exact foreground) and ``manifest.json``.

The scene is fixed so every view of every run sees the same lit surface:
- the scan, imported with Blender's glTF importer (Y-up glTF -> Z-up Blender, which is
  ``shared.camera.HEAD_TO_BLENDER``, so scan space maps to Blender like head space does),
  cut with a plane at the base of the neck (a head on a cut neck, like the avatar); the cut
  is capped with a holdout surface, transparent in the renders but hiding the inside of
  the neck, so a view from below sees what it would see of the avatar;
- a skin-tone clay material (the scan has no texture): mostly diffuse, a little specular;
- three sun lights fixed to the head (key upper front left, fill right, rim behind) and a
  dim uniform world colour so shadows are not black; no HDRI;
- Cycles on the CPU, a fixed seed, few samples and OpenImageDenoise when Blender has it,
  'Standard' view transform (plain sRGB, no filmic curve).
Cameras come as HeadSplat ``Camera`` maps in scan space and go through
``shared.camera.camera_to_blender``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Linear-light base colour of the clay (a light skin tone) and the lights: (azimuth deg,
# elevation deg, strength in W/m^2) in head space, azimuth 0 = in front, + = subject's left.
SKIN_LINEAR_RGB = (0.62, 0.39, 0.30)
LIGHTS = (("key", 35.0, 30.0, 3.2), ("fill", -50.0, 10.0, 1.2), ("rim", 170.0, 35.0, 2.0))
WORLD_LINEAR_RGB = (0.07, 0.07, 0.075)


@dataclass
class GroundTruthSpec:
    """Everything that determines the renders (hashed for the cache).

    scan_path: the glTF file; neck_cut_y: cut plane height in scan units (glTF Y);
    cameras: wire-format ``Camera`` maps in scan space; samples: Cycles samples per pixel.
    """

    scan_path: str
    neck_cut_y: float
    cameras: list[dict]
    samples: int = 32
    seed: int = 0
    skin_linear_rgb: tuple = SKIN_LINEAR_RGB
    lights: tuple = LIGHTS
    world_linear_rgb: tuple = WORLD_LINEAR_RGB
    version: int = 2
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GroundTruthSpec":
        data = json.loads(text)
        data["skin_linear_rgb"] = tuple(data["skin_linear_rgb"])
        data["lights"] = tuple(tuple(light) for light in data["lights"])
        data["world_linear_rgb"] = tuple(data["world_linear_rgb"])
        return cls(**data)


def _import_scan(bpy, path: str):
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path)
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    if len(meshes) != 1:
        raise ValueError(f"{path}: expected one mesh, found {len(meshes)}")
    for obj in list(bpy.context.scene.objects):  # the file's own camera/lamp empties
        if obj.type != "MESH":
            bpy.data.objects.remove(obj, do_unlink=True)
    return meshes[0]


def cut_neck(obj, cut_height: float) -> int:
    """Delete everything below z = cut_height (Blender axes = scan y) and close the hole
    with a cap whose faces get material slot 1 (a holdout: transparent, but it hides the
    inside of the neck). -> the number of cap faces. ``obj`` must have an identity world
    matrix (the glTF importer bakes the axis change into the vertices)."""
    import bmesh

    bm = bmesh.new()
    bm.from_mesh(obj.data)
    # glTF splits vertices along UV seams; weld them so the surface is closed and the cut
    # is one loop (the scan has no texture to keep the seams for)
    bmesh.ops.remove_doubles(bm, verts=list(bm.verts), dist=1e-6)
    geom = list(bm.verts) + list(bm.edges) + list(bm.faces)
    result = bmesh.ops.bisect_plane(bm, geom=geom, plane_co=(0.0, 0.0, cut_height), plane_no=(0.0, 0.0, 1.0),
                                    clear_inner=True)
    cut_edges = [e for e in result["geom_cut"] if isinstance(e, bmesh.types.BMEdge) and e.is_boundary]
    cap = bmesh.ops.holes_fill(bm, edges=cut_edges, sides=0)["faces"] if cut_edges else []
    for face in bm.faces:
        face.material_index = 0
    for face in cap:
        face.material_index = 1
    bmesh.ops.recalc_face_normals(bm, faces=list(bm.faces))
    bm.to_mesh(obj.data)
    bm.free()
    obj.data.update()
    return len(cap)


def _holdout_material(bpy):
    """Cut surfaces are not part of the head: alpha 0 where they are seen, like the avatar,
    which has no surface below the cut either."""
    mat = bpy.data.materials.new("headsplat_cut")
    if bpy.app.version < (5, 0, 0):  # 5.0+ always uses node trees
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    holdout = nodes.new("ShaderNodeHoldout")
    output = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(holdout.outputs["Holdout"], output.inputs["Surface"])
    return mat


def _clay_material(bpy, rgb):
    mat = bpy.data.materials.new("headsplat_clay")
    if bpy.app.version < (5, 0, 0):  # 5.0+ always uses node trees
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.6
    bsdf.inputs["Specular IOR Level"].default_value = 0.25
    return mat


def _add_sun(bpy, name: str, azimuth_deg: float, elevation_deg: float, strength: float) -> None:
    from mathutils import Vector

    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    # head space direction towards the light, then to Blender axes (x, -z, y)
    x, y, z = math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)
    towards_light = Vector((x, -z, y))
    light = bpy.data.lights.new(name, "SUN")
    light.energy = strength
    light.angle = math.radians(8.0)  # slightly soft shadows
    obj = bpy.data.objects.new(name, light)
    obj.rotation_euler = (-towards_light).to_track_quat("-Z", "Y").to_euler()  # a sun shines along its -Z
    bpy.context.scene.collection.objects.link(obj)


def _setup_render(bpy, spec: GroundTruthSpec) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = spec.samples
    scene.cycles.seed = spec.seed
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = True
    try:
        scene.cycles.denoiser = "OPENIMAGEDENOISE"
    except TypeError:  # a build without OIDN: render without denoising
        scene.cycles.use_denoising = False
    scene.render.film_transparent = True
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    world = bpy.data.worlds.new("headsplat_world")
    if bpy.app.version < (5, 0, 0):  # 5.0+ always uses node trees
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (*spec.world_linear_rgb, 1.0)
    scene.world = world


def _place_camera(bpy, cam_obj, camera_map: dict) -> None:
    from mathutils import Matrix

    from shared.camera import Camera, camera_to_blender

    data = camera_to_blender(Camera.from_wire(camera_map))
    cam = cam_obj.data
    cam_obj.matrix_world = Matrix([list(row) for row in data.matrix_world])
    cam.lens = data.lens_mm
    cam.sensor_width = data.sensor_width_mm
    cam.sensor_height = data.sensor_height_mm
    cam.sensor_fit = data.sensor_fit
    cam.shift_x, cam.shift_y = data.shift_x, data.shift_y
    cam.clip_start, cam.clip_end = data.clip_start, data.clip_end
    render = bpy.context.scene.render
    render.resolution_x, render.resolution_y = data.resolution_x, data.resolution_y
    render.pixel_aspect_x, render.pixel_aspect_y = data.pixel_aspect_x, data.pixel_aspect_y


def render_ground_truth(spec: GroundTruthSpec, out_dir: Path, log=print) -> list[Path]:
    """Render every camera of ``spec`` into ``out_dir``; -> the PNG paths, in order."""
    import bpy

    out_dir.mkdir(parents=True, exist_ok=True)
    scan = _import_scan(bpy, spec.scan_path)
    scan.data.materials.clear()
    scan.data.materials.append(_clay_material(bpy, spec.skin_linear_rgb))
    scan.data.materials.append(_holdout_material(bpy))
    if cut_neck(scan, spec.neck_cut_y) == 0:
        raise ValueError(f"cutting the scan at y = {spec.neck_cut_y} left no hole to cap: is it below the scan?")
    for polygon in scan.data.polygons:
        polygon.use_smooth = True
    _setup_render(bpy, spec)
    for name, az, el, strength in spec.lights:
        _add_sun(bpy, name, az, el, strength)
    cam_obj = bpy.data.objects.new("gt_camera", bpy.data.cameras.new("gt_camera"))
    bpy.context.scene.collection.objects.link(cam_obj)
    bpy.context.scene.camera = cam_obj
    paths = []
    for i, camera_map in enumerate(spec.cameras):
        started = time.perf_counter()
        _place_camera(bpy, cam_obj, camera_map)
        path = out_dir / f"view_{i:03d}.png"
        bpy.context.scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        paths.append(path)
        log(f"ground truth {i + 1}/{len(spec.cameras)}: {path.name} in {time.perf_counter() - started:.1f} s")
    (out_dir / "manifest.json").write_text(json.dumps({"spec": json.loads(spec.to_json()),
                                                       "views": [p.name for p in paths],
                                                       "blender": bpy.app.version_string}, indent=1))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="GroundTruthSpec JSON file")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    render_ground_truth(GroundTruthSpec.from_json(args.spec.read_text()), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

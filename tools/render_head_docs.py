"""Render the built-in head model's documentation images with headless Blender (bpy).

Usage (from the project root, in the project virtualenv):

    python tools/render_head_docs.py --out docs/images/head

writes contact sheets of the neutral head (front, three-quarter, profile, back), every
expression component at coefficient 1, jaw and eye poses, and identity extremes (+-3
standard deviations), each tile 256 x 256 with a caption. Workbench engine, studio
light, a clay material per mesh region, orthographic cameras; deterministic for a given
model and Blender version. The renderer lives outside ``compute_server`` because the
server never imports bpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TILE = 256
# (azimuth about +Y in degrees, 0 = looking at the face, positive = towards the subject's left)
VIEWS = {"front": 0.0, "three_quarter": 35.0, "profile": 90.0, "back": 180.0}
SKIN = (0.80, 0.62, 0.52)
# every skin region in one clay colour (so region borders are not mistaken for seams) ...
REGION_COLOURS = {
    "face": SKIN, "scalp": SKIN, "neck": SKIN, "ear": SKIN, "neck_base": SKIN, "head": SKIN,
    "eyeball": (0.95, 0.95, 0.93), "iris": (0.25, 0.35, 0.45), "mouth_interior": (0.45, 0.12, 0.12),
    "teeth": (0.97, 0.96, 0.90), "eye_socket": (0.20, 0.10, 0.10),
}
# ... and one colour per region for the region map
REGION_MAP_COLOURS = {
    "face": (0.85, 0.62, 0.50), "scalp": (0.45, 0.55, 0.80), "neck": (0.55, 0.75, 0.50), "ear": (0.90, 0.80, 0.35),
    "neck_base": (0.55, 0.55, 0.55), "eyeball": (0.95, 0.95, 0.93), "iris": (0.25, 0.35, 0.45),
    "mouth_interior": (0.45, 0.12, 0.12), "teeth": (0.97, 0.96, 0.90), "eye_socket": (0.20, 0.10, 0.10),
}


def _setup_scene(size: int):
    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.film_transparent = False
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "MATERIAL"
    shading.show_cavity = False
    shading.show_specular_highlight = False
    scene.display.render_aa = "8"
    scene.render.image_settings.file_format = "PNG"
    world = bpy.data.worlds.new("bg")
    scene.world = world
    world.color = (0.93, 0.93, 0.93)
    scene.view_settings.view_transform = "Standard"
    return scene


def _materials(region_names: list[str], colours: dict):
    import bpy
    mats = []
    for name in region_names:
        mat = bpy.data.materials.new(f"region_{name}")
        rgb = colours.get(name, (0.8, 0.8, 0.8))
        mat.diffuse_color = (*rgb, 1.0)
        mats.append(mat)
    return mats


def _head_to_blender(vertices: np.ndarray) -> np.ndarray:
    from shared.camera import HEAD_TO_BLENDER
    return vertices @ HEAD_TO_BLENDER[:3, :3].T


def render_meshes(items: list[dict], region_names: list[str], out_dir: str, size: int = TILE,
                  ortho_scale: float = 0.34, centre=(0.0, -0.03, 0.0), colours: dict | None = None) -> list[str]:
    """Render each item {"name", "vertices" (V, 3) head space, "faces" (F, 3), "face_region" (F,),
    "view"} to ``out_dir/<name>.png``; returns the paths."""
    import bpy
    scene = _setup_scene(size)
    mats = _materials(region_names, REGION_COLOURS if colours is None else colours)
    cam_data = bpy.data.cameras.new("cam")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = ortho_scale
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    paths = []
    for item in items:
        mesh = bpy.data.meshes.new(item["name"])
        verts = _head_to_blender(np.asarray(item["vertices"], dtype=np.float64))
        faces = np.asarray(item["faces"], dtype=np.int64)
        mesh.from_pydata(verts.tolist(), [], faces.tolist())
        for mat in mats:
            mesh.materials.append(mat)
        mesh.polygons.foreach_set("material_index", np.asarray(item["face_region"], dtype=np.int32))
        mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
        obj = bpy.data.objects.new(item["name"], mesh)
        scene.collection.objects.link(obj)
        azimuth = np.radians(VIEWS[item.get("view", "front")])
        distance = 1.0
        target = _head_to_blender(np.asarray(centre, dtype=np.float64)[None])[0]
        # camera on a circle around +Y (head) = +Z (Blender); azimuth 0 looks at the face (-Y in Blender)
        cam.location = (target[0] + distance * np.sin(azimuth), target[1] - distance * np.cos(azimuth), target[2])
        cam.rotation_euler = (np.pi / 2, 0.0, azimuth)
        path = os.path.join(out_dir, f"{item['name']}.png")
        scene.render.filepath = path
        bpy.ops.render.render(write_still=True)
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        paths.append(path)
    return paths


def contact_sheet(tiles: list[tuple[str, str]], columns: int, out_path: str, tile: int = TILE) -> None:
    """Paste (caption, png path) tiles into a grid with captions under each tile."""
    from PIL import Image, ImageDraw
    rows = (len(tiles) + columns - 1) // columns
    caption_h = 18
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (caption, path) in enumerate(tiles):
        r, c = divmod(k, columns)
        with Image.open(path) as img:
            sheet.paste(img.convert("RGB").resize((tile, tile)), (c * tile, r * (tile + caption_h)))
        text_w = draw.textlength(caption)
        draw.text((c * tile + (tile - text_w) / 2, r * (tile + caption_h) + tile + 3), caption, fill=(20, 20, 20))
    # a 256-colour palette keeps the committed sheets small; clay renders lose nothing visible
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out_path, optimize=True)


def _pose(model, **overrides) -> np.ndarray:
    import torch
    from compute_server.head.model import HeadParams
    params = HeadParams.zeros(model, dtype=torch.float64)
    for key, value in overrides.items():
        field = getattr(params, key)
        field[0] = torch.as_tensor(value, dtype=torch.float64)
    with torch.no_grad():
        return model(params).vertices[0].numpy()


def build_items(model) -> dict[str, list[tuple[str, dict]]]:
    """The groups of (caption, render item) for each contact sheet."""
    faces = model.faces.numpy()
    regions = model.face_region.numpy()
    item = lambda name, verts, view: {"name": name, "vertices": verts, "faces": faces,  # noqa: E731
                                      "face_region": regions, "view": view}
    groups: dict[str, list[tuple[str, dict]]] = {}
    neutral = _pose(model)
    groups["neutral"] = [(view, item(f"neutral_{view}", neutral, view)) for view in VIEWS]
    groups["regions"] = [(f"regions {view}", item(f"regions_{view}", neutral, view)) for view in ("front", "profile")]
    expr = []
    for k, name in enumerate(model.expression_names):
        coeffs = np.zeros(model.n_expr)
        coeffs[k] = 1.0
        verts = _pose(model, expr=coeffs)
        view = "three_quarter" if name in ("cheek_puff", "lip_pucker", "lip_funnel") else "front"
        expr.append((name, item(f"expr_{name}", verts, view)))
    groups["expressions"] = expr
    poses = [
        ("jaw_pose 0.3 rad", _pose(model, jaw_pose=[0.3, 0, 0]), "front"),
        ("jaw_pose 0.3 rad", _pose(model, jaw_pose=[0.3, 0, 0]), "three_quarter"),
        ("eyes_pose: look left", _pose(model, eyes_pose=[0, 0.35, 0, 0, 0.35, 0]), "front"),
        ("eyes_pose: look up", _pose(model, eyes_pose=[-0.3, 0, 0, -0.3, 0, 0]), "front"),
        ("neck_pose: turn", _pose(model, neck_pose=[0, 0.5, 0]), "front"),
        ("neck_pose: nod", _pose(model, neck_pose=[0.35, 0, 0]), "profile"),
    ]
    groups["poses"] = [(cap, item(f"pose_{k}", v, view)) for k, (cap, v, view) in enumerate(poses)]
    ident = []
    for k, name in enumerate(model.shape_names):
        for sign in (-3, 3):
            coeffs = np.zeros(model.n_shape)
            coeffs[k] = sign
            view = "profile" if name in ("head_length", "chin_protrusion", "nose_protrusion", "forehead_slope") else "front"
            ident.append((f"{name} {sign:+d}", item(f"shape_{name}_{sign:+d}", _pose(model, shape=coeffs), view)))
    groups["identity"] = ident
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "head"))
    parser.add_argument("--model", default="builtin", help="'builtin' or a FLAME .pkl")
    args = parser.parse_args(argv)
    import torch
    from compute_server.head.model import load_head_model
    model = load_head_model(args.model).to(torch.float64)
    os.makedirs(args.out, exist_ok=True)
    groups = build_items(model)
    columns = {"neutral": 4, "regions": 2, "expressions": 6, "poses": 6, "identity": 6}
    framing = {"expressions": (0.22, (0.0, -0.035, 0.0))}
    with tempfile.TemporaryDirectory() as tmp:
        for group, entries in groups.items():
            scale, centre = framing.get(group, (0.36, (0.0, -0.035, 0.0)))
            colours = REGION_MAP_COLOURS if group == "regions" else REGION_COLOURS
            paths = render_meshes([e[1] for e in entries], model.region_names, tmp, ortho_scale=scale, centre=centre,
                                  colours=colours)
            contact_sheet([(cap, p) for (cap, _), p in zip(entries, paths)], columns[group],
                          os.path.join(args.out, f"{group}.png"))
            print(f"wrote {group}.png ({len(entries)} tiles)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

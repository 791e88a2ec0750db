"""Quality on real portraits (no ground truth for other views): how well the avatar
reproduces its photo, and whether its novel views still look like the same person.

For every portrait in ../shared/data/portraits plus scikit-image's astronaut: an avatar is
made (one photo), then rendered
- at the photo's own camera (``camera_for_source_image``: the uncropped photo, at most
  ``RENDER_MAX_SIDE`` pixels): PSNR/SSIM against the photo over the avatar's silhouette
  (render alpha > 0.5; the render composited over the photo, so soft edges compare with
  what is behind them). The server's own figure (on its aligned training crop, over the
  photo's matte within the head region) is printed beside it;
- at yaw 0, +-20, +-40 degrees (the portrait camera's distance, around the head): the dlib
  face-descriptor distance (``bench/identity.py``) to its own photo, and whether the own
  photo is closer than every other portrait of the gallery (dlib's "same person"
  threshold is 0.6).
Run through ``python -m bench.quality --portraits`` (shares its server and options).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.fit import astronaut_bytes
from bench.identity import SAME_PERSON_THRESHOLD, composite_on, face_descriptor, identity_distance
from bench.metrics import mask_bbox, masked_psnr, masked_ssim
from bench.quality_avatars import create_avatar, render_views
from bench.quality_figures import grid_figure, square_crop

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = ROOT.parent / "shared" / "data" / "portraits"
YAWS = (0, -20, 20, -40, 40)
RENDER_MAX_SIDE = 512
YAW_RENDER_SIZE = 384


def gallery() -> dict[str, bytes]:
    """Portrait file name -> bytes: the astronaut and every JPEG of the shared portraits."""
    photos = {"astronaut.png": astronaut_bytes()}
    photos.update({p.name: p.read_bytes() for p in sorted(PORTRAITS.glob("*.jpg"))})
    return photos


def decode_rgb(data: bytes) -> np.ndarray:
    from PIL import ImageOps

    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(16, round(width * scale)), max(16, round(height * scale))


def yaw_cameras(created, size: int) -> list:
    """The portrait (crop) camera's distance and intrinsics, orbiting the head's centre."""
    from compute_server.views.sampling import head_centre, orbit_like
    from shared.camera import Camera

    portrait = Camera.from_wire(created.metadata["portrait_camera"]).resized(size, size)
    centre = head_centre(np.asarray(created.rig["rest_vertices"], np.float64))
    return [orbit_like(portrait, centre, yaw, 0.0) for yaw in YAWS]


def input_view_scores(photo_rgb: np.ndarray, render_rgba: np.ndarray) -> tuple[float, float, np.ndarray]:
    """PSNR, SSIM of the avatar over its silhouette at the photo's camera, and the
    (H, W, 3) float comparison image (render over the photo)."""
    h, w = render_rgba.shape[:2]
    photo = np.asarray(Image.fromarray(photo_rgb).resize((w, h), Image.LANCZOS), np.float64) / 255.0
    alpha = render_rgba[..., 3:4].astype(np.float64)
    over_photo = render_rgba[..., :3] * alpha + photo * (1 - alpha)
    mask = render_rgba[..., 3] > 0.5
    return masked_psnr(over_photo, photo, mask), masked_ssim(over_photo, photo, mask), over_photo


def run_one(client, name: str, data: bytes, args, descriptors: dict, log=print) -> dict:
    options = {k: v for k, v in (("iterations", args.iterations), ("image_size", args.image_size)) if v}
    created = create_avatar(client, name, data, preset=args.preset, seed=args.seed, options=options, log=log)
    source = created.source_camera()
    source = source.resized(*fitted_size(source.width, source.height, RENDER_MAX_SIDE))
    renders = render_views(client, created, [source])
    renders += render_views(client, created, yaw_cameras(created, YAW_RENDER_SIZE))
    photo = decode_rgb(data)
    psnr, ssim, over_photo = input_view_scores(photo, renders[0].rgba)
    rows, cols = mask_bbox(renders[0].rgba[..., 3] > 0.5, margin=max(4, renders[0].rgba.shape[0] // 20))
    own = descriptors[name]
    identity = []
    for yaw, render in zip(YAWS, renders[1:]):
        d = face_descriptor(composite_on(render.rgba))
        if d is None or own is None:
            identity.append({"yaw": yaw, "distance": None, "nearest_other": None, "own_closest": None})
            continue
        others = {n: identity_distance(d, v) for n, v in descriptors.items() if n != name and v is not None}
        nearest = min(others, key=others.get)
        own_d = identity_distance(d, own)
        identity.append({"yaw": yaw, "distance": own_d, "nearest_other": nearest,
                         "nearest_other_distance": others[nearest], "own_closest": own_d < others[nearest]})
    metrics = created.result["metrics"]
    log(f"  {name}: {created.seconds:.0f} s, input view PSNR {psnr:.2f} dB SSIM {ssim:.4f}")
    return {"name": name, "seconds": created.seconds, "splats": created.result["splats"],
            "server_input_psnr_db": metrics.get("input_psnr_db"), "server_input_ssim": metrics.get("input_ssim"),
            "input_psnr_db": psnr, "input_ssim": ssim, "identity": identity,
            "tiles": [photo, square_crop(over_photo, rows, cols)] + [composite_on(r.rgba) for r in renders[1:]]}


def print_tables(rows: list[dict], args) -> None:
    print(f"\n## Real portraits: preset {args.preset}, device {args.device}, {time.strftime('%Y-%m-%d')}")
    print("\n| portrait | create (s) | Gaussians | input PSNR, photo's camera (dB) | SSIM | server's input PSNR "
          "(crop) | SSIM |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['seconds']:.0f} | {r['splats']} | {r['input_psnr_db']:.2f} | {r['input_ssim']:.4f} "
              f"| {r['server_input_psnr_db']:.2f} | {r['server_input_ssim']:.4f} |")
    print(f"\nidentity distance (dlib) of renders to the own photo; * = own photo is the closest of the "
          f"{len(rows)} portraits; same person below {SAME_PERSON_THRESHOLD}")
    print("| portrait | " + " | ".join(f"yaw {y:+d}" for y in YAWS) + " | own closest |")
    print("|---|" + "---:|" * len(YAWS) + ":---:|")
    for r in rows:
        cells = ["no face" if i["distance"] is None else f"{i['distance']:.3f}{'*' if i['own_closest'] else ''}"
                 for i in r["identity"]]
        closest = sum(1 for i in r["identity"] if i["own_closest"])
        print(f"| {r['name']} | " + " | ".join(cells) + f" | {closest}/{len(YAWS)} |")


def portraits_figure(rows: list[dict], path: Path) -> Path:
    def square(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return image[top:top + side, left:left + side]

    grid = [[square(t) for t in r["tiles"]] for r in rows]
    labels = ["photo", "avatar over photo"] + [f"yaw {y:+d}" for y in YAWS]
    return grid_figure(grid, path, tile_px=128, column_labels=labels, row_labels=[r["name"] for r in rows])


def run_portraits(client, args, log=print) -> list[dict]:
    photos = gallery()
    descriptors = {name: face_descriptor(decode_rgb(data)) for name, data in photos.items()}
    missing = [n for n, d in descriptors.items() if d is None]
    if missing:
        log(f"dlib finds no face in {', '.join(missing)}: identity is not measured against them")
    rows = []
    for name, data in photos.items():
        log(f"\n[portrait] {name}: creating an avatar ({args.preset})")
        rows.append(run_one(client, name, data, args, descriptors, log))
    print_tables(rows, args)
    figure = portraits_figure(rows, args.figures / "portraits_grid.png")
    print(f"\nfigure: {figure} ({figure.stat().st_size / 1e3:.0f} kB)")
    return [{k: v for k, v in r.items() if k != "tiles"} for r in rows]

"""Does the back of the head read as hair? Texture and colour of the avatar seen from
behind, against the hair the photo shows.

For each portrait: the photo's visible hair (the scalp the photo sees well, unlike the
skin: ``views.scalp_texture.visible_hair``) gives a reference texture energy (the mean
standard deviation of luminance in 7 x 7 windows that lie wholly inside the region) and
mean colour. From behind (yaw 150, 180 and 210 degrees), the head's scalp region (the
posed mesh's scalp faces, where the avatar's alpha > 0.5) gets the same two figures. A
bald mannequin scores a texture ratio near 0 and a colour distance of the skin-to-hair
difference; hair copied from the photo scores a ratio near 1 and a small distance.

Two modes: ``--views`` measures the training views the optimizer is given for those
yaws (seconds per portrait, no optimization); by default an avatar is made (``--preset``,
``--iterations``) and its renders are measured.

    python -m bench.back_views [PHOTO ...] [--views [--baseline]] [--preset draft] [--iterations N]
                               [--images DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import glob
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench.fit import PORTRAITS, load_photo

BACK_YAWS = (150.0, 180.0, 210.0)
WINDOW_PX = 7


def texture_energy(gray: np.ndarray, mask: np.ndarray, size: int = WINDOW_PX) -> float:
    """Mean local standard deviation of ``gray`` (H, W) in size x size windows wholly
    inside ``mask`` (H, W) bool; nan where no window fits."""
    mean = ndimage.uniform_filter(gray.astype(np.float64), size)
    square = ndimage.uniform_filter(gray.astype(np.float64) ** 2, size)
    inside = ndimage.minimum_filter(mask.astype(np.uint8), size) > 0
    if not inside.any():
        return float("nan")
    return float(np.sqrt(np.maximum(square - mean * mean, 0.0))[inside].mean())


@dataclass
class BackViewScore:
    photo: str
    hair_pixels: int
    hair_energy: float
    back_energy: float
    energy_ratio: float
    colour_distance: float       # RGB in [0, 1], mean back scalp colour vs mean visible hair colour
    back_pixels: int


def score(photo_name: str, hair_rgb: np.ndarray, hair_mask: np.ndarray, backs: list[tuple[np.ndarray, np.ndarray]]
          ) -> BackViewScore:
    """``hair_rgb`` (H, W, 3) with ``hair_mask``; ``backs``: (image (h, w, 3), scalp mask)."""
    hair_energy = texture_energy(hair_rgb.mean(axis=2), hair_mask)
    energies = [texture_energy(img.mean(axis=2), m) for img, m in backs]
    back_pixels = np.concatenate([img[m] for img, m in backs])
    back_energy = float(np.nanmean(energies))
    distance = float(np.linalg.norm(back_pixels.mean(axis=0) - hair_rgb[hair_mask].mean(axis=0)))
    return BackViewScore(photo_name, int(hair_mask.sum()), hair_energy, back_energy, back_energy / hair_energy,
                         distance, len(back_pixels))


def _scalp_mask(vertices, faces, face_region, scalp: int, camera) -> np.ndarray:
    from compute_server.views.surface import render_surface

    surface = render_surface(vertices, faces, [camera])[0]
    return surface.mask & (face_region[np.maximum(surface.face_ids, 0)] == scalp)


def measure_photo(name: str, data: bytes, args) -> tuple[BackViewScore, list[np.ndarray]]:
    """Prepare and fit the photo, then measure the training views or a made avatar."""
    from compute_server.face import prepare_portrait
    from compute_server.head.registry import load_head_model
    from compute_server.pipeline import avatar_create, hair_shells, photo_frames
    from compute_server.pipeline.presets import preset as make_preset
    from compute_server.tracking.portrait_fit import fit_portraits
    from compute_server.views.sampling import head_centre, orbit_like
    from compute_server.views.scalp_texture import visible_hair
    from compute_server.views.surface import render_surface

    preset = make_preset(args.preset, iterations=args.iterations)
    head = load_head_model("builtin", device="cpu")
    portrait = prepare_portrait(data, name, size=preset.image_size)
    fit = fit_portraits(head, [portrait], settings=preset.fit)
    head, _ = hair_shells.with_hair_shell(head, portrait, fit)   # scalp and neck as the pipeline shapes them
    faces, face_region = head.faces.numpy(), head.face_region.numpy()
    scalp = head.region_names.index("scalp")
    params = fit.head_params(0)
    vertices = photo_frames.posed_vertices(head, params)
    camera = fit.images[0].camera
    surface = render_surface(vertices, faces, [camera])[0]
    hair = visible_hair(portrait.image, portrait.matte, camera, surface, face_region, scalp)
    centre = head_centre(vertices)
    cameras = [orbit_like(camera, centre, yaw, 0.0) for yaw in BACK_YAWS]
    if args.views:
        backs = _training_back_views(avatar_create, head, portrait, fit, preset, name, data, cameras, args.baseline)
    else:
        backs = _avatar_back_views(name, data, args, cameras)
    pairs = [(img, _scalp_mask(vertices, faces, face_region, scalp, cam) & (alpha > 0.5))
             for (img, alpha), cam in zip(backs, cameras)]
    return score(name, portrait.image, hair, pairs), [img for img, _ in backs]


def _training_back_views(avatar_create, head, portrait, fit, preset, name, data, cameras, baseline=False):
    """The no-diffusion training views at the back cameras, as the pipeline makes them."""
    class _Quiet:
        device = "cpu"

        def check(self):
            pass

        def report(self, *args, **kwargs):
            pass

    req = avatar_create.AvatarRequest(images=[(name, data)], name="", preset=preset.name, seed=0, diffusion="none",
                                      head_model="builtin")
    _, main = avatar_create._training_views(head, [portrait], fit, preset, req, _Quiet(), _Quiet(), None)
    from compute_server.views.synthesis import ReprojectionSynthesizer

    if baseline:  # what the views were before the scalp texture and the light model
        main.scalp_texture = main.shading = None

    views = ReprojectionSynthesizer().synthesize(main, cameras, weight=1.0)
    return [(v.image, v.mask) for v in views]


def _avatar_back_views(name, data, args, cameras):
    """Make the avatar through a real server in this process and render the back cameras."""
    from bench.quality_avatars import bench_server

    with bench_server("cpu") as client:
        params = {"images": [{"name": name, "data": data}], "preset": args.preset, "seed": 0, "name": name}
        if args.iterations:
            params["options"] = {"iterations": args.iterations}
        created = client.wait_job(client.submit("avatar.create", params), timeout_s=7200)
        frames = []
        job = client.submit("render.frames", {"avatar": created["avatar"], "cameras": [c.to_wire() for c in cameras]})
        client.wait_job(job, on_progress=lambda e: frames.append(e["frame"]["data"]) if e.get("frame") else None,
                        timeout_s=600)
    import io

    from PIL import Image

    out = []
    for png in frames:
        rgba = np.asarray(Image.open(io.BytesIO(bytes(png))).convert("RGBA"), np.float32) / 255.0
        out.append((rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]), rgba[..., 3]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", help="photo files, or 'astronaut' (default: it and the shared portraits)")
    parser.add_argument("--views", action="store_true", help="measure the training views, make no avatar")
    parser.add_argument("--baseline", action="store_true",
                        help="with --views: the views without the scalp texture and light model (the earlier fill)")
    parser.add_argument("--preset", default="draft")
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--images", type=Path, help="write each photo's back views here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    photos = args.photos or ["astronaut"] + sorted(glob.glob(str(PORTRAITS / "*.jpg")))
    rows = []
    print("| photo | hair px | hair texture | back texture | ratio | colour distance |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in photos:
        name, data = load_photo(spec)
        row, images = measure_photo(name, data, args)
        rows.append(row)
        print(f"| {row.photo} | {row.hair_pixels} | {row.hair_energy:.4f} | {row.back_energy:.4f} | "
              f"{row.energy_ratio:.2f} | {row.colour_distance:.3f} |", flush=True)
        if args.images:
            from PIL import Image

            args.images.mkdir(parents=True, exist_ok=True)
            strip = np.concatenate(images, axis=1)
            Image.fromarray((np.clip(strip, 0, 1) * 255).astype(np.uint8)).save(args.images / f"back_{Path(name).stem}.png")
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Avatar creation benchmark (issue 4): time, speed and quality of one preset.

For each photo: creates an avatar through a real server (in this process, on loopback),
then renders it from the photo's camera distance at yaw 0, +-20 and +-40 degrees and
measures face-identity distance (dlib) to its own photo and to every other portrait.

    python -m bench.fit --preset draft                      # the astronaut, CPU
    python -m bench.fit --preset standard --device cuda     # on a GPU
    python -m bench.fit --photos ../shared/data/portraits/*.jpg

Prints one table per photo and a summary; ``--figure PATH`` saves the renders as a grid.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.identity import composite_on, face_descriptor, identity_distance

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = ROOT.parent / "shared" / "data" / "portraits"
YAWS = (0, -20, 20, -40, 40)


def astronaut_bytes() -> bytes:
    import skimage.data

    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, "PNG")
    return buf.getvalue()


def load_photo(spec: str) -> tuple[str, bytes]:
    if spec == "astronaut":
        return "astronaut.png", astronaut_bytes()
    return Path(spec).name, Path(spec).read_bytes()


def yaw_cameras(avatar: dict, size: int) -> list:
    from shared.camera import Camera
    from compute_server.views.sampling import head_centre, orbit_like

    portrait = Camera.from_wire(avatar["metadata"]["portrait_camera"]).resized(size, size)
    centre = head_centre(np.asarray(avatar["arrays"]["rig"]["rest_vertices"]))
    return [orbit_like(portrait, centre, yaw, 0.0) for yaw in YAWS]


def run_one(client, name: str, data: bytes, args) -> dict:
    started = time.perf_counter()
    params = {"images": [{"name": name, "data": data}], "preset": args.preset, "seed": args.seed, "name": name}
    if args.iterations or args.size:
        params["options"] = {k: v for k, v in (("iterations", args.iterations), ("image_size", args.size)) if v}
    result = client.wait_job(client.submit("avatar.create", params), timeout_s=24 * 3600)
    total_s = time.perf_counter() - started
    avatar = client.get_avatar(result["avatar"], include=["rig.npz", "fit.npz"])
    n_expr = avatar["metadata"]["head_model"]["n_expr"]
    fit = avatar["arrays"]["fit"]
    cameras = yaw_cameras(avatar, args.render_size)
    frame_params = {key: np.repeat(np.asarray(fit[key])[:1], len(cameras), 0) for key in ("expr", "jaw_pose", "eyes_pose")}
    frames = {}
    job = client.submit("render.frames", {"avatar": result["avatar"], "params": frame_params,
                                          "cameras": [c.to_wire() for c in cameras]})
    client.wait_job(job, on_progress=lambda e: frames.__setitem__(e["frame_index"], e["frame"]["data"])
                    if e.get("frame") else None, timeout_s=3600)
    renders = [composite_on(np.asarray(Image.open(io.BytesIO(bytes(frames[i]))))) for i in range(len(cameras))]
    del n_expr
    return {"name": name, "result": result, "total_s": total_s, "renders": renders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", nargs="*", default=["astronaut"], help="'astronaut' or image paths")
    parser.add_argument("--preset", default="draft")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--render-size", type=int, default=512)
    parser.add_argument("--figure", type=Path, help="save a grid of photo + yaw renders (PNG)")
    args = parser.parse_args()

    from compute_server.server.app import Server
    from compute_server.server.config import ServerConfig
    from compute_server.server.logs import configure_logging
    from shared.client import Client

    configure_logging("WARNING")
    photos = [load_photo(p) for p in args.photos]
    gallery = {"astronaut.png": astronaut_bytes()}
    gallery.update({p.name: p.read_bytes() for p in sorted(PORTRAITS.glob("*.jpg"))})
    descriptors = {name: face_descriptor(np.asarray(Image.open(io.BytesIO(d)).convert("RGB")))
                   for name, d in gallery.items()}
    rows, grid = [], []
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=Path(data_dir), device=args.device))
        server.start_background()
        try:
            with Client(server.endpoint, timeout_s=60) as client:
                for name, data in photos:
                    rows.append(run_one(client, name, data, args))
        finally:
            server.stop()
            server.join(60)
    print(f"\npreset {args.preset}, device {args.device}, {time.strftime('%Y-%m-%d')}")
    for row in rows:
        res = row["result"]
        own = descriptors.get(row["name"]) if row["name"] in descriptors else \
            face_descriptor(np.asarray(Image.open(io.BytesIO(dict(photos)[row["name"]])).convert("RGB")))
        print(f"\n{row['name']}: total {row['total_s']:.1f} s (optimize {res['timings_s']['optimize']:.1f} s, "
              f"{res['metrics']['iterations_per_s']:.2f} it/s), {res['splats']} Gaussians, input PSNR "
              f"{res['metrics']['input_psnr_db']:.2f} dB, SSIM {res['metrics']['input_ssim']:.4f}")
        print("| yaw | identity distance to own photo | nearest other portrait (distance) | own is closest |")
        print("|---:|---:|---|:---:|")
        for yaw, render in zip(YAWS, row["renders"]):
            d = face_descriptor(render)
            if d is None or own is None:
                print(f"| {yaw:+d} | no face found | | |")
                continue
            own_d = identity_distance(d, own)
            others = {n: identity_distance(d, v) for n, v in descriptors.items() if n != row["name"] and v is not None}
            nearest = min(others, key=others.get)
            print(f"| {yaw:+d} | {own_d:.3f} | {nearest} ({others[nearest]:.3f}) | {'yes' if own_d < others[nearest] else 'NO'} |")
        grid.append(np.concatenate([np.asarray(Image.open(io.BytesIO(dict(photos)[row["name"]])).convert("RGB")
                                               .resize(row["renders"][0].shape[1::-1]))] + row["renders"], axis=1))
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(grid, axis=0)).save(args.figure)
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()

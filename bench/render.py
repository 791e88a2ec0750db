"""Render speed of a real avatar (issue 4): frames per second at 512x512 and 1920x1080 for
the avatar's own, final Gaussian count.

    python -m bench.render                              # a quick draft astronaut avatar, CPU
    python -m bench.render --avatar AV_ID --data DIR    # an avatar already in a data directory
    python -m bench.render --device cuda --iterations 0 # GPU; 0: the preset's full optimization

Two figures per size, side by side:
  raster   ``render_avatar`` alone (pose the Gaussians on the mesh, rasterize; no autograd),
           the fastest of ``--repeats`` after a warm-up: what an interactive viewer would get;
  request  a whole ``render.frames`` request through a server on loopback (validation,
           posing a jaw-opening clip, rendering, PNG encoding, streaming every frame back),
           wall time on the client divided by the frame count: what a shot costs.
``bench.raster`` and ``bench.scaling`` measure synthetic scenes of chosen counts; this one
measures the Gaussians an ``avatar.create`` actually left.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.fit import astronaut_bytes
from bench.scaling import fastest_seconds
from shared.camera import Camera

SIZES = ((512, 512), (1920, 1080))


def jaw_clip(n_frames: int, n_expr: int) -> dict[str, np.ndarray]:
    """A clip that opens and closes the jaw, so every frame is posed anew."""
    jaw = np.zeros((n_frames, 3), np.float32)
    jaw[:, 0] = 0.25 * np.sin(np.linspace(0.0, np.pi, n_frames))
    return {"expr": np.zeros((n_frames, n_expr), np.float32), "jaw_pose": jaw,
            "eyes_pose": np.zeros((n_frames, 6), np.float32)}


def raster_seconds(avatar, camera: Camera, device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` poses + renders (after one warm-up) at ``camera``."""
    from compute_server.camera_torch import stack_cameras
    from compute_server.head.model import HeadParams
    from compute_server.splats.render_avatar import render_avatar

    head_model = avatar.head_model
    viewmats, Ks = stack_cameras([camera], device=device)
    hp = HeadParams.zeros(head_model, 1, device=device)
    hp.shape = avatar.shape
    hp.jaw_pose[0, 0] = 0.1

    def pose_and_render():
        vertices = head_model(hp).vertices[0]
        render_avatar(avatar.splats, vertices, head_model.faces, viewmats, Ks, camera.width, camera.height)

    with torch.no_grad():
        return fastest_seconds(pose_and_render, device, repeats)


def request_seconds(client, avatar_id: str, camera: Camera, n_frames: int, n_expr: int) -> float:
    """Client wall time of one render.frames request of ``n_frames`` frames (PNG, streamed)."""
    params = {"avatar": avatar_id, "params": jaw_clip(n_frames, n_expr), "cameras": [camera.to_wire()] * n_frames}
    received = []
    started = time.perf_counter()
    client.wait_job(client.submit("render.frames", params), timeout_s=24 * 3600,
                    on_progress=lambda e: received.append(1) if e.get("frame") else None)
    seconds = time.perf_counter() - started
    if len(received) != n_frames:
        raise SystemExit(f"render.frames streamed {len(received)} of {n_frames} frames")
    return seconds


def make_avatar(client, args) -> str:
    params = {"images": [{"name": "astronaut.png", "data": astronaut_bytes()}], "preset": args.preset,
              "seed": 0, "name": "bench-render"}
    options = {k: v for k, v in (("iterations", args.iterations), ("image_size", args.image_size)) if v}
    if options:
        params["options"] = options
    print(f"creating a {args.preset} avatar of the astronaut"
          + (f" ({args.iterations} iterations)" if args.iterations else "") + "...", flush=True)
    return client.wait_job(client.submit("avatar.create", params), timeout_s=24 * 3600)["avatar"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--avatar", help="an existing avatar id (with --data); default: make one")
    parser.add_argument("--data", type=Path, help="data directory holding --avatar")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--preset", default="draft", help="preset of the avatar made when --avatar is not given")
    parser.add_argument("--iterations", type=int, default=300,
                        help="optimization iterations of that avatar (0: the preset's own; default 300)")
    parser.add_argument("--image-size", type=int, help="training image size of that avatar (default: the preset's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per render.frames request (default 24 at 512 px, 8 at 1080p on a CPU, 48 on a GPU)")
    args = parser.parse_args(argv)
    if args.avatar and not args.data:
        parser.error("--avatar needs --data DIR (the data directory of the server that made it)")

    from compute_server.device import describe_device, resolve_device
    from compute_server.pipeline.avatar_files import load_avatar
    from compute_server.pipeline.head_models import HeadModelCatalog
    from compute_server.server.app import Server
    from compute_server.server.config import ServerConfig
    from compute_server.server.logs import configure_logging
    from compute_server.storage.avatar_store import AvatarStore
    from shared.client import Client

    configure_logging("WARNING")
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data or Path(scratch)
        server = Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=data_dir, device=args.device))
        server.start_background()
        try:
            with Client(server.endpoint, timeout_s=60) as client:
                avatar_id = args.avatar or make_avatar(client, args)
                avatar = load_avatar(AvatarStore(data_dir / "avatars"), avatar_id, HeadModelCatalog(), device)
                portrait = avatar.portrait_camera
                if portrait is None:
                    raise SystemExit(f"avatar {avatar_id} has no portrait camera to frame the shot from")
                rows = []
                for width, height in SIZES:
                    camera = portrait.reframed(width, height)
                    n_frames = args.frames or (48 if device.type == "cuda" else (24 if width <= 512 else 8))
                    raster = raster_seconds(avatar, camera, device, args.repeats)
                    request = request_seconds(client, avatar_id, camera, n_frames, avatar.n_expr) / n_frames
                    rows.append((f"{width}x{height}", n_frames, raster, request))
        finally:
            server.stop()
            server.join(60)
    print(f"\navatar {avatar_id}: {avatar.splats.count:,} Gaussians; {describe_device(device)}; "
          f"torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print("| size | raster ms | raster fps | request frames | request ms/frame | request fps |")
    print("|---|---:|---:|---:|---:|---:|")
    for size, n_frames, raster, request in rows:
        print(f"| {size} | {raster * 1e3:.1f} | {1 / raster:.2f} | {n_frames} | {request * 1e3:.1f} | {1 / request:.2f} |")


if __name__ == "__main__":
    main()

"""``headsplat create IMAGE... --preset draft --out DIR``: make an avatar from photos.

Without ``--preset`` the preset follows the server's device (draft on a CPU, standard on
a CUDA GPU; ``shared.preset_choice``), and the command says which it chose and why.

Writes DIR/avatar.ply (the Gaussians at the neutral pose, a standard 3DGS PLY),
DIR/avatar.json (metadata), DIR/preview.png and DIR/turntable.png; prints the avatar id.
"""

from __future__ import annotations

import sys
from pathlib import Path

from compute_server.client_tools.avatar_folder import write_avatar_folder
from compute_server.client_tools.progress_bar import ProgressBar
from compute_server.errors import UserError
from shared import VIDEO_SUFFIXES
from shared.preset_choice import PRESET_NAMES, choose_preset

from .common import add_client_options
from .session import add_embedded_options, server_session


def register(subparsers) -> None:
    p = subparsers.add_parser("create", help="make an avatar from one or more photos of a face (or a short video)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos of one person (JPEG/PNG/WebP), or one video")
    p.add_argument("--preset", default=None, choices=PRESET_NAMES,
                   help="quality preset (draft: minutes on a CPU; standard and high want a GPU). Default: from the "
                        "server's device, draft on a CPU and standard on a CUDA GPU")
    p.add_argument("--name", default="", help="a name for the avatar")
    p.add_argument("--seed", type=int, default=0, help="random seed (same inputs + seed = same avatar)")
    p.add_argument("--diffusion", default="none", help="diffusion model for unseen views (see `headsplat info`)")
    p.add_argument("--head-model", default="builtin", help="head model name (see `headsplat info`)")
    p.add_argument("--iterations", type=int, help="override the preset's optimization iterations")
    p.add_argument("--size", type=int, help="override the preset's training resolution (pixels)")
    p.add_argument("--holdout", type=float, help="video: keep the clip's last fraction (e.g. 0.2) out of training")
    p.add_argument("--train-frames", type=int, help="video: learn from at most this many frames (preset's otherwise)")
    p.add_argument("--out", type=Path, help="folder for avatar.ply, avatar.json and previews")
    add_client_options(p)
    add_embedded_options(p)
    p.set_defaults(func=run)


def request_params(args) -> dict:
    files = [Path(p) for p in args.images]
    for path in files:
        if not path.is_file():
            raise UserError("bad_request", f"no such file: {path}")
    params = {"name": args.name or files[0].stem, "seed": args.seed, "diffusion": args.diffusion,
              "head_model": args.head_model}  # the preset is added once the server's device is known
    if len(files) == 1 and files[0].suffix.lower() in VIDEO_SUFFIXES:
        params["video"] = {"name": files[0].name, "data": files[0].read_bytes()}
    else:
        params["images"] = [{"name": p.name, "data": p.read_bytes()} for p in files]
    options = {k: v for k, v in (("iterations", args.iterations), ("image_size", args.size),
                                 ("holdout", getattr(args, "holdout", None)),
                                 ("train_frames", getattr(args, "train_frames", None))) if v}
    if options:
        params["options"] = options
    return params


def announce_preset(args, info: dict, stream=None) -> str:
    """The preset for this run (``--preset`` if given, else from the server's device);
    says which and why on stderr."""
    choice = choose_preset(args.preset, str(info.get("device", "")))
    hint = "" if choice.chosen_by_user else "; pass --preset to choose another"
    print(f"headsplat: preset {choice.name}: {choice.reason}{hint}", file=stream or sys.stderr)
    return choice.name


def run(args) -> int:
    params = request_params(args)
    with server_session(args) as client:
        params["preset"] = announce_preset(args, client.info())
        job = client.submit("avatar.create", params)
        bar = ProgressBar(f"avatar {params['name']} ({params['preset']})")
        result = client.wait_job(job, on_progress=bar)
        frames = (f", learned from {result['train_frames']} of {result['clip']['frames']} frames"
                  if result.get("train_frames") else "")
        heldout = (result.get("clip") or {}).get("heldout")
        if heldout:
            frames += f"; held-out frames PSNR {heldout['psnr_db']:.2f} dB, SSIM {heldout['ssim']:.3f}"
        bar.finish(f"avatar {result['avatar']}: {result['splats']} Gaussians, input PSNR "
                   f"{result['metrics'].get('input_psnr_db', float('nan')):.2f} dB{frames}")
        for warning in result.get("warnings") or []:
            print(f"warning: {warning}", file=sys.stderr)
        if args.out:
            write_avatar_folder(client, result["avatar"], args.out)
            print(f"wrote {args.out}/avatar.ply, avatar.json, preview.png, turntable.png")
            if result.get("heldout_strip_png"):
                (args.out / "heldout.png").write_bytes(bytes(result["heldout_strip_png"]))
                print(f"wrote {args.out}/heldout.png (held-out frames: real above, render below)")
    print(result["avatar"])
    return 0

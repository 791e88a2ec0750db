"""``headsplat track VIDEO --out motion.npz``: per-frame head parameters from a video."""

from __future__ import annotations

from pathlib import Path

from compute_server.client_tools.progress_bar import ProgressBar
from compute_server.errors import UserError

from .common import add_client_options
from .session import add_embedded_options, server_session


def register(subparsers) -> None:
    p = subparsers.add_parser("track", help="track a face video into a motion .npz (expression, jaw, eyes, pose)")
    p.add_argument("video", type=Path, help="the driving video (MP4, MOV, WebM, ...)")
    p.add_argument("--out", type=Path, required=True, help="motion .npz to write")
    p.add_argument("--head-model", default="builtin", help="head model name (see `headsplat info`)")
    p.add_argument("--max-frames", type=int, help="track only the first N frames")
    add_client_options(p)
    add_embedded_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.video.is_file():
        raise UserError("bad_request", f"no such file: {args.video}")
    params = {"video": {"name": args.video.name, "data": args.video.read_bytes()}, "head_model": args.head_model}
    if args.max_frames:
        params["max_frames"] = args.max_frames
    with server_session(args) as client:
        job = client.submit("motion.track", params)
        bar = ProgressBar(f"track {args.video.name}")
        result = client.wait_job(job, on_progress=bar)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_bytes(bytes(result["motion"]))
        tmp.replace(args.out)
        missing = result["missing_frames"]
        bar.finish(f"{result['frames']} frames at {result['fps']:.2f} fps -> {args.out}"
                   + (f"; {len(missing)} frames without a face were interpolated" if missing else ""))
    return 0

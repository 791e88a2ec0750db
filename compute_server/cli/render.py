"""``headsplat render AVATAR [--motion m.npz] [--camera ...] --out DIR``: render frames.

Cameras: ``portrait`` (the photo's camera), ``turntable``, or a JSON file holding one
protocol camera map or a list of them (docs/protocol.md). ``--format ply`` writes the
posed Gaussians per frame instead of images (an animated PLY export).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from compute_server.client_tools.progress_bar import ProgressBar
from compute_server.errors import UserError
from shared.motion import Motion, MotionFormatError

from .common import add_client_options
from .session import add_embedded_options, server_session


TURNTABLE_FRAMES = 48


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (``--frames 0`` or ``-5`` is refused
    with a usage message, not a traceback or a silent default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser("render", help="render an avatar's frames (or posed PLYs) for a motion and camera")
    p.add_argument("avatar", help="avatar id (see `headsplat info` / avatar list)")
    p.add_argument("--motion", type=Path, help="motion .npz (from `headsplat track`); default: one neutral frame")
    p.add_argument("--camera", default="portrait", help="portrait, turntable, or a JSON file of camera maps")
    p.add_argument("--frames", type=positive_int, help="number of frames for a turntable without a motion (default 48)")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="image size for camera presets")
    p.add_argument("--format", default="png", choices=("png", "png16", "exr", "ply"))
    p.add_argument("--depth", action="store_true", help="also write depth maps (depth_######.npy)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_client_options(p)
    add_embedded_options(p)
    p.set_defaults(func=run)


def request_params(args) -> dict:
    params: dict = {"avatar": args.avatar, "format": args.format, "depth": bool(args.depth)}
    if args.motion:
        try:
            motion = Motion.load(args.motion)
        except MotionFormatError as exc:
            raise UserError("bad_file", f"{args.motion}: {exc}") from None
        params["params"] = {k: np.ascontiguousarray(v) for k, v in motion.frame_arrays().items()}
    if args.camera in ("portrait", "turntable"):
        params["camera_preset"] = args.camera
        if args.size:
            params["size"] = list(args.size)
        if args.camera == "turntable" and not args.motion:
            n = TURNTABLE_FRAMES if args.frames is None else args.frames
            params["params"] = {"jaw_pose": np.zeros((n, 3), np.float32)}
    else:
        path = Path(args.camera)
        try:
            cameras = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError("bad_file", f"cannot read cameras from {path}: {exc}") from None
        params["cameras"] = cameras if isinstance(cameras, list) else [cameras]
    return params


def run(args) -> int:
    params = request_params(args)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []

    def on_progress(event: dict) -> None:
        frame = event.get("frame")
        if frame:
            name = f"frame_{event['frame_number']:06d}.{'png' if frame['format'] == 'png16' else frame['format']}"
            (args.out / name).write_bytes(bytes(frame["data"]))
            written.append(name)
            if event.get("depth") is not None:
                np.save(args.out / f"depth_{event['frame_number']:06d}.npy", np.asarray(event["depth"]))
        bar(event)

    with server_session(args) as client:
        job = client.submit("render.frames", params)
        bar = ProgressBar(f"render {args.avatar}")
        result = client.wait_job(job, on_progress=on_progress)
        missing = [i for i, name in enumerate(result["files"]) if name not in written]
        for start in range(0, len(missing), 64):  # frames whose events were missed
            chunk = missing[start:start + 64]
            part = client.call("job.result", {"job": job, "frames": [chunk[0], chunk[-1] + 1]})["result"]
            for entry in part["frame_data"]:
                (args.out / result["files"][entry["frame_index"]]).write_bytes(bytes(entry["frame"]["data"]))
        bar.finish(f"{result['frames']} frames in {args.out}")
    return 0

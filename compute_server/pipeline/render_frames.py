"""The ``render.frames`` job: per-frame head parameters and cameras -> RGBA frames (and depth).

Frames stream back as progress events while they are made and are also written to the
job's output folder, so a client that missed events (or reconnected) fetches them with
``job.result`` and a frame range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shared.camera import Camera
from shared.motion import FRAME_KEYS

from ..camera_torch import stack_cameras
from ..errors import UserError
from ..head.model import HeadParams
from ..splats.model import expression_code
from ..splats.render_avatar import render_avatar
from ..storage.avatar_store import check_avatar_id
from ..validation import (
    check_frame_count, check_image_size, require_bool, require_int, require_list, require_str,
)
from ..views.sampling import head_centre, orbit_like
from .avatar_files import load_avatar
from .frame_encoding import FORMATS, encode_frame

PARAM_WIDTHS = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}
TURNTABLE_FRAMES = 48
PRESETS = ("portrait", "turntable")
MAX_FRAMES_PER_RESULT = 64
FRAME_CHUNK = 16


@dataclass
class RenderRequest:
    avatar: str
    params: dict                    # key -> (T, width) float32
    cameras: list[Camera] | None    # 1 or T, or None with a preset
    camera_preset: str | None
    size: tuple[int, int] | None
    fmt: str
    depth: bool
    background: np.ndarray          # (4,) rgba
    first_frame: int
    n_frames: int
    disk_bytes: int = 0             # what the frames take on disk, at most (see disk_bytes)


# Bytes per pixel a stored frame takes at most, by format (depth adds 4 per pixel).
BYTES_PER_PIXEL = {"png": 4, "png16": 8, "exr": 8, "ply": 0}
PLY_BYTES_PER_SPLAT = 62 * 4


def validate(params: dict, ctx, services) -> RenderRequest:
    avatar = check_avatar_id(require_str(params, "avatar", max_chars=64))
    metadata = ctx.store.metadata(avatar)
    n_expr = int(metadata.get("head_model", {}).get("n_expr", 0))
    frame_params = _frame_params(params.get("params"), n_expr, ctx.limits)
    n_frames = max((len(v) for v in frame_params.values()), default=None)
    cameras, preset = None, None
    if params.get("cameras") is not None:
        require_str(params, "camera_preset", default=None, choices=PRESETS)  # unused with cameras, but typed
        raw = require_list(params, "cameras", max_items=ctx.limits.max_render_frames)
        cameras = []
        for i, item in enumerate(raw):
            try:
                camera = Camera.from_wire(item)
            except ValueError as exc:
                raise UserError("bad_request", f"params.cameras[{i}]: {exc}") from None
            check_image_size(camera.width, camera.height, ctx.limits, f"params.cameras[{i}]")
            cameras.append(camera)
        if not cameras:
            raise UserError("bad_request", "params.cameras is empty")
        if n_frames is None:
            n_frames = len(cameras)
        if len(cameras) not in (1, n_frames):
            raise UserError("bad_request", f"params.cameras has {len(cameras)} cameras for {n_frames} frames; "
                                           "send one camera or one per frame")
    else:
        preset = require_str(params, "camera_preset", default="portrait", choices=PRESETS)
        if preset == "portrait" and not metadata.get("portrait_camera"):
            raise UserError("bad_request", f"avatar {avatar} has no portrait camera; send params.cameras")
        if n_frames is None:
            n_frames = TURNTABLE_FRAMES if preset == "turntable" else 1
    check_frame_count(n_frames, ctx.limits)
    size = None
    if params.get("size") is not None:
        size = require_list(params, "size", max_items=2)
        if len(size) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 16 for x in size):
            raise UserError("bad_request", f"params.size must be [width, height] in pixels, each 16.."
                                           f"{ctx.limits.max_image_side}")
        size = (int(size[0]), int(size[1]))
        check_image_size(*size, ctx.limits, "params.size")
    background = params.get("background", [0.0, 0.0, 0.0, 0.0])
    if (not isinstance(background, list) or len(background) != 4
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in background)):
        raise UserError("bad_request", "params.background must be [r, g, b, a] with values in 0..1")
    services.head_models.check(metadata.get("head_model", {}).get("name", "builtin"))
    fmt = require_str(params, "format", default="png", choices=tuple(FORMATS))
    depth = require_bool(params, "depth", default=False)
    return RenderRequest(
        avatar=avatar, params={k: np.repeat(v, n_frames, 0) if len(v) == 1 else v for k, v in frame_params.items()},
        cameras=cameras, camera_preset=preset, size=size, fmt=fmt, depth=depth,
        background=np.asarray(background, np.float32),
        first_frame=require_int(params, "first_frame", default=0, min_value=-10**7, max_value=10**7),
        n_frames=n_frames, disk_bytes=_disk_estimate(metadata, cameras, size, n_frames, fmt, depth))


def _disk_estimate(metadata: dict, cameras, size, n_frames: int, fmt: str, depth: bool) -> int:
    """Bytes the stored frames take at most: uncompressed pixels per format, or one PLY
    of every splat per frame."""
    if fmt == "ply":
        return n_frames * int(metadata.get("counts", {}).get("splats", 0)) * PLY_BYTES_PER_SPLAT
    per_pixel = BYTES_PER_PIXEL[fmt] + (4 if depth else 0)
    if cameras is not None:
        pixels = sum(c.width * c.height for c in cameras) * (n_frames if len(cameras) == 1 else 1)
    else:
        portrait = metadata.get("portrait_camera") or {}
        width, height = size or (portrait.get("width", 512), portrait.get("height", 512))
        pixels = int(width) * int(height) * n_frames
    return pixels * per_pixel


def disk_bytes(req: RenderRequest) -> int:
    return req.disk_bytes


def _frame_params(raw, n_expr: int, limits) -> dict[str, np.ndarray]:
    """Check the per-frame head parameters: every array (T, width) of numbers, 1 <= T <=
    max_render_frames, the same T, finite."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError("bad_request", "params.params must be a map of arrays (head parameters per frame)")
    out, n = {}, None
    for key, value in raw.items():
        if key not in FRAME_KEYS:
            raise UserError("bad_request", f"params.params.{str(key)[:40]} is not a head parameter; use "
                                           f"{', '.join(FRAME_KEYS)}")
        arr = _number_array(value, f"params.params.{key}")
        width = n_expr if key == "expr" else PARAM_WIDTHS[key]
        if arr.ndim == 1 and arr.shape[0] == width:
            arr = arr[None]
        if arr.ndim != 2 or (key != "expr" and arr.shape[1] != width) or (key == "expr" and arr.shape[1] > width):
            raise UserError("bad_request", f"params.params.{key} must have shape [frames, {width}], got {list(arr.shape)}")
        if len(arr) == 0:
            raise UserError("bad_request", f"params.params.{key} has no frames; send at least one row")
        check_frame_count(len(arr), limits, f"params.params.{key}")
        if not np.all(np.isfinite(arr)):
            raise UserError("bad_request", f"params.params.{key} contains NaN or infinite values")
        if key == "expr" and arr.shape[1] < width:  # fewer coefficients: the rest are zero
            arr = np.pad(arr, ((0, 0), (0, width - arr.shape[1])))
        if n is not None and len(arr) not in (1, n) and n != 1:
            raise UserError("bad_request", f"params.params.{key} has {len(arr)} frames but others have {n}")
        n = max(n or 0, len(arr))
        out[key] = arr
    return out


def _number_array(value, label: str) -> np.ndarray:
    """An $nd array of numbers or a (nested) list of numbers -> float32; bad_request
    naming ``label`` for anything else (strings, maps, ragged lists, booleans)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise UserError("bad_request", f"{label} must hold numbers, got dtype {value.dtype.str}")
        return value.astype(np.float32)
    if not isinstance(value, list):
        raise UserError("bad_request", f"{label} must be an array or a list of rows of numbers, "
                                       f"got {type(value).__name__}")
    if _has_non_number(value):
        raise UserError("bad_request", f"{label} must hold numbers only")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise UserError("bad_request", f"{label} must be a list of equally long rows of numbers") from None
    return arr.astype(np.float32)


def _has_non_number(value) -> bool:
    if isinstance(value, list):
        return any(_has_non_number(v) for v in value)
    return isinstance(value, bool) or not isinstance(value, (int, float))


def summarize(req: RenderRequest) -> dict:
    return {"avatar": req.avatar, "frames": req.n_frames, "format": req.fmt, "depth": req.depth,
            "camera_preset": req.camera_preset}


def _cameras(req: RenderRequest, avatar) -> list[Camera]:
    if req.cameras is not None:
        cams = req.cameras
    else:
        ref = avatar.portrait_camera
        if req.size:
            ref = ref.reframed(*req.size)  # a 16:9 size widens the view; it never stretches the head
        if req.camera_preset == "portrait":
            cams = [ref]
        else:
            rest_params = HeadParams.zeros(avatar.head_model, 1, device=avatar.shape.device)
            rest_params.shape = avatar.shape
            with torch.no_grad():
                rest = avatar.head_model(rest_params).vertices[0]
            centre = head_centre(rest.cpu().numpy())
            cams = [orbit_like(ref, centre, 360.0 * i / req.n_frames, 0.0) for i in range(req.n_frames)]
    return cams * req.n_frames if len(cams) == 1 else cams


def run(ctx, req: RenderRequest, services) -> dict:
    avatar = load_avatar(ctx.store, req.avatar, services.head_models, ctx.device)
    cameras = _cameras(req, avatar)
    head_model = avatar.head_model
    device = ctx.device
    files = []
    for start in range(0, req.n_frames, FRAME_CHUNK):
        stop = min(req.n_frames, start + FRAME_CHUNK)
        with torch.no_grad():
            hp = HeadParams.zeros(head_model, stop - start, device=device)
            hp.shape = avatar.shape.expand(stop - start, -1)
            for key, arr in req.params.items():
                setattr(hp, key, torch.as_tensor(arr[start:stop], device=device))
            vertices = head_model(hp).vertices
        for i in range(start, stop):
            ctx.check()
            number = req.first_frame + i
            if req.fmt == "ply":  # the posed Gaussians themselves (animated export)
                code = expression_code(hp.expr[i - start], hp.jaw_pose[i - start]).cpu().numpy()
                files.append(_write_ply_frame(ctx, avatar, vertices[i - start], code, number, i, req.n_frames))
                continue
            cam = cameras[i]
            viewmats, Ks = stack_cameras([cam], device=device)
            with torch.no_grad():
                code = expression_code(hp.expr[i - start], hp.jaw_pose[i - start])
                out = render_avatar(avatar.splats, vertices[i - start], head_model.faces, viewmats, Ks, cam.width,
                                    cam.height, with_depth=req.depth, colour_code=code)
            rgb = out.rgb[0].cpu().numpy()
            alpha = out.alpha[0].cpu().numpy()
            if req.background[3] > 0:  # an opaque-ish background colour is part of the frame
                rgb = rgb + (1 - alpha[..., None]) * req.background[:3] * req.background[3]
                alpha = alpha + (1 - alpha) * req.background[3]
            data = encode_frame(rgb, alpha, req.fmt)
            name = f"frame_{number:06d}{FORMATS[req.fmt]}"
            (ctx.output_dir / name).write_bytes(data)
            extra = {"frame_index": i, "frame_number": number, "frame": {"format": req.fmt, "data": data}}
            if req.depth:
                depth = np.where(alpha > 0.5, out.depth[0].cpu().numpy(), 0.0).astype(np.float32)
                np.save(ctx.output_dir / f"depth_{number:06d}.npy", depth)
                extra["depth"] = depth
            files.append(name)
            ctx.progress("render", (i + 1) / req.n_frames, f"frame {i + 1} of {req.n_frames}", **extra)
    first = cameras[0]
    return {"frames": req.n_frames, "width": first.width, "height": first.height, "format": req.fmt,
            "files": files, "first_frame": req.first_frame, "depth": req.depth}


def _write_ply_frame(ctx, avatar, vertices: torch.Tensor, code: np.ndarray, number: int, index: int,
                     total: int) -> str:
    """One frame of an animated PLY export: the Gaussians posed on ``vertices`` (V, 3), their
    colours at that frame's expression ``code``."""
    from shared.splat_format import WorldSplats

    from ..splats.ply import ply_bytes

    with torch.no_grad():
        posed = avatar.splats.pose(vertices[None], avatar.head_model.faces)
        local = avatar.splats.to_local_splats()
    world = WorldSplats(means=posed.means[0].cpu().numpy(), quats=posed.quats[0].cpu().numpy(),
                        scales=posed.scales[0].cpu().numpy(), opacities=avatar.splats.opacities().detach().cpu().numpy(),
                        sh_dc=local.dc_for(code), sh_rest=local.sh_rest)
    data = ply_bytes(world)
    name = f"frame_{number:06d}.ply"
    (ctx.output_dir / name).write_bytes(data)
    ctx.progress("render", (index + 1) / total, f"PLY {index + 1} of {total}", frame_index=index, frame_number=number,
                 frame={"format": "ply", "data": data})
    return name


def result_part(output_dir, result: dict, params: dict) -> dict:
    """``job.result`` with ``frames: [start, stop]``: the stored frames of that range."""
    rng = params.get("frames")
    if (not isinstance(rng, list) or len(rng) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in rng)):
        raise UserError("bad_request", "params.frames must be [start, stop] frame indices")
    start, stop = max(0, rng[0]), min(int(result.get("frames", 0)), rng[1])
    if stop - start > MAX_FRAMES_PER_RESULT:
        raise UserError("too_large", f"ask for at most {MAX_FRAMES_PER_RESULT} frames per job.result call")
    frames = []
    for i in range(start, stop):
        name = result["files"][i]
        number = int(result.get("first_frame", 0)) + i
        entry = {"frame_index": i, "frame_number": number,
                 "frame": {"format": result["format"], "data": (output_dir / name).read_bytes()}}
        depth_path = output_dir / f"depth_{number:06d}.npy"
        if result.get("depth") and depth_path.exists():
            entry["depth"] = np.load(depth_path)
        frames.append(entry)
    return {"frame_data": frames}

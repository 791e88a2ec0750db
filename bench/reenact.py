"""Self-reenactment benchmark (issue 11): the protocol of GAGAvatar, Portrait4D and LAM on
real talking-head clips.

    python -m bench.reenact                                  # ../shared/data/driving, stride 8, draft
    python -m bench.reenact clips/ other.mp4 --stride 4 --json out/r.json --images out/strips
    python -m bench.reenact --source best --holdout 0.2 --train-on frames4

For each clip: track it (the ``motion.track`` machinery: one identity, per-frame expression,
jaw, eyes and head pose, the video camera); take the source frame (frame 0, or the most
frontal neutral one with ``--source best``); make an avatar from it through a real server in
this process (``avatar.create``, like ``bench/fit.py``); drive it with every k-th frame's
tracked parameters (the change from the source frame, ``reenact_avatar.driven_params``) and
render it at the video's own camera, moved by the head's tracked motion from the source
frame (``reenact_clip.relative_camera``), in a 512 px square crop around the tracked head;
compare with the real frame (``reenact_score``: both matted to the head, same background,
union and interior of the head masks). Bins by yaw difference from the source and by mouth
state (``reenact_protocol``).

``--holdout F`` evaluates only the last fraction F of each clip and takes the source (and
every training frame) before it; ``--train-on`` chooses what the avatar is made from
(``reenact_avatar``). Results are written to ``--json`` after every clip, strips (real over
render) to ``--images``. Files that cannot be read are reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.reenact_protocol import BIN_KEYS, FrameScore, clip_record, run_record

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = ROOT.parent / "shared" / "data" / "driving"
CACHE = ROOT / ".cache" / "reenact"
RENDER_CHUNK = 32
STRIP_TILE_PX = 160


def parse_args(argv=None) -> argparse.Namespace:
    from bench.reenact_avatar import NOT_YET, TRAIN_ON

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="*", type=Path, help=f"video files or folders of them (default {DEFAULT_CLIPS})")
    p.add_argument("--stride", type=int, default=8, help="drive with every k-th frame (default 8)")
    p.add_argument("--preset", default="draft")
    p.add_argument("--device", default="cpu")
    p.add_argument("--diffusion", default="none", help="view-synthesis backend of avatar.create (default none)")
    p.add_argument("--models-config", help="models.toml for diffusion backends")
    p.add_argument("--json", type=Path, help="write the scores here (rewritten after every clip)")
    p.add_argument("--images", type=Path, help="write one strip per clip here (real over render)")
    p.add_argument("--source", default="0", help="source frame: a frame number (default 0) or 'best' "
                                                 "(the most frontal, neutral, well-tracked frame)")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="evaluate only the last fraction F of each clip; the avatar is made from frames before it")
    p.add_argument("--train-on", default="frame", choices=TRAIN_ON + tuple(NOT_YET),
                   help="what the avatar is made from: the source frame (default), it and 3 more frames, or the "
                        "whole clip before the held-out tail (video; the server picks the frames and the source)")
    p.add_argument("--iterations", type=int, help="override the preset's optimization iterations (quick runs)")
    p.add_argument("--max-frames", type=int, help="use only the first N frames of each clip (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="track again instead of reading .cache/reenact/")
    args = p.parse_args(argv)
    if args.train_on in NOT_YET:
        p.error(NOT_YET[args.train_on])
    if not 0.0 <= args.holdout < 1.0:
        p.error("--holdout must be in [0, 1)")
    if args.train_on == "video" and args.max_frames:
        p.error("--max-frames does not apply to --train-on video (the server tracks the whole clip)")
    if args.stride < 1:
        p.error("--stride must be at least 1")
    if args.source != "best" and not args.source.isdigit():
        p.error("--source must be a frame number or 'best'")
    return args


def collect_clips(specs: list[Path], log=print) -> list[Path]:
    """Video files from the arguments: files as given, folders' files with a video suffix
    (sorted); anything else is reported."""
    from shared import VIDEO_SUFFIXES

    clips = []
    for spec in specs or [DEFAULT_CLIPS]:
        if spec.is_dir():
            found = sorted(p for p in spec.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                log(f"{spec}: no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder")
            clips += found
        elif spec.is_file():
            clips.append(spec)
        else:
            log(f"{spec}: no such file or folder; skipped")
    return clips


# ----------------------------------------------------------------------------- one clip

@dataclass
class ClipPlan:
    """What is compared in one clip, decided from the clip alone: the source frame, the
    training frames (source first) and the first held-out frame (``split``), the driven
    frames (N,) with their yaw difference from the source (deg) and jaw opening (rad), the
    tracked head in the source and driven frames (``placed``, source first) and each one's
    crop (crop pixels -> frame pixels)."""

    clip: object
    source: int
    split: int
    train: list[int]
    frames: np.ndarray
    yaw_diff: np.ndarray
    jaw_open: np.ndarray
    placed: object
    crops: dict[int, np.ndarray]


def plan_clip(path: Path, head_model, args, log=print) -> ClipPlan:
    """Track ``path`` and choose the source, training and driven frames and their crops."""
    from bench.reenact_avatar import training_frames
    from bench.reenact_clip import crop_matrix, place_head, track_clip
    from bench.reenact_protocol import (choose_source, evaluation_frames, head_crop_box, jaw_opening_rad,
                                        source_cost, training_stop, yaw_deg)

    clip = track_clip(path, head_model, cache_dir=None if args.no_cache else CACHE, max_frames=args.max_frames,
                      log=log)
    m = clip.motion
    split = training_stop(clip.n_frames, args.holdout)
    source = choose_source(args.source, clip.found, clip.frame_error_px, source_cost(m.rotation, m.jaw_pose, m.expr),
                           split)
    train = training_frames(args.train_on, source, clip.found, split)
    frames = evaluation_frames(clip.found, args.stride, train, args.holdout)
    if frames.size == 0:
        raise ValueError(f"no frame to drive (stride {args.stride}, holdout {args.holdout}, "
                         f"{int(clip.found.sum())} of {clip.n_frames} frames with a face)")
    yaw = yaw_deg(m.rotation)
    placed = place_head(clip, head_model, np.concatenate([[source], frames]))
    crops = {int(f): crop_matrix(*head_crop_box(clip.camera.project(vertices)[:, :2]))
             for f, vertices in zip(placed.frames, placed.vertices_world)}
    plan = ClipPlan(clip, source, split, train, frames,
                    (yaw[frames] - yaw[source] + 180.0) % 360.0 - 180.0, jaw_opening_rad(m.jaw_pose)[frames],
                    placed, crops)
    log(f"  {clip.n_frames} frames, source frame {source} (yaw {yaw[source]:+.1f} deg), training frames "
        f"{plan.train}, {frames.size} driven frames, |yaw difference| up to {np.abs(plan.yaw_diff).max():.0f} deg")
    return plan


def driven_cameras(plan: ClipPlan, avatar) -> list:
    """The avatar's camera for every driven frame, in that frame's crop."""
    from bench.reenact_clip import crop_camera, relative_camera

    source_camera = avatar.source_camera(0)
    return [crop_camera(relative_camera(source_camera, plan.placed.head_to_world[0], plan.placed.head_to_world[i + 1]),
                        plan.crops[int(f)]) for i, f in enumerate(plan.frames)]


def score_clip(plan: ClipPlan, source_image: np.ndarray, cropped: dict, renders: list[np.ndarray], head_model,
               lpips_fn, log=print) -> tuple[list[FrameScore], dict]:
    """-> (a FrameScore per driven frame, {frame: HeadPair}). source_image: the source's full
    (H, W, 3) uint8 frame; cropped: the driven frames' crops and validity (``read_frames``)."""
    from bench.reenact_clip import CROP_SIZE, crop_camera, head_region_mask
    from bench.reenact_score import FrameScorer, head_pair, real_matte
    from compute_server.face.letterbox import picture_box
    from compute_server.face.warp import crop_validity, warp_to_crop

    clip, placed = plan.clip, plan.placed

    def pair_of(index: int, crop_rgb, valid, render):
        frame = int(placed.frames[index])
        region = head_region_mask(placed.vertices_world[index], crop_camera(clip.camera, plan.crops[frame]),
                                  head_model)
        return head_pair(crop_rgb, real_matte(crop_rgb, valid), valid, region, render)

    matrix = plan.crops[plan.source]
    source = pair_of(0, warp_to_crop(source_image, matrix, CROP_SIZE, border="replicate"),
                     crop_validity(clip.frame_size, matrix, CROP_SIZE, picture_box(source_image)),
                     np.zeros((CROP_SIZE, CROP_SIZE, 4)))
    scores, pairs = [], {}
    with FrameScorer(source.real, lpips_fn) as scorer:
        if scorer.source_descriptor is None:
            log("  dlib finds no face in the source frame: identity distance n/a for this clip")
        for i, f in enumerate(plan.frames):
            pair = pair_of(i + 1, *cropped[int(f)], renders[i])
            scores.append(scorer.score(int(f), plan.yaw_diff[i], plan.jaw_open[i], pair))
            pairs[int(f)] = pair
    return scores, pairs


def run_clip(client, path: Path, head_model, args, lpips_fn, log=print) -> tuple[dict, list[FrameScore]]:
    """Track, make the avatar, drive and score one clip -> (its JSON entry, frame scores)."""
    from bench.reenact_avatar import driven_params, make_avatar, make_video_avatar, video_source_frame
    from bench.reenact_clip import read_frames
    from bench.reenact_protocol import strip_frames

    options = {"iterations": args.iterations} if args.iterations else None
    if args.train_on == "video":  # the server picks the frames; its photo 0 becomes the source
        avatar = make_video_avatar(client, path, holdout=args.holdout, preset=args.preset, seed=args.seed,
                                   diffusion=args.diffusion, options=options, log=log)
        source_args = argparse.Namespace(**{**vars(args), "source": str(video_source_frame(avatar))})
        plan = plan_clip(path, head_model, source_args, log)
        plan.train = list(avatar.result["clip"]["train_frame_indices"])
    else:
        plan = plan_clip(path, head_model, args, log)
    clip = plan.clip
    full, cropped = read_frames(str(path), {plan.source} | (set(plan.train) if args.train_on != "video" else set()),
                                {int(f): plan.crops[int(f)] for f in plan.frames})
    if args.train_on != "video":
        avatar = make_avatar(client, clip.name, plan.train, full,
                             preset=args.preset, seed=args.seed, diffusion=args.diffusion, options=options, log=log)
    log(f"  avatar {avatar.avatar_id} in {avatar.seconds:.0f} s ({avatar.result['splats']} Gaussians, input view "
        f"{avatar.result['metrics'].get('input_psnr_db', float('nan')):.2f} dB)")
    started = time.perf_counter()
    renders = render_driven(client, avatar, driven_cameras(plan, avatar),
                            driven_params(avatar.fit, clip.motion, plan.frames, plan.source))
    render_s = time.perf_counter() - started
    scores, pairs = score_clip(plan, full[plan.source], cropped, renders, head_model, lpips_fn, log)
    record = clip_record(clip.name, scores, n_frames=clip.n_frames, fps=clip.motion.fps,
                         frame_size=list(clip.frame_size), source_frame=plan.source, train_frames=plan.train,
                         split=plan.split, stride=args.stride, holdout=args.holdout, train_on=args.train_on,
                         create_s=round(avatar.seconds, 1), render_s=round(render_s, 1),
                         score_s=round(time.perf_counter() - started - render_s, 1), track_s=round(clip.seconds, 1),
                         track_cached=clip.cached, tracking_median_error_px=float(np.nanmedian(clip.frame_error_px)),
                         input_psnr_db=avatar.result["metrics"].get("input_psnr_db"), splats=avatar.result["splats"],
                         warnings=clip.warnings + list(avatar.result.get("warnings", [])),
                         **({"server_split": avatar.result["split"],
                             "server_heldout": avatar.result["clip"].get("heldout")} if args.train_on == "video" else {}))
    if args.images:
        index = {int(f): i for i, f in enumerate(plan.frames)}
        chosen = strip_frames(plan.frames, plan.yaw_diff, plan.jaw_open)
        labels = [f"f{f} yaw{plan.yaw_diff[index[f]]:+.0f} jaw{np.degrees(plan.jaw_open[index[f]]):.0f}"
                  for f in chosen]
        record["strip"] = str(write_strip(args.images / f"{clip.name}.png", [pairs[f] for f in chosen], labels))
    return record, scores


def render_driven(client, avatar, cameras, params: dict) -> list[np.ndarray]:
    """(S, S, 4) float straight-alpha renders of the avatar, one per camera, in jobs of at
    most RENDER_CHUNK frames (under any server's frame limit)."""
    from bench.quality_avatars import render_views

    out = []
    for start in range(0, len(cameras), RENDER_CHUNK):
        part = {k: v[start:start + RENDER_CHUNK] for k, v in params.items()}
        out += [v.rgba for v in render_views(client, avatar, cameras[start:start + RENDER_CHUNK], frame_params=part)]
    return out


def write_strip(path: Path, pairs, labels: list[str]) -> Path:
    """Real frames over renders, one column per frame (PNG)."""
    from bench.quality_figures import grid_figure

    rows = [[p.real for p in pairs], [p.render for p in pairs]]
    return grid_figure(rows, path, tile_px=STRIP_TILE_PX, column_labels=labels, row_labels=["real", "render"])


# ----------------------------------------------------------------------------- tables

def _f(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def table(clips: list[dict], overall: dict | None) -> str:
    """Markdown: one row per clip and the pooled row (when ``overall`` is given); bins as
    PSNR / SSIM (frames)."""
    head = ("| clip | frames | PSNR | interior PSNR | SSIM | LPIPS | AKD px | identity distance median | "
            "identity < 0.5 | " + " | ".join(BIN_KEYS) + " | create s |")
    lines = [head, "|---|" + "---:|" * (9 + len(BIN_KEYS))]
    pooled = [{"clip": "**all (pooled)**", **overall}] if overall is not None else []
    for row in clips + pooled:
        bins = [f"{_f(b['psnr'], '.2f')} / {_f(b['ssim'], '.3f')} ({b['frames']})" if b["frames"] else "-"
                for b in (row["bins"][k] for k in BIN_KEYS)]
        lines.append(f"| {row['clip']} | {row['frames']} | {_f(row['psnr'], '.2f')} | {_f(row['psnr_interior'], '.2f')} | "
                     f"{_f(row['ssim'], '.4f')} | {_f(row['lpips'], '.3f')} | {_f(row['akd_px'], '.2f')} | "
                     f"{_f(row['identity_distance_median'], '.3f')} | {_f(row['identity_under_0_5'], '.2f')} | "
                     + " | ".join(bins) + f" | {_f(row.get('create_s'), '.0f')} |")
    return "\n".join(lines)


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=float))
    os.replace(tmp, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from bench.metrics import load_lpips
    from bench.quality_avatars import bench_server
    from compute_server.errors import UserError
    from compute_server.pipeline.head_models import HeadModelCatalog
    from shared.client import ServerError

    def log(message: str) -> None:
        print(message, flush=True)

    clips = collect_clips(args.clips, log)
    lpips = load_lpips()
    log(f"{len(clips)} clips; preset {args.preset}, device {args.device}, stride {args.stride}, source {args.source}, "
        f"train on {args.train_on}, holdout {args.holdout}; LPIPS: {lpips.reason}; torch threads "
        f"{torch.get_num_threads()}")
    head_model = HeadModelCatalog([]).load("builtin", torch.device("cpu"))
    settings = {"preset": args.preset, "device": args.device, "diffusion": args.diffusion, "stride": args.stride,
                "source": args.source, "train_on": args.train_on, "holdout": args.holdout,
                "iterations": args.iterations, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "argv": sys.argv[1:] if argv is None else list(argv), "lpips": lpips.reason}
    records, scores, skipped = [], {}, []
    with bench_server(args.device, args.models_config) as client:
        for path in clips:
            log(f"\n{path.name}")
            try:
                record, clip_scores = run_clip(client, path, head_model, args, lpips.fn, log)
            except (UserError, ServerError, ValueError) as exc:
                log(f"  skipped: {exc}")
                skipped.append({"clip": path.name, "reason": str(exc)})
                continue
            records.append(record)
            scores[record["clip"]] = clip_scores
            result = run_record(records, scores, skipped=skipped, **settings)
            if args.json:
                write_json(args.json, result)
            log(table([record], None))
    result = run_record(records, scores, skipped=skipped, **settings)
    if args.json:
        write_json(args.json, result)
    log(f"\nself-reenactment, preset {args.preset}, device {args.device}, stride {args.stride}, source {args.source}: "
        "PSNR / SSIM over the union of the head masks (both matted, on white, 512 px crop), interior PSNR over "
        "their shared interior; identity = dlib descriptor distance to the source frame")
    if records:
        log(table(records, result["overall"]))
    for item in skipped:
        log(f"skipped {item['clip']}: {item['reason']}")
    if args.json:
        log(f"scores: {args.json}")
    return result


if __name__ == "__main__":
    main()

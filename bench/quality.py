"""Quality benchmark with ground truth no one here made: the CC-BY head scan
(LeePerrySmith.glb, Lee Perry-Smith / ir-ltd.net, CC-BY 3.0) rendered with Blender Cycles.

    python -m bench.quality                                   # draft preset, CPU, backend 'none'
    python -m bench.quality --preset standard --device cuda   # on a GPU
    python -m bench.quality --models-config models.toml       # 'none' + every usable diffusion model
    python -m bench.quality --portraits                       # also the real portraits (identity)

1. Ground truth: the scan, cut at the base of the neck (``bench/quality_align.py``), clay
   material, fixed lights (``bench/gt_render.py``), rendered at 512x512 from the frontal
   input camera C0 and from held-out cameras at yaw 0, +-15 .. +-90 and pitch 0, +-20
   degrees around the head. Renders are cached under .cache/quality/ (not in git).
2. For each view-synthesis backend: an avatar is made from the frontal render alone (its
   exact alpha is the matte: an RGBA input, like a user's cut-out), then rendered at the
   held-out cameras mapped into avatar space in two ways (``bench/quality_cameras.py``):
   "aligned": the scan->avatar similarity from ICP of the fitted head mesh onto the scan
   (the avatar's global scale/pose error taken out: appearance and shape are measured);
   "camera": the relative camera motion C0 -> Ck in avatar units (scale from the nose tip's
   distance to each input camera) applied to the fitted input camera A0 (what a user
   gets when orbiting the avatar around its own input camera).
3. PSNR, SSIM (and LPIPS when its weights are on this machine) over the foreground: every
   pixel where the ground truth or the avatar (above the mapped neck cut) has alpha > 0.5,
   both composited on white. Tables per |yaw| bucket and pitch; a figure of input and
   ground-truth/avatar pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.gt_render import GroundTruthSpec
from bench.metrics import (composite, evaluation_mask, interior_mask, load_lpips, mask_bbox, masked_psnr, masked_ssim,
                           silhouette_iou)
from bench.quality_align import align_icp, initial_alignment, scan_geometry, surface_samples
from bench.quality_avatars import bench_server, create_avatar, render_views
from bench.quality_cameras import (YAW_BUCKETS, above_plane_mask, camera_through_similarity, distance_ratio_scale,
                                   held_out_views, relative_avatar_camera, similarity_from_input_cameras,
                                   transform_plane, yaw_bucket)
from bench.quality_figures import grid_figure, square_crop

ROOT = Path(__file__).resolve().parents[1]
SCAN = ROOT.parent / "shared" / "data" / "heads" / "leeperrysmith" / "LeePerrySmith.glb"
CACHE = ROOT / ".cache" / "quality"
FIGURES = ROOT / "docs" / "images" / "results"
BACKGROUND = (1.0, 1.0, 1.0)
ICP_REGIONS = ("face", "scalp", "ear")          # head-model regions laid onto the scan
CAMERA_DISTANCE_HEIGHTS = 3.0                   # input camera distance, in head heights (cut to crown)
FOV_Y_DEG = 25.0
FIGURE_VIEWS = ((-90, 0), (-60, 0), (-30, 0), (30, 0), (60, 0), (90, 0), (0, 20), (0, -20), (45, 20))
MAPPINGS = ("aligned", "camera")


@dataclass
class ViewScore:
    """One view's metrics (``metrics.py``): PSNR / SSIM / LPIPS over the union of both
    foregrounds (silhouette errors count), PSNR over the shared interior (appearance only)
    and the silhouettes' IoU."""

    yaw_deg: float
    pitch_deg: float
    mapping: str
    psnr_db: float
    ssim: float
    lpips: float | None
    psnr_interior_db: float
    silhouette_iou: float


# ----------------------------------------------------------------------------- ground truth

def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ground_truth(spec: GroundTruthSpec, cache_dir: Path, log=print) -> list[np.ndarray]:
    """(H, W, 4) uint8 RGBA renders of every camera of ``spec``, from the cache or from a
    Blender subprocess (bpy stays out of this process)."""
    key = hashlib.sha256((spec.to_json() + file_sha256(Path(spec.scan_path))).encode()).hexdigest()[:16]
    folder = cache_dir / f"gt-{key}"
    if not (folder / "manifest.json").exists():
        log(f"rendering {len(spec.cameras)} ground-truth views with Cycles into {folder} (cached for later runs)")
        scratch = cache_dir / f"gt-{key}.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        (scratch / "spec.json").write_text(spec.to_json())
        with open(scratch / "blender.log", "wb") as blender_log:
            subprocess.run([sys.executable, "-m", "bench.gt_render", str(scratch / "spec.json"), str(scratch)],
                           cwd=ROOT, check=True, stdout=blender_log, stderr=subprocess.STDOUT)
        shutil.rmtree(folder, ignore_errors=True)
        scratch.rename(folder)
    else:
        log(f"ground truth from the cache: {folder}")
    return [np.asarray(Image.open(folder / f"view_{i:03d}.png").convert("RGBA")) for i in range(len(spec.cameras))]


def png_bytes(rgba: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- alignment

def scan_to_avatar_similarities(created, geometry, scan_input, log=print) -> dict:
    """The two scan->avatar similarities (see the module docstring) and what they tell."""
    avatar_input = created.source_camera()
    vertices = created.fitted_vertices()
    face = created.region_vertex_mask(("face",))
    avatar_nose = vertices[face][np.argmax(vertices[face][:, 2])]
    scale = distance_ratio_scale(scan_input, geometry.nose_tip, avatar_input, avatar_nose)
    by_cameras = similarity_from_input_cameras(scan_input, avatar_input, scale)
    samples, normals = surface_samples(geometry.vertices, geometry.head_faces, 200_000)
    head_points = vertices[created.region_vertex_mask(ICP_REGIONS)]
    start = initial_alignment(head_points, geometry.head_vertices, by_cameras.rotation.T, avatar_nose,
                              geometry.nose_tip)
    icp = align_icp(head_points, samples, normals, start)
    aligned = icp.avatar_to_scan.inverse()
    head_height_scan = float(geometry.head_vertices[:, 1].max() - geometry.neck_cut_y)
    # how far apart the two mappings put the scan's head (avatar metres, at the head's points)
    gap = np.linalg.norm(aligned.apply(geometry.head_vertices) - by_cameras.apply(geometry.head_vertices), axis=1)
    info = {"scale_camera_m_per_unit": scale, "scale_aligned_m_per_unit": aligned.scale,
            "icp_rms_mm": 1e3 * icp.rms_scan_units * aligned.scale, "icp_iterations": icp.iterations,
            "icp_kept_fraction": icp.kept_fraction,
            "head_height_mm": 1e3 * head_height_scan * aligned.scale,
            "focal_ratio_fitted_to_true": avatar_input.fx / scan_input.fx,
            "mapping_gap_mm_median": 1e3 * float(np.median(gap)), "mapping_gap_mm_max": 1e3 * float(gap.max())}
    log("  alignment: " + ", ".join(f"{k} {v:.4g}" for k, v in info.items()))
    return {"aligned": aligned, "camera": by_cameras, "info": info, "avatar_input": avatar_input}


def avatar_cameras(views, scan_input, mapping: dict) -> dict[str, list]:
    return {"aligned": [camera_through_similarity(v.camera, mapping["aligned"]) for v in views],
            "camera": [relative_avatar_camera(v.camera, scan_input, mapping["avatar_input"],
                                              mapping["camera"].scale) for v in views]}


# ----------------------------------------------------------------------------- scoring

def below_neck_cut(depth: np.ndarray, camera, neck_cut_y: float, scan_to_avatar, margin_px: int = 2) -> np.ndarray:
    """(H, W) bool: avatar pixels whose surface (depth (H, W), 0 = empty) lies below the
    ground truth's neck cut mapped into avatar space, grown by ``margin_px`` so the soft
    fringe (alpha < 0.5, no depth) along the avatar's own lower edge goes with them."""
    from scipy import ndimage

    plane = transform_plane(np.array([0.0, 1.0, 0.0]), neck_cut_y, scan_to_avatar)
    below = (np.asarray(depth) > 0) & ~above_plane_mask(depth, camera, *plane)
    if not margin_px or not below.any():
        return below
    return below | (ndimage.binary_dilation(below, iterations=margin_px) & ~(np.asarray(depth) > 0))


def score_view(gt_rgba: np.ndarray, render, camera, scan_to_avatar, neck_cut_y: float, lpips_fn,
               yaw_deg: float = 0.0, pitch_deg: float = 0.0, mapping: str = "") -> tuple:
    """-> (ViewScore, ground-truth image, avatar image) of one view, both images (H, W, 3)
    on white. ``render`` is a RenderedView with depth, ``camera`` the avatar camera it was
    rendered with, ``scan_to_avatar`` the similarity that camera came from."""
    keep = ~below_neck_cut(render.depth, camera, neck_cut_y, scan_to_avatar)
    gt_alpha = gt_rgba[..., 3].astype(np.float64) / 255.0
    rgba = render.rgba.copy()
    rgba[..., 3] *= keep  # what lies below the ground truth's neck cut is not part of the head
    mask = evaluation_mask(gt_alpha, rgba[..., 3])
    gt_image, avatar_image = composite(gt_rgba, BACKGROUND), composite(rgba, BACKGROUND)
    score = ViewScore(yaw_deg, pitch_deg, mapping, masked_psnr(avatar_image, gt_image, mask),
                      masked_ssim(avatar_image, gt_image, mask),
                      lpips_fn(avatar_image, gt_image, mask) if lpips_fn else None,
                      masked_psnr(avatar_image, gt_image, interior_mask(gt_alpha, rgba[..., 3])),
                      silhouette_iou(gt_alpha, rgba[..., 3]))
    return score, gt_image, avatar_image


SUMMARY_FIELDS = ("psnr_db", "ssim", "lpips", "psnr_interior_db", "silhouette_iou")


def summarize(scores: list[ViewScore], mapping: str) -> list[dict]:
    """Rows {bucket, pitch, views, <mean of each SUMMARY_FIELDS>} per |yaw| bucket and pitch,
    then one over all novel views (every view but the input's yaw 0 / pitch 0)."""
    rows = []
    chosen = [s for s in scores if s.mapping == mapping]
    pitches = sorted({s.pitch_deg for s in chosen}, key=lambda p: (p != 0, -p))
    for pitch in pitches:
        for _, _, label in YAW_BUCKETS:
            group = [s for s in chosen if s.pitch_deg == pitch and yaw_bucket(s.yaw_deg) == label]
            if group:
                rows.append({"bucket": label, "pitch": f"{pitch:+.0f}", "views": len(group), **_means(group)})
    novel = [s for s in chosen if not (s.yaw_deg == 0 and s.pitch_deg == 0)]
    rows.append({"bucket": "all novel", "pitch": "all", "views": len(novel), **_means(novel)})
    return rows


def _means(group: list[ViewScore]) -> dict:
    out = {}
    for name in SUMMARY_FIELDS:
        values = [getattr(s, name) for s in group if getattr(s, name) is not None]
        out[name] = float(np.mean(values)) if values else None
    return out


def print_backend_table(backend: str, scores: list[ViewScore]) -> None:
    aligned, camera = summarize(scores, "aligned"), summarize(scores, "camera")
    print(f"\nbackend {backend!r}: ground truth vs avatar; PSNR (dB) / SSIM / LPIPS over both foregrounds, "
          "interior PSNR over the shared foreground, silhouette IoU")
    print("| \\|yaw\\| | pitch | views | PSNR | SSIM | LPIPS | interior PSNR | IoU | PSNR (camera) | SSIM (camera) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for a, c in zip(aligned, camera):
        lp = "n/a" if a["lpips"] is None else f"{a['lpips']:.3f}"
        print(f"| {a['bucket']} | {a['pitch']} | {a['views']} | {a['psnr_db']:.2f} | {a['ssim']:.4f} | {lp} | "
              f"{a['psnr_interior_db']:.2f} | {a['silhouette_iou']:.3f} | {c['psnr_db']:.2f} | {c['ssim']:.4f} |")


# ----------------------------------------------------------------------------- one backend

def run_backend(client, backend: str, args, geometry, views, gt_images, lpips_fn, log=print) -> dict:
    """Make an avatar from the input view (``gt_images[0]``) with ``backend``, render it at
    every view under both camera mappings and score it."""
    log(f"\n[{backend}] creating an avatar from the frontal render ({args.preset})")
    options = {k: v for k, v in (("iterations", args.iterations), ("image_size", args.image_size)) if v}
    created = create_avatar(client, "scan_front.png", png_bytes(gt_images[0]), preset=args.preset, seed=args.seed,
                            diffusion=backend, options=options, log=log)
    log(f"  avatar {created.avatar_id}: {created.seconds:.0f} s, {created.result['splats']} Gaussians, "
        f"input PSNR {created.result['metrics'].get('input_psnr_db', float('nan')):.2f} dB (server's own)")
    mapping = scan_to_avatar_similarities(created, geometry, views[0].camera, log)
    cameras = avatar_cameras(views, views[0].camera, mapping)
    started = time.perf_counter()
    renders = {name: render_views(client, created, cams, depth=True) for name, cams in cameras.items()}
    log(f"  rendered {2 * len(views)} views in {time.perf_counter() - started:.1f} s")
    scores, pairs = [], {}
    for name in MAPPINGS:
        for view, gt, render, cam in zip(views, gt_images, renders[name], cameras[name]):
            score, gt_image, avatar_image = score_view(gt, render, cam, mapping[name], geometry.neck_cut_y,
                                                       lpips_fn if name == "aligned" else None, view.yaw_deg,
                                                       view.pitch_deg, name)
            scores.append(score)
            pairs[(name, view.yaw_deg, view.pitch_deg)] = (gt_image, avatar_image)
    return {"backend": backend, "created": created, "scores": scores, "pairs": pairs, "alignment": mapping["info"]}


def quality_figure(results: list[dict], gt_images: list[np.ndarray], path: Path) -> Path:
    """Per backend two rows: ground truth (input first) over the avatar (its input-camera
    render first, then the aligned held-out views)."""
    union = np.any([g[..., 3] > 0 for g in gt_images], axis=0)
    rows_sl, cols_sl = mask_bbox(union, margin=6)
    crop = lambda im: square_crop(im, rows_sl, cols_sl)  # noqa: E731
    rows, labels = [], []
    for result in results:
        pairs = result["pairs"]
        gt_row = [crop(pairs[("camera", 0.0, 0.0)][0])]
        av_row = [crop(pairs[("camera", 0.0, 0.0)][1])]
        for yaw, pitch in FIGURE_VIEWS:
            gt_image, avatar_image = pairs[("aligned", float(yaw), float(pitch))]
            gt_row.append(crop(gt_image))
            av_row.append(crop(avatar_image))
        rows += [gt_row, av_row]
        labels += ["ground truth", f"avatar ({result['backend']})"]
    columns = ["input"] + [f"yaw {y:+d} pitch {p:+d}" if p else f"yaw {y:+d}" for y, p in FIGURE_VIEWS]
    return grid_figure(rows, path, tile_px=128, column_labels=columns, row_labels=labels)


# ----------------------------------------------------------------------------- main

def backends_to_run(client, args) -> list[str]:
    info = client.info()
    usable = [m["name"] for m in info.get("diffusion_models", []) if m.get("usable")]
    if args.backends:
        wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in wanted if b != "none" and b not in usable]
        if unknown:
            raise SystemExit(f"backend(s) {', '.join(unknown)} not usable on this server (usable: "
                             f"{', '.join(['none'] + usable)}); pass --models-config FILE for diffusion models")
        return wanted
    return ["none"] + usable


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="draft")
    parser.add_argument("--backends", help="comma-separated: none and/or diffusion model names "
                                           "(default: none + every usable model of --models-config)")
    parser.add_argument("--models-config", help="diffusion models configuration for the server")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--size", type=int, default=512, help="ground-truth and input image size (pixels)")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, help="override the preset's optimization iterations")
    parser.add_argument("--image-size", type=int, help="override the preset's training crop size")
    parser.add_argument("--portraits", action="store_true", help="also run the real-portrait identity benchmark")
    parser.add_argument("--no-scan", action="store_true", help="skip the scan benchmark (with --portraits)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE)
    parser.add_argument("--figures", type=Path, default=FIGURES,
                        help="folder for quality_grid.png / portraits_grid.png")
    parser.add_argument("--json", type=Path, help="also write every per-view score to this file")
    return parser.parse_args(argv)


def run_scan(client, args, lpips_status) -> dict:
    geometry = scan_geometry(SCAN)
    height = float(geometry.head_vertices[:, 1].max() - geometry.neck_cut_y)
    views = held_out_views(geometry.head_centre, CAMERA_DISTANCE_HEIGHTS * height, size=args.size, fov_y_deg=FOV_Y_DEG)
    print(f"scan: {SCAN.name}, neck cut at y = {geometry.neck_cut_y:.3f} scan units, head height {height:.2f} "
          f"units, {len(views)} views; input camera at {CAMERA_DISTANCE_HEIGHTS:g} head heights, fov {FOV_Y_DEG:g} deg")
    spec = GroundTruthSpec(str(SCAN), geometry.neck_cut_y, [v.camera.to_wire() for v in views], samples=args.samples)
    gt_images = ground_truth(spec, args.cache_dir)
    results = [run_backend(client, backend, args, geometry, views, gt_images, lpips_status.fn)
               for backend in backends_to_run(client, args)]
    print(f"\n## Ground-truth benchmark: preset {args.preset}, device {args.device}, {time.strftime('%Y-%m-%d')}, "
          f"LPIPS: {lpips_status.reason}")
    for result in results:
        created, info = result["created"], result["alignment"]
        print(f"\n[{result['backend']}] avatar in {created.seconds:.0f} s ({created.result['splats']} Gaussians); "
              f"aligned: {info['scale_aligned_m_per_unit'] * 1e3:.2f} mm per scan unit, ICP RMS "
              f"{info['icp_rms_mm']:.2f} mm over {100 * info['icp_kept_fraction']:.0f}% of the head mesh; "
              f"camera mapping {info['scale_camera_m_per_unit'] * 1e3:.2f} mm per unit, places the head "
              f"{info['mapping_gap_mm_median']:.1f} mm (median) from the aligned one")
        print_backend_table(result["backend"], result["scores"])
    figure = quality_figure(results, gt_images, args.figures / "quality_grid.png")
    print(f"\nfigure: {figure} ({figure.stat().st_size / 1e3:.0f} kB)")
    return {"scan": [{"backend": r["backend"], "alignment": r["alignment"], "seconds": r["created"].seconds,
                      "result": r["created"].result, "scores": [vars(s) for s in r["scores"]]} for r in results]}


def main(argv=None) -> None:
    args = parse_args(argv)
    os.chdir(ROOT)
    lpips_status = load_lpips()
    record = {"preset": args.preset, "device": args.device, "date": time.strftime("%Y-%m-%d"), "argv": sys.argv[1:]}
    with bench_server(args.device, args.models_config) as client:
        if not args.no_scan:
            record.update(run_scan(client, args, lpips_status))
        if args.portraits:
            from bench.quality_portraits import run_portraits

            record["portraits"] = run_portraits(client, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1, default=str))
        print(f"scores: {args.json}")


if __name__ == "__main__":
    main()

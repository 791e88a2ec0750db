"""Scaling study: how the cost of training and rendering grows with Gaussian count, image
size and frames per render request, so users can pick presets knowingly.

    python -m bench.scaling                  # CPU: 5k..100k Gaussians, 128..512 px, 1..32 frames (~5 min)
    python -m bench.scaling --device cuda    # GPU: up to 400k Gaussians and 1920x1080
    python -m bench.scaling --quick          # fewer points (the suite's smoke run)

Tables (best of several runs, as ``timeit`` advises on a shared machine; power-law
exponents fitted on log-log axes, cost ~ c * x^k):
  (a) one optimization iteration of the real optimizer (``optimize_splats``: pose the
      head, render, photometric + alpha + normal losses, backward, densification
      bookkeeping, Adam) vs Gaussian count, at a fixed training size;
  (b) the same vs training image size, at a fixed count;
  (c) one render (no autograd, ``render_avatar``) vs Gaussian count and vs image size;
  (d) a whole ``render.frames`` request through a real server (validation, posing,
      rendering, PNG encoding, streaming) vs frames per request: fixed cost + per frame.
The scene is the built-in head at its rest pose with N Gaussians spread over it
(``initialize_splats``), seen from the front at 60 cm. Densification never fires (it would
change N mid-measurement). A plot of all four goes to docs/images/results/scaling.png.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "images" / "results" / "scaling.png"
DISTANCE_M = 0.6
FOV_Y_DEG = 25.0


def require_matplotlib():
    """matplotlib.pyplot with the file-only backend, or SystemExit saying how to get it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("bench.scaling draws its plot with matplotlib, which is not installed: "
                         "pip install -c constraints.txt matplotlib (or the project's 'bench' extra), "
                         "or pass --no-plot for the tables only") from None
    return plt


# ----------------------------------------------------------------------------- fits (pure)

def fit_power_law(x, y) -> tuple[float, float]:
    """(c, k) of the least-squares line log y = log c + k log x; x, y > 0 (n,)."""
    lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
    k, log_c = np.polyfit(lx, ly, 1)
    return float(math.exp(log_c)), float(k)


def fit_line(x, y) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line y = a + b x (n,)."""
    b, a = np.polyfit(np.asarray(x, np.float64), np.asarray(y, np.float64), 1)
    return float(a), float(b)


@dataclass
class Series:
    """One measured curve: x values, seconds per x, and what x is."""

    name: str
    x_label: str
    x: list[float]
    seconds: list[float]

    def exponent(self) -> float:
        return fit_power_law(self.x, self.seconds)[1] if len(self.x) >= 2 else float("nan")


# ----------------------------------------------------------------------------- scene

@dataclass
class Scene:
    head_model: object
    vertices: torch.Tensor   # (V, 3) rest pose, head space
    params: dict             # numpy head parameters of one frame


def load_scene(device: torch.device) -> Scene:
    from compute_server.head.model import HeadParams
    from compute_server.pipeline.head_models import HeadModelCatalog

    head_model = HeadModelCatalog([]).load("builtin", device)
    params = HeadParams.zeros(head_model, 1, device=device)
    with torch.no_grad():
        vertices = head_model(params).vertices[0]
    return Scene(head_model, vertices, {k: v[0] for k, v in params.to_numpy().items()})


def splats_on_head(scene: Scene, count: int, device: torch.device, sh_degree: int = 1):
    from compute_server.training.init import InitSettings, initialize_splats

    hm = scene.head_model
    verts = scene.vertices.cpu().numpy().astype(np.float64)
    model = initialize_splats(verts, hm.faces.cpu().numpy(), hm.face_region.cpu().numpy(), list(hm.region_names),
                              np.full((len(verts), 3), 0.6), InitSettings(count=count, sh_degree=sh_degree),
                              np.random.default_rng(0))
    model.params = model.params.to(device)
    model.binding = model.binding.to(device)
    return model


def front_camera(scene: Scene, width: int, height: int):
    from compute_server.views.sampling import head_centre
    from shared.camera import orbit_camera

    centre = head_centre(scene.vertices.cpu().numpy())
    return orbit_camera(0.0, 0.0, DISTANCE_M, target=centre, width=width, height=height, fov_y_deg=FOV_Y_DEG)


def training_view(scene: Scene, size: int):
    """A front view whose target is the mesh shaded by its normals (structure to fit)."""
    from compute_server.views.records import TrainingView
    from compute_server.views.surface import render_surface

    camera = front_camera(scene, size, size)
    surface = render_surface(scene.vertices.cpu().numpy(), scene.head_model.faces.cpu().numpy(), [camera])[0]
    shade = np.clip(0.25 + 0.75 * np.abs(surface.normals_camera[..., 2:3]), 0, 1) * np.array([0.9, 0.7, 0.6])
    mask = surface.mask.astype(np.float32)
    return TrainingView(image=(shade * mask[..., None]).astype(np.float32), mask=mask, camera=camera,
                        head_params=scene.params, normals=surface.normals_camera.astype(np.float32), kind="input")


# ----------------------------------------------------------------------------- measurements

def seconds_per_iteration(scene: Scene, count: int, size: int, device: torch.device, iterations: int = 51) -> float:
    """Steady-state seconds per iteration: the optimizer reports progress every 10
    iterations; the fastest 10-iteration interval after the first (warm-up) is taken (best
    of N, as ``timeit`` advises: on a shared machine the slower ones measure the
    neighbours). iterations >= 12 (then the single interval 10 -> 11 is used)."""
    from compute_server.pipeline.presets import preset
    from compute_server.training.optimize import optimize_splats

    if iterations < 12:
        raise ValueError("seconds_per_iteration needs at least 12 iterations (10 of warm-up)")
    settings = preset("draft").optimize
    never = replace(settings.densify, refine_start=iterations + 1, refine_stop=iterations + 2,
                    reset_opacity_every=0)
    settings = replace(settings, iterations=iterations, preview_every=0, densify=never, normal_start_fraction=0.0)
    stamps: dict[int, float] = {}

    def progress(fraction, message, preview):
        stamps[round(fraction * iterations) - 1] = time.perf_counter()

    model = splats_on_head(scene, count, device)
    optimize_splats(model, scene.head_model, [training_view(scene, size)], settings, progress=progress)
    steps = sorted(k for k in stamps if k >= 10)
    return min((stamps[b] - stamps[a]) / (b - a) for a, b in zip(steps, steps[1:]))


def seconds_per_render(scene: Scene, model, width: int, height: int, device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` renders (after one warm-up) of the head from the front."""
    from compute_server.camera_torch import stack_cameras
    from compute_server.splats.render_avatar import render_avatar

    viewmats, Ks = stack_cameras([front_camera(scene, width, height)], device=device)
    faces = scene.head_model.faces
    with torch.no_grad():
        return fastest_seconds(lambda: render_avatar(model, scene.vertices, faces, viewmats, Ks, width, height),
                               device, repeats)


def fastest_seconds(run, device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` calls of ``run()`` after one warm-up call (the best of several
    runs is the figure least disturbed by other work, as ``timeit`` advises); waits for the
    GPU before and after each call so asynchronous kernels are counted."""
    times = []
    for i in range(repeats + 1):
        _sync(device)
        started = time.perf_counter()
        run()
        _sync(device)
        if i:
            times.append(time.perf_counter() - started)
    return min(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def render_request_seconds(frame_counts: list[int], size: int, device: str, repeats: int) -> list[float]:
    """Client-side wall time (fastest of ``repeats``) of render.frames requests (turntable
    cameras) of each length, for a small avatar made once on an in-process server."""
    from bench.quality_avatars import bench_server, create_avatar
    from bench.fit import astronaut_bytes
    from shared.camera import turntable

    fastest = []
    with bench_server(device) as client:
        created = create_avatar(client, "astronaut.png", astronaut_bytes(), preset="draft",
                                options={"iterations": 20, "image_size": 128}, log=lambda *a: None)
        portrait = created.source_camera()
        centre = np.asarray(created.rig["rest_vertices"]).mean(axis=0)
        distance = float(np.linalg.norm(portrait.position - centre))
        for n in frame_counts:
            cameras = turntable(n, distance=distance, target=centre, width=size, height=size)
            params = {"avatar": created.avatar_id, "params": created.frame_params(n),
                      "cameras": [c.to_wire() for c in cameras], "format": "png"}
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                client.wait_job(client.submit("render.frames", params), timeout_s=3600)
                times.append(time.perf_counter() - started)
            fastest.append(min(times))
    return fastest


# ----------------------------------------------------------------------------- report

def print_series(title: str, series: list[Series], unit_ms: bool = True) -> None:
    from bench.raster import print_table

    rows = []
    for s in series:
        for x, sec in zip(s.x, s.seconds):
            rows.append([s.name, f"{x:g}", f"{sec * 1e3:.1f}" if unit_ms else f"{sec:.2f}"])
        rows.append([s.name, "exponent k", f"{s.exponent():.2f}"])
    print_table(title, ["series", "x", "ms" if unit_ms else "s"], rows)


def plot(series_by_panel: dict[str, list[Series]], frames: tuple[list[int], list[float]], title: str,
         path: Path) -> Path:
    plt = require_matplotlib()
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig, axes = plt.subplots(1, len(series_by_panel) + 1, figsize=(4.2 * (len(series_by_panel) + 1), 3.6))
    for ax, (panel, series) in zip(axes, series_by_panel.items()):
        for s in series:
            ax.loglog(s.x, np.asarray(s.seconds) * 1e3, "o-", label=f"{s.name} (k={s.exponent():.2f})")
        ticks = sorted({x for s in series for x in s.x})
        ax.set_xticks(ticks, [f"{x / 1000:g}k" if x >= 1000 and x % 1000 == 0 else f"{x:.0f}" for x in ticks])
        ax.minorticks_off()
        # labels at 1-2-5 steps: a curve inside one decade would otherwise get no y label at all
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(series[0].x_label)
        ax.set_ylabel("ms")
        ax.set_title(panel, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    counts, seconds = frames
    a, b = fit_line(counts, seconds)
    ax.plot(counts, seconds, "o", label="measured")
    ax.plot(counts, [a + b * n for n in counts], "-", label=f"{a:.2f} s + {b * 1e3:.0f} ms/frame")
    ax.set_xlabel("frames per render.frames request")
    ax.set_ylabel("s")
    ax.set_title("render request (server, PNG)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plan(device: torch.device, quick: bool) -> dict:
    gpu = device.type == "cuda"
    if gpu:
        return {"counts": [25_000, 50_000, 100_000, 200_000, 400_000], "train_size": 512,
                "sizes": [256, 512, 768, 1024], "render_sizes": [(256, 256), (512, 512), (1024, 1024), (1920, 1080)],
                "train_count": 100_000, "frames": [1, 4, 16, 64], "frame_size": 512}
    if quick:
        return {"counts": [5_000, 20_000], "train_size": 128, "sizes": [128, 256], "render_sizes": [(128, 128),
                (256, 256)], "train_count": 10_000, "frames": [1, 4], "frame_size": 128}
    return {"counts": [5_000, 10_000, 20_000, 50_000, 100_000], "train_size": 256, "sizes": [128, 192, 256, 384, 512],
            "render_sizes": [(128, 128), (256, 256), (512, 512), (1024, 1024)], "train_count": 20_000,
            "frames": [1, 2, 4, 8, 16, 32], "frame_size": 256}


def main(argv=None) -> None:
    from compute_server.device import describe_device, resolve_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--quick", action="store_true", help="two points per curve (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--no-plot", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    if not args.no_plot:
        require_matplotlib()  # fail before minutes of measuring, not after
    device = resolve_device(args.device)
    p = plan(device, args.quick)
    header = f"device: {describe_device(device)}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}"
    print(header)
    scene = load_scene(device)

    train_count = Series("iteration", "Gaussians", [], [])
    for n in p["counts"]:
        train_count.x.append(n)
        train_count.seconds.append(seconds_per_iteration(scene, n, p["train_size"], device))
    train_size = Series("iteration", "image side (px)", [], [])
    for size in p["sizes"]:
        train_size.x.append(size)
        train_size.seconds.append(seconds_per_iteration(scene, p["train_count"], size, device))
    render_count = Series("render 512x512", "Gaussians", [], [])
    for n in p["counts"]:
        model = splats_on_head(scene, n, device)
        render_count.x.append(n)
        render_count.seconds.append(seconds_per_render(scene, model, 512, 512, device, args.repeats))
    model = splats_on_head(scene, p["train_count"], device)
    render_size = Series(f"render {p['train_count'] // 1000}k", "image side (px)", [], [])
    for w, h in p["render_sizes"]:
        render_size.x.append(math.sqrt(w * h))
        render_size.seconds.append(seconds_per_render(scene, model, w, h, device, args.repeats))
    frame_seconds = render_request_seconds(p["frames"], p["frame_size"], args.device, args.repeats)

    print_series(f"(a) optimization iteration vs Gaussian count ({p['train_size']}x{p['train_size']})", [train_count])
    print_series(f"(b) optimization iteration vs training image side ({p['train_count']} Gaussians)", [train_size])
    print_series("(c) render (no autograd) vs Gaussian count (512x512) and vs image side "
                 f"({p['train_count']} Gaussians; x = sqrt(width x height))", [render_count, render_size])
    a, b = fit_line(p["frames"], frame_seconds)
    from bench.raster import print_table
    print_table(f"(d) render.frames request, {p['frame_size']}x{p['frame_size']} PNG, through the server "
                f"(fit: {a:.2f} s + {b * 1e3:.1f} ms per frame)", ["frames", "s", "ms/frame"],
                [[f"{n}", f"{s:.2f}", f"{s / n * 1e3:.0f}"] for n, s in zip(p["frames"], frame_seconds)])
    if not args.no_plot:
        train_size_count = replace(train_size, name=f"iteration {p['train_count'] // 1000}k")
        path = plot({"cost vs Gaussian count": [replace(train_count, name=f"iteration {p['train_size']} px"),
                                                render_count],
                     "cost vs image side": [train_size_count, render_size]},
                    (p["frames"], frame_seconds), header, args.plot)
        print(f"\nplot: {path}")


if __name__ == "__main__":
    main()

"""The performance suite: every benchmark of bench/ in one run, each printing its tables.

    python -m bench.suite                       # CPU, reduced sizes (about 30-60 min on 2 cores)
    python -m bench.suite --full                # CPU, full sizes (hours)
    python -m bench.suite --device cuda         # GPU, full sizes
    python -m bench.suite --only raster,presets # some sections (see --list)

Sections (each runs in its own process, so one failing or crashing does not stop the
others, and bpy / CUDA state never leaks between them):
  protocol   50 MB splat payload through the client library vs raw pyzmq     (bench/protocol.py)
  raster     CPU rasterizer fwd+bwd vs the dense reference; render fps at 512x512 and
             1920x1080 for 25k/100k/400k Gaussians (reduced on CPU: 6k/25k/100k)  (bench/raster.py)
  presets    avatar.create stage times per preset, optimization measured over a few
             iterations and projected to the preset's full length           (this file)
  e2e        portrait -> avatar, end to end through a server, with identity    (bench/fit.py)
  render     fps of a real avatar at 512x512 and 1920x1080, raster and whole request
             (its final Gaussian count; standard preset on a GPU)            (bench/render.py)
  blender    Blender-side import and viewport-preview update for 100k splats  (bench/blender_viewport.py)
  scaling    cost vs Gaussian count, image size and frames per request, plot  (bench/scaling.py)
  quality    ground-truth scan benchmark (long; not in the default set)       (bench/quality.py)
A summary of every section's exit status and wall time ends the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SECTIONS = ("protocol", "raster", "presets", "e2e", "render", "blender", "scaling")
ALL_SECTIONS = DEFAULT_SECTIONS + ("quality",)


@dataclass(frozen=True)
class Section:
    name: str
    argv: list[str]          # after the Python interpreter
    note: str


def sections(device: str, full: bool) -> dict[str, Section]:
    """The command of each section for this device / size; pure (tested)."""
    gpu = device.startswith("cuda")
    big = full or gpu
    dev = ["--device", device]
    return {
        "protocol": Section("protocol", ["bench/protocol.py"] + ([] if big else ["--splats", "50000", "--reps", "5"]),
                            "210k splats (50 MB)" if big else "50k splats (12 MB), 5 reps"),
        "raster": Section("raster", ["-m", "bench.raster"] + dev + (["--full"] if big else ["--repeats", "3"]),
                          "full counts" if big else "reduced counts, 3 repeats"),
        "presets": Section("presets", ["-m", "bench.suite", "--run-presets"] + dev
                           + ["--preset-iterations", "200" if gpu else ("60" if full else "30")],
                           "all presets, optimization projected from a short run"),
        "e2e": Section("e2e", ["-m", "bench.fit"] + dev + ["--preset", "standard" if gpu else "draft"]
                       + ([] if big else ["--iterations", "300"]),
                       "standard preset" if gpu else ("draft preset" if full else "draft preset, 300 iterations")),
        "render": Section("render", ["-m", "bench.render"] + dev
                          + (["--preset", "standard", "--iterations", "0"] if gpu else
                             ["--iterations", "0" if full else "300"]),
                          "standard-preset avatar" if gpu else ("draft avatar" if full else "draft avatar, 300 iterations")),
        "blender": Section("blender", ["-m", "bench.blender_viewport"] + ([] if big else ["--quick"]),
                           "25k/100k/300k splats" if big else "25k/100k splats"),
        "scaling": Section("scaling", ["-m", "bench.scaling"] + dev, "plot: docs/images/results/scaling.png"),
        "quality": Section("quality", ["-m", "bench.quality"] + dev + ["--preset", "standard" if gpu else "draft"],
                           "ground-truth scan; figure docs/images/results/quality_grid.png"),
    }


def run_section(section: Section, log_dir: Path | None) -> tuple[int, float]:
    """Run one section, streaming its output (and into log_dir/<name>.log); -> (exit code, seconds)."""
    print(f"\n{'=' * 78}\n== {section.name}: {section.note}\n== {sys.executable} {' '.join(section.argv)}\n"
          f"{'=' * 78}", flush=True)
    started = time.perf_counter()
    log = open(log_dir / f"{section.name}.log", "w") if log_dir else None
    try:
        proc = subprocess.Popen([sys.executable, *section.argv], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for line in proc.stdout:
            if line.startswith("Fra:") or "| INFO:" in line:  # Blender's per-tile render chatter
                continue
            sys.stdout.write(line)
            if log:
                log.write(line)
        code = proc.wait()
    finally:
        if log:
            log.close()
    return code, time.perf_counter() - started


# ----------------------------------------------------------------------------- presets section

ITERATION_MESSAGE = re.compile(r"iteration (\d+)/(\d+)")


def steady_iteration_rate(stamps: list[tuple[float, str]], skip: int = 10) -> float | None:
    """Iterations per second from (receive time s, progress message) pairs of an
    ``avatar.create`` job: between the first report past iteration ``skip`` (warm-up) and
    the last one; None with fewer than two such reports."""
    points = [(t, int(m.group(1))) for t, msg in stamps if (m := ITERATION_MESSAGE.search(msg))
              and int(m.group(1)) > skip]
    if len(points) < 2 or points[-1][1] == points[0][1]:
        return None
    (t0, i0), (t1, i1) = points[0], points[-1]
    return (i1 - i0) / max(t1 - t0, 1e-9)


def preset_timings(device: str, iterations: int) -> None:
    """avatar.create of the astronaut for every preset with ``iterations`` optimization
    steps, after one untimed warm-up job (model loading, first-call costs); prints the
    measured stage times and the optimization projected to the preset's full length at the
    steady rate measured between progress reports (densification makes late iterations
    somewhat dearer, so the projection is a lower bound)."""
    from bench.fit import astronaut_bytes
    from bench.quality_avatars import bench_server, create_avatar
    from bench.raster import print_table
    from compute_server.pipeline.presets import PRESETS, preset

    rows = []
    photo = astronaut_bytes()
    with bench_server(device) as client:
        create_avatar(client, "warm-up.png", photo, preset="draft", options={"iterations": 1, "image_size": 96},
                      log=lambda *a: None)
        for name in PRESETS:
            full = preset(name)
            stamps: list[tuple[float, str]] = []
            created = create_avatar(client, "astronaut.png", photo, preset=name, options={"iterations": iterations},
                                    log=lambda *a: None,
                                    on_progress=lambda e: stamps.append((time.perf_counter(), e.get("message", ""))))
            t = created.result["timings_s"]
            rate = steady_iteration_rate(stamps) or created.result["metrics"]["iterations_per_s"]
            projected = full.optimize.iterations / rate
            fixed = sum(v for k, v in t.items() if k != "optimize")
            rows.append([name, f"{full.image_size}", f"{full.init.count}", f"{full.optimize.iterations}",
                         f"{created.result['splats']}", f"{rate:.2f}"]
                        + [f"{t.get(k, 0):.1f}" for k in ("prepare", "fit", "views", "optimize", "save")]
                        + [f"{projected:.0f}", f"{(fixed + projected) / 60:.1f}"])
            print(f"  {name}: {created.seconds:.0f} s for {iterations} iterations", flush=True)
    print_table(f"avatar.create per preset (astronaut; {iterations} iterations measured, optimization projected to "
                f"the preset's length), device {device}",
                ["preset", "px", "init", "iterations", "splats", "it/s", "prepare s", "fit s", "views s",
                 f"optimize s ({iterations} it)", "save s", "optimize s (proj.)", "total min (proj.)"], rows)


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda implies full sizes)")
    parser.add_argument("--full", action="store_true", help="full sizes on CPU too")
    parser.add_argument("--only", help=f"comma-separated sections of: {', '.join(ALL_SECTIONS)}")
    parser.add_argument("--list", action="store_true", help="print the sections' commands and exit")
    parser.add_argument("--log-dir", type=Path, help="also write each section's output to DIR/<section>.log")
    parser.add_argument("--run-presets", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset-iterations", type=int, default=20, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_presets:
        preset_timings(args.device, args.preset_iterations)
        return 0
    table = sections(args.device, args.full)
    chosen = [s.strip() for s in args.only.split(",")] if args.only else list(DEFAULT_SECTIONS)
    unknown = [s for s in chosen if s not in table]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(ALL_SECTIONS)}")
    if args.list:
        for name in chosen:
            print(f"{name:9} {sys.executable} {' '.join(table[name].argv)}")
        return 0
    if "blender" in chosen and not (ROOT / "bench" / "blender_viewport.py").exists():
        print("bench/blender_viewport.py is not in this checkout: skipping the blender section")
        chosen.remove("blender")
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    print(f"HeadSplat benchmark suite, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()} "
          f"({platform.machine()}, {os.cpu_count()} CPUs), Python {platform.python_version()}, device {args.device}, "
          f"{'full' if args.full or args.device.startswith('cuda') else 'reduced'} sizes")
    results = {name: run_section(table[name], args.log_dir) for name in chosen}
    print(f"\n{'=' * 78}\nsummary")
    for name, (code, seconds) in results.items():
        print(f"  {name:9} {'ok' if code == 0 else f'FAILED (exit {code})':18} {seconds / 60:6.1f} min")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

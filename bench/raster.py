"""Rasterizer benchmarks: print tables of timings and ratios.

    python -m bench.raster                 # CPU, reduced Gaussian counts (a few minutes)
    python -m bench.raster --full          # CPU, the full 25k / 100k / 400k counts
    python -m bench.raster --device cuda   # GPU: gsplat for rendering, full counts

Tables:
  (a) torch rasterizer forward+backward vs the dense N x pixels reference (ratio);
  (b) training step (forward+backward) at training resolutions (the CPU "draft" preset);
  (c) render frames per second at 512x512 and 1920x1080 (no autograd);
  (d) mesh rasterizer (visibility + barycentrics) for a 10k-triangle mesh and the real head scan.
Scenes are synthetic but head-like: Gaussians on a 10 cm sphere, tangent to it, sized to tile
the surface, seen by a 30-degree camera at 60 cm (the head fills about a third of the frame).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from compute_server.device import describe_device, resolve_device
from compute_server.render import rasterize_mesh
from compute_server.splats.rasterize import rasterize_splats
from shared.camera import orbit_camera
from tests.raster_oracle import rasterize_splats_dense_reference

HEAD_SCAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "heads" / "leeperrysmith" / "LeePerrySmith.glb"


def head_like_splats(n: int, seed: int = 0, device="cpu", radius: float = 0.1):
    """n Gaussians tangent to a sphere (flat along the normal), random colours and opacities."""
    g = torch.Generator().manual_seed(seed)
    normals = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = normals * radius * (1 + 0.01 * torch.randn(n, 1, generator=g))
    spacing = math.sqrt(4 * math.pi * radius**2 / n)
    jitter = torch.exp(0.25 * torch.randn(n, 3, generator=g))
    scales = torch.tensor([0.6 * spacing, 0.6 * spacing, 0.08 * spacing]) * jitter
    z = torch.tensor([0.0, 0.0, 1.0])
    half = torch.nn.functional.normalize(normals + z + 1e-6, dim=-1)  # rotation taking +z to the normal
    quats = torch.cat([(half * z).sum(-1, keepdim=True), torch.cross(z.expand_as(half), half, dim=-1)], -1)
    opacities = 0.5 + 0.5 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    return [t.to(device) for t in (means, quats, scales, opacities, colors)]


def cameras(width: int, height: int, n_cams: int = 1, device="cpu"):
    cams = [orbit_camera(25.0 * i, 8.0, 0.6, width=width, height=height, fov_y_deg=30.0) for i in range(n_cams)]
    viewmats = torch.tensor(np.stack([c.world_to_camera for c in cams]), dtype=torch.float32, device=device)
    Ks = torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32, device=device)
    return viewmats, Ks


def timed(fn, repeats: int, device) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(render, splats, viewmats, Ks, width, height):
    """One forward+backward of an L1-style loss on colour and alpha."""
    def step():
        params = [t.detach().requires_grad_(True) for t in splats]
        colors, alphas, _ = render(*params, viewmats, Ks, width, height)
        (colors.abs().mean() + alphas.mean()).backward()
    return step


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def bench_vs_dense(device, repeats: int) -> None:
    rows = []
    torch_path = lambda *a: rasterize_splats(*a, backend="torch")  # noqa: E731
    for size, n in ((64, 1000), (64, 4000), (128, 1000), (128, 4000)):
        splats = head_like_splats(n, device=device)
        viewmats, Ks = cameras(size, size, device=device)
        fast = timed(train_step(torch_path, splats, viewmats, Ks, size, size), repeats, device)
        dense = timed(train_step(rasterize_splats_dense_reference, splats, viewmats, Ks, size, size),
                      max(1, repeats // 2), device)
        rows.append([f"{size}x{size}", f"{n}", f"{fast * 1e3:.1f}", f"{dense * 1e3:.1f}", f"{dense / fast:.1f}x"])
    print_table("(a) torch rasterizer vs dense reference, forward+backward, 1 camera",
                ["image", "gaussians", "torch ms", "dense ms", "speed-up"], rows)


def bench_train_steps(device, repeats: int) -> None:
    rows = []
    for size, n in ((128, 10_000), (256, 10_000), (256, 20_000), (256, 30_000), (512, 30_000)):
        splats = head_like_splats(n, device=device)
        viewmats, Ks = cameras(size, size, device=device)
        seconds = timed(train_step(rasterize_splats, splats, viewmats, Ks, size, size), repeats, device)
        _, _, meta = rasterize_splats(*splats, viewmats, Ks, size, size)
        pairs = meta.get("n_pairs")
        rows.append([f"{size}x{size}", f"{n}", f"{seconds * 1e3:.1f}", f"{1 / seconds:.1f}",
                     "-" if pairs is None else f"{pairs / 1e6:.2f}M"])
    print_table("(b) training step (forward+backward), 1 camera, default backend",
                ["image", "gaussians", "ms/step", "steps/s", "pixel-gaussian pairs"], rows)


def bench_render_fps(device, repeats: int, counts: list[int]) -> None:
    rows = []
    for width, height in ((512, 512), (1920, 1080)):
        viewmats, Ks = cameras(width, height, device=device)
        for n in counts:
            splats = head_like_splats(n, device=device)
            with torch.no_grad():
                seconds = timed(lambda: rasterize_splats(*splats, viewmats, Ks, width, height), repeats, device)
                meta = rasterize_splats(*splats, viewmats, Ks, width, height)[2]
            pairs = "-" if "n_pairs" not in meta else f"{meta['n_pairs'] / 1e6:.1f}M"
            rows.append([f"{width}x{height}", f"{n}", meta["backend"], f"{seconds * 1e3:.1f}", f"{1 / seconds:.2f}",
                         pairs])
    print_table("(c) render, no autograd, 1 camera (fewer Gaussians are larger: similar pixel-gaussian pairs)",
                ["image", "gaussians", "backend", "ms/frame", "fps", "pairs"], rows)


def sphere_mesh(n_faces_target: int, radius: float = 0.1):
    """UV sphere with about n_faces_target triangles (a stand-in for a FLAME-sized head mesh)."""
    import trimesh
    count = max(8, int(math.sqrt(n_faces_target / 4)) + 1)  # a uv sphere has ~4 count^2 triangles
    mesh = trimesh.creation.uv_sphere(radius=radius, count=[count, count])
    return torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces)


def bench_mesh(device, repeats: int) -> None:
    rows = []
    meshes = [("sphere", *sphere_mesh(10_000), 0.6)]
    if HEAD_SCAN.exists():
        import trimesh
        scan = trimesh.load(HEAD_SCAN, force="mesh")
        verts = torch.tensor(np.asarray(scan.vertices), dtype=torch.float32)
        meshes.append(("head scan", (verts - verts.mean(0)) * (0.2 / 8.5), torch.tensor(np.asarray(scan.faces)), 0.6))
    for name, verts, faces, distance in meshes:
        for width, height in ((512, 512), (1920, 1080)):
            cam = orbit_camera(20.0, 5.0, distance, width=width, height=height, fov_y_deg=30.0)
            viewmats = torch.tensor(cam.world_to_camera, dtype=torch.float32, device=device)[None]
            Ks = torch.tensor(cam.K, dtype=torch.float32, device=device)[None]
            v, f = verts.to(device), faces.to(device)
            seconds = timed(lambda: rasterize_mesh(v, f, viewmats, Ks, width, height), repeats, device)
            coverage = rasterize_mesh(v, f, viewmats, Ks, width, height).mask.mean().item()
            rows.append([name, f"{len(faces)}", f"{width}x{height}", f"{coverage:.2f}", f"{seconds * 1e3:.1f}"])
    print_table("(d) mesh rasterizer (face ids, barycentrics, depth, mask), 1 camera",
                ["mesh", "triangles", "image", "coverage", "ms"], rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--full", action="store_true", help="full Gaussian counts on CPU (25k/100k/400k)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["a", "b", "c", "d"], nargs="*", help="run only these tables")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    full = args.full or device.type == "cuda"
    counts = [25_000, 100_000, 400_000] if full else [6_250, 25_000, 100_000]
    print(f"device: {describe_device(device)}; torch {torch.__version__}; "
          f"render counts {'full' if full else 'reduced (use --full for 25k/100k/400k)'}")
    only = set(args.only or "abcd")
    if "a" in only:
        bench_vs_dense(device, args.repeats)
    if "b" in only:
        bench_train_steps(device, args.repeats)
    if "c" in only:
        bench_render_fps(device, max(1, args.repeats // 2), counts)
    if "d" in only:
        bench_mesh(device, args.repeats)


if __name__ == "__main__":
    main()

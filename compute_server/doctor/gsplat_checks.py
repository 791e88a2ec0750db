"""gsplat: importable, its CUDA kernels compile, a render agrees with our torch
rasterizer on the same scene, and a training step runs through it.

Why these four: gsplat is needed everywhere (densification surgery uses its strategy
ops), and on a GPU its kernels are JIT-compiled on first use, which fails for the usual
toolchain reasons (no CUDA toolkit, no ninja, a compiler torch does not accept) only
when the first job renders. The agreement check is ``tests/test_splat_raster_cuda.py``'s
in small: the two rasterizers must give the same picture, or avatars trained on a GPU
would not match what the CPU path was validated on.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time

import torch

from .records import FAIL, NO_CUDA, OK, SKIPPED, Check

GROUP = "gsplat"
WIDTH, HEIGHT, N_SPLATS = 64, 48, 400
AGREE_ATOL = 1e-3          # colour and alpha, per pixel
AGREE_FRACTION = 0.999     # of entries within AGREE_ATOL (alpha-threshold flips under fast math)
INSTALL_FIX = ("pip install 'headsplat[gpu]' (gsplat==1.5.3, ninja); its first CUDA use compiles kernels and needs "
               "the CUDA toolkit (nvcc) matching torch's CUDA version")


def _check(name: str, verdict: str, detail: str, fix: str = "", seconds: float | None = None) -> Check:
    return Check(name, verdict, detail, fix, GROUP, None if seconds is None else round(seconds, 3))


def importable_check(*, cheap: bool = False) -> Check:
    """gsplat can be imported (cheap: only that it is installed)."""
    if importlib.util.find_spec("gsplat") is None:
        return _check("gsplat importable", FAIL, "gsplat is not installed (densification needs its strategy ops; "
                                                 "CUDA rendering its kernels)", INSTALL_FIX)
    version = importlib.metadata.version("gsplat")
    if cheap:
        return _check("gsplat importable", OK, f"gsplat {version} is installed")
    try:
        import gsplat  # noqa: F401
        from gsplat.strategy import ops  # noqa: F401
    except Exception as exc:  # a broken install raises anything
        return _check("gsplat importable", FAIL, f"gsplat {version} fails to import ({type(exc).__name__}: {exc})",
                      INSTALL_FIX)
    return _check("gsplat importable", OK, f"gsplat {version} imports")


def small_scene(device: torch.device, seed: int = 21) -> dict:
    """N_SPLATS random Gaussians in front of one camera 2 m from the origin (OpenCV axes)."""
    g = torch.Generator().manual_seed(seed)
    scene = {
        "means": (torch.rand(N_SPLATS, 3, generator=g) - 0.5) * 1.2,
        "quats": torch.randn(N_SPLATS, 4, generator=g),
        "scales": torch.exp(torch.empty(N_SPLATS, 3).uniform_(-4.6, -2.1, generator=g)),
        "opacities": torch.empty(N_SPLATS).uniform_(0.05, 0.95, generator=g),
        "colors": torch.rand(N_SPLATS, 3, generator=g),
        "viewmats": torch.tensor([[[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.0], [0, 0, 0, 1]]]),
        "Ks": torch.tensor([[[float(WIDTH), 0, WIDTH / 2], [0, float(WIDTH), HEIGHT / 2], [0, 0, 1]]]),
    }
    return {k: v.to(device) for k, v in scene.items()}


def _render(scene: dict, backend: str, **overrides):
    from ..splats.rasterize import rasterize_splats

    s = {**scene, **overrides}
    colors, alphas, _ = rasterize_splats(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                                         s["viewmats"], s["Ks"], WIDTH, HEIGHT, backend=backend)
    return colors, alphas


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_check(device: torch.device, backend: str = "gsplat") -> Check:
    """The first gsplat render on this device (JIT-compiles the kernels if needed), timed.
    backend: "torch" runs the same check through the reference path (tests on a CPU)."""
    scene = small_scene(device)
    start = time.perf_counter()
    try:
        colors, _ = _render(scene, backend)
        _sync(device)
    except Exception as exc:
        return _check("gsplat kernels", FAIL, f"the first gsplat render failed ({type(exc).__name__}: {exc})",
                      INSTALL_FIX, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if not torch.isfinite(colors).all():
        return _check("gsplat kernels", FAIL, "gsplat rendered non-finite pixels", INSTALL_FIX, seconds)
    return _check("gsplat kernels", OK, f"compiled and ran (first render {seconds:.1f} s; a compile happens once "
                                        "per machine and gsplat version)", seconds=seconds)


def agreement_check(device: torch.device, backend: str = "gsplat") -> Check:
    """gsplat (``backend``) and our torch rasterizer render the same scene alike."""
    scene = small_scene(device, seed=5)
    ours_rgb, ours_alpha = _render(scene, "torch")
    theirs_rgb, theirs_alpha = _render(scene, backend)
    diffs = torch.cat([(ours_rgb - theirs_rgb).abs().flatten(), (ours_alpha - theirs_alpha).abs().flatten()])
    within = (diffs <= AGREE_ATOL).float().mean().item()
    detail = (f"{within * 100:.2f}% of {WIDTH}x{HEIGHT} pixel values agree within {AGREE_ATOL:g} "
              f"(largest difference {diffs.max().item():.2g}) on {N_SPLATS} Gaussians")
    if within < AGREE_FRACTION:
        return _check("gsplat agrees with torch", FAIL, detail,
                      "reinstall gsplat==1.5.3 for this torch/CUDA (pip install --force-reinstall 'headsplat[gpu]') "
                      "and report the numbers if it persists")
    return _check("gsplat agrees with torch", OK, detail)


def training_step_check(device: torch.device, steps: int = 5, backend: str = "gsplat") -> Check:
    """A few Adam steps through gsplat's backward (``backend``): finite gradients, falling loss."""
    scene = small_scene(device, seed=9)
    target, _ = _render(small_scene(device, seed=10), backend)
    params = {k: scene[k].clone().requires_grad_(True) for k in ("means", "colors")}
    optimizer = torch.optim.Adam(params.values(), lr=1e-2)
    losses = []
    start = time.perf_counter()
    try:
        for _ in range(steps):
            colors, _ = _render(scene, backend, **params)
            loss = (colors - target).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            if not all(torch.isfinite(p.grad).all() for p in params.values()):
                return _check("gsplat training step", FAIL, "gsplat's backward gave non-finite gradients", INSTALL_FIX)
            optimizer.step()
            losses.append(loss.item())
        _sync(device)
    except Exception as exc:
        return _check("gsplat training step", FAIL, f"a training step failed ({type(exc).__name__}: {exc})",
                      INSTALL_FIX, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    detail = f"{steps} Adam steps, L1 {losses[0]:.4f} -> {losses[-1]:.4f}, {seconds / steps * 1e3:.1f} ms a step"
    if not losses[-1] < losses[0]:
        return _check("gsplat training step", FAIL, detail + ": the loss did not fall", INSTALL_FIX, seconds)
    return _check("gsplat training step", OK, detail, seconds=seconds)


def checks(device: torch.device, *, cheap: bool = False) -> list[Check]:
    found = [importable_check(cheap=cheap)]
    gpu_names = ("gsplat kernels", "gsplat agrees with torch", "gsplat training step")
    if device.type != "cuda":
        return found + [_check(name, SKIPPED, f"{NO_CUDA}: gsplat's kernels run only on CUDA (this machine renders "
                                              "and trains with the torch rasterizer)") for name in gpu_names]
    if cheap or found[0].verdict == FAIL:
        why = "not run for the server's summary (run `headsplat doctor`)" if cheap else "gsplat does not import"
        return found + [_check(name, SKIPPED, why) for name in gpu_names]
    compiled = compile_check(device)
    found.append(compiled)
    if compiled.verdict == FAIL:
        return found + [_check(name, SKIPPED, "the kernels did not run") for name in gpu_names[1:]]
    return found + [agreement_check(device), training_step_check(device)]

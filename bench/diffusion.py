"""Diffusion benchmarks: print tables of timings and ratios.

    python -m bench.diffusion                        # CPU: tiny random-weight models (about two minutes)
    python -m bench.diffusion --device cuda          # GPU: + an SD-1.5-sized UNet+ControlNet step, 512 px fp16
    python -m bench.diffusion --device cuda --full   # GPU: + avatar.create "standard" with diffusion

Tables:
  (a) the quick check job submission runs (configs and weight headers, no loading);
  (b) novel-view synthesis of the 16-view GAF ring with each backend (tiny models);
  (c) what GAF's denoising prior adds per optimizer iteration: optimize_splats on a small
      scene with a refresh at every iteration and without the prior (tiny models; k = 250
      keeps the steps few, k = 20 is GAF's), spread over refresh intervals of 10 and 100;
  (d) GPU: one denoising step of a Stable Diffusion 1.5-sized UNet with its ControlNet at
      512 x 512 in half precision (random weights stand in for real ones: same shapes, same
      time), batch 2 (one view with guidance) and 8 (four views), attention slicing off/on;
  (e) GPU: avatar.create with the "standard" preset, without diffusion and with a random
      SD-1.5-sized ControlNet model and the prior: stage timings.
Timings are the best of several wall-clock runs on the machine that runs the script (the
run least disturbed by other load); nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from compute_server.device import describe_device, resolve_device
from compute_server.diffusion.config import PriorConfig
from compute_server.diffusion.registry import DiffusionModels
from compute_server.views.sampling import fixed_ring, head_centre
from tests.diffusion_models import (sd15_unet_config, synthetic_synthesis_input, tiny_model_entries,
                                    write_models_config, write_random_sd15, write_tiny_models)


def table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def timed(fn, repeats: int = 3) -> float:
    """Best of ``repeats`` wall-clock seconds: on a shared machine the fastest run is the
    one least disturbed by other load, so it is the most repeatable figure."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return min(samples)


def quick_check(models: DiffusionModels) -> None:
    rows = []
    for name in models.names:
        cold = timed(lambda: (models.forget_checks(), models.check(name)), 5)   # every config and header read
        warm = timed(lambda: models.check(name), 20)
        rows.append([name, f"{cold * 1e3:.1f}", f"{warm * 1e3:.2f}"])
    table("(a) DiffusionModels.check at job submission (ms; no weights loaded)",
          ["model", "cold (files read)", "cached (folders unchanged)"], rows)


def synthesis(models: DiffusionModels, inp) -> None:
    cameras = [c for _, _, c in fixed_ring(inp.camera, head_centre(inp.vertices))]
    rows = []
    for name in ("tiny-sd", "tiny-sd-ip", "tiny-mv", "tiny-mv-normals"):
        backend = models.backend(name, "cpu")
        load = timed(lambda: (backend.unload(), backend.denoiser()), 1)
        seconds = timed(lambda: backend.synthesizer.synthesize(inp, cameras, weight=0.3), 3)
        rows.append([name, f"{load:.2f}", len(cameras), f"{seconds:.2f}", f"{seconds / len(cameras) * 1e3:.0f}"])
        backend.release()
    table(f"(b) novel-view synthesis, {inp.camera.width} px views, tiny models on the CPU ({torch.get_num_threads()} "
          f"torch thread(s)) "
          f"(model at 64 px, {models.model('tiny-sd').steps} steps x strength {models.model('tiny-sd').strength})",
          ["model", "load s", "views", "synthesis s", "ms / view"], rows)


def prior_overhead(models: DiffusionModels, head, inp, iterations: int, repeats: int = 3) -> None:
    """The cost of one prior refresh inside optimize_splats (rendering the avatar at the
    prior's cameras, the mesh normal maps, denoising, new training views), measured with
    a refresh at every iteration so it dwarfs the noise of a shared machine, then spread
    over the refresh interval."""
    from compute_server.diffusion.prior import IterativeDenoisingPrior
    from compute_server.training.init import InitSettings, initialize_splats
    from compute_server.training.optimize import OptimizeSettings, optimize_splats
    from compute_server.splats.strategy import BindingDensifyStrategy
    from compute_server.views.records import TrainingView

    photo = TrainingView(image=inp.image, mask=inp.matte, camera=inp.camera, head_params=inp.head_params,
                         normals=inp.surface.normals_camera.astype(np.float32), kind="input", name="photo")
    settings = OptimizeSettings(iterations=iterations, prior_start_fraction=0.0, preview_every=0,
                                densify=BindingDensifyStrategy(refine_start=10**9, refine_stop=10**9))

    def run(prior) -> float:
        model = initialize_splats(inp.vertices, inp.faces, inp.face_region, inp.region_names,
                                  inp.vertex_colors.colors, InitSettings(count=4000, sh_degree=1),
                                  np.random.default_rng(0), photo=inp.image, photo_matte=inp.matte,
                                  photo_camera=inp.camera, photo_surface=inp.surface)
        start = time.perf_counter()
        optimize_splats(model, head, [photo], settings, seed=0, prior=prior)
        return time.perf_counter() - start

    configs = [(name, views, k) for name in ("tiny-sd", "tiny-mv") for views, k in ((2, 250), (4, 250), (4, 20))]
    for name in ("tiny-sd", "tiny-mv"):
        models.backend(name, "cpu").denoiser()       # loading is paid once per job, not per iteration
    baseline, with_prior, history = [], {c: [] for c in configs}, {c: [] for c in configs}
    for _ in range(repeats):                          # interleaved, so slow spells hit every configuration
        baseline.append(run(None))
        for config in configs:
            name, views, k = config
            backend = models.backend(name, "cpu")
            model = replace(backend.model, prior=replace(backend.model.prior, refresh_every=1, views=views, k=k))
            prior = IterativeDenoisingPrior(model, backend.denoiser, seed=0)
            with_prior[config].append(run(prior))
            history[config] += prior.history
    base = min(baseline) / iterations
    rows = [["none", "-", "-", "-", "-", "-", f"{base * 1e3:.1f} ms / iteration", "-"]]
    default_every = PriorConfig().refresh_every
    for config in configs:
        name, views, k = config
        per_refresh = min(with_prior[config]) / iterations - base
        denoising = statistics.median(h["seconds"] for h in history[config])
        steps = statistics.mean(h["denoising_steps"] for h in history[config])
        rows.append([name, views, k, f"{steps:.1f}", f"{per_refresh * 1e3:.0f}", f"{denoising * 1e3:.0f}",
                     f"{per_refresh / 10 * 1e3:+.1f} ({per_refresh / 10 / base:+.0%})",
                     f"{per_refresh / default_every * 1e3:+.2f} ({per_refresh / default_every / base:+.1%})"])
    for name in ("tiny-sd", "tiny-mv"):
        models.backend(name, "cpu").release()
    table(f"(c) denoising-prior cost inside optimize_splats, {inp.camera.width} px views, 4000 Gaussians, tiny models, "
          f"CPU, {torch.get_num_threads()} torch thread(s); best of {repeats} runs of {iterations} iterations",
          ["prior", "views", "k", "DDIM steps", "ms / refresh", "of which denoising",
           "overhead / iteration, refresh_every=10", f"refresh_every={default_every} (default)"], rows)


def gpu_step(device: torch.device) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**sd15_unet_config()).to(device, torch.float16).eval()
    controlnet = ControlNetModel.from_unet(unet).to(device, torch.float16).eval()
    rows = []
    for slicing in ("off", "auto"):          # "off": the models' default (scaled-dot-product) attention
        if slicing != "off":
            for module in (unet, controlnet):
                module.set_attention_slice(slicing)
        for batch in (2, 8):
            latents = torch.randn(batch, 4, 64, 64, device=device, dtype=torch.float16)
            text = torch.randn(batch, 77, 768, device=device, dtype=torch.float16)
            condition = torch.rand(batch, 3, 512, 512, device=device, dtype=torch.float16)

            @torch.no_grad()
            def step():
                down, mid = controlnet(latents, 500, encoder_hidden_states=text, controlnet_cond=condition,
                                       return_dict=False)
                unet(latents, 500, encoder_hidden_states=text, down_block_additional_residuals=down,
                     mid_block_additional_residual=mid, return_dict=False)
                torch.cuda.synchronize(device)

            step()
            torch.cuda.reset_peak_memory_stats(device)
            seconds = timed(step, 10)
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            rows.append([slicing, batch, f"{seconds * 1e3:.1f}", f"{seconds * 1e3 / (batch // 2):.1f}",
                         f"{peak:.2f}"])
    table(f"(d) SD-1.5-sized UNet + ControlNet, one denoising step at 512 x 512 fp16 on {describe_device(device)}",
          ["attention slicing", "batch (CFG x views)", "ms / step", "ms / view-step", "peak GiB"], rows)


def full_preset(device: torch.device, root: str) -> None:
    from PIL import Image
    from skimage import data as skdata

    from compute_server.server.app import Server
    from compute_server.server.config import ServerConfig
    from shared.client import Client

    base, controlnet = write_random_sd15(root)
    config = write_models_config(os.path.join(root, "sd15.json"), [{
        "name": "random-sd15", "backend": "controlnet-normal", "base": base, "controlnet": controlnet,
        "resolution": 512, "steps": 30, "strength": 0.75, "guidance_scale": 5.0, "batch_size": 4}])
    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buffer, "PNG")
    rows = []
    for diffusion in ("none", "random-sd15"):
        server = Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=os.path.join(root, f"data-{diffusion}"),
                                     device=str(device), models_config=config))
        server.start_background()
        try:
            with Client(server.endpoint, timeout_s=60) as client:
                start = time.perf_counter()
                job = client.submit("avatar.create", {"images": [{"name": "astronaut.png", "data": buffer.getvalue()}],
                                                      "preset": "standard", "diffusion": diffusion, "seed": 0})
                result = client.wait_job(job, timeout_s=3600)
                total = time.perf_counter() - start
        finally:
            server.stop()
            server.join(60)
        timings = result["timings_s"]
        rows.append([diffusion] + [f"{timings.get(s, 0):.1f}" for s in ("prepare", "fit", "views", "optimize", "save")]
                    + [f"{total:.1f}", f"{result['metrics'].get('input_psnr_db', float('nan')):.2f}"])
    table(f"(e) avatar.create, preset standard, on {describe_device(device)} (seconds)",
          ["diffusion", "prepare", "fit", "views", "optimize", "save", "total", "input PSNR dB"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (tiny models only) or cuda (adds tables d and e)")
    parser.add_argument("--full", action="store_true", help="with --device cuda: also run table (e) (minutes)")
    parser.add_argument("--size", type=int, default=128, help="training view size of tables b and c (pixels)")
    parser.add_argument("--iterations", type=int, default=12, help="optimizer iterations per run of table c")
    parser.add_argument("--tables", default="abcde", help="which tables to print (default abcde)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default with --device cpu: 1, since the tiny networks' "
                             "microsecond kernels only lose from a second thread, badly on a shared machine; "
                             "with cuda: torch's default)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    print(f"HeadSplat diffusion benchmark on {describe_device(device)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="headsplat-bench-diffusion-") as root:
        tiny = write_tiny_models(os.path.join(root, "tiny"))
        models = DiffusionModels.from_config(write_models_config(os.path.join(root, "tiny.json"),
                                                                 tiny_model_entries(tiny)))
        head, inp = synthetic_synthesis_input(args.size)
        if "a" in args.tables:
            quick_check(models)
        if "b" in args.tables:
            synthesis(models, inp)
        if "c" in args.tables:
            prior_overhead(models, head, inp, args.iterations)
        if device.type == "cuda":
            if "d" in args.tables:
                gpu_step(device)
            if args.full and "e" in args.tables:
                full_preset(device, root)
        elif {"d", "e"} & set(args.tables):
            print("\n(d), (e): need a CUDA GPU: python -m bench.diffusion --device cuda [--full]")


if __name__ == "__main__":
    main()

"""The ``controlnet-normal`` backend: a Stable Diffusion 1.x/2.x checkpoint steered by a
normal-map ControlNet (GAF's "pretrained Stable Diffusion with normal-map ControlNet"
variant), optionally an IP-Adapter for identity from the photo.

Read top to bottom like the algorithm: the mesh's normal map at the target camera is the
ControlNet's condition; the start image (the reprojected photo for novel views, the
avatar's render for the prior) is encoded by the VAE and noised to ``strength``; DDIM
denoises with classifier-free guidance on the prompt (and the photo through the
IP-Adapter); latent cells the photo saw are pinned; the VAE decodes the result.
Components are built from local folders (``loading``); the prompt is encoded once and the
text encoder freed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from .config import ModelConfig
from .denoising import (DenoiseJob, DenoiseResult, StepCallback, make_scheduler, run_ddim, seeded_generator,
                        tail_timesteps)
from ..gpu_memory import oom_guard
from .gpu import apply_attention_slicing, resolve_dtype
from .images import from_model, latent_keep_mask, model_size, over_background, to_model
from .loading import (load_diffusers_model, load_scheduler_config, load_tokenizer, load_transformers_model,
                      loading_errors)
from .normal_encoding import encode_normals



@dataclass
class StableDiffusionParts:
    """The loaded networks and what is derived from them once.

    prompt_embeds / negative_embeds: (1, L, D) text conditioning. vae_scale / vae_shift:
    the latent normalization. size_multiple: image sides must be multiples of this.
    ip_pipeline: a diffusers pipeline object used only for its IP-Adapter image encoding.
    """

    unet: torch.nn.Module
    vae: torch.nn.Module
    controlnet: torch.nn.Module
    scheduler_config: dict
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    vae_scale: float
    vae_shift: float
    vae_factor: int
    size_multiple: int
    ip_pipeline: object | None = None


def load_stable_diffusion(model: ModelConfig, device: torch.device, progress=None) -> StableDiffusionParts:
    """Load everything the backend needs onto ``device`` (progress(message) between parts)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    say = progress or (lambda message: None)
    dtype = resolve_dtype(model.dtype, device)
    base = model.base
    with oom_guard(f"loading the diffusion model {model.name!r}", device):
        say("loading the UNet")
        unet = load_diffusers_model(UNet2DConditionModel, base, "unet", device, dtype, model.variant, "UNet")
        say("loading the VAE")
        vae = load_diffusers_model(AutoencoderKL, base, "vae", device, dtype, model.variant, "VAE")
        vae_dtype = torch.float32 if (dtype == torch.float16 and vae.config.get("force_upcast", False)) else dtype
        if vae_dtype != dtype:   # SDXL-style VAEs overflow in half precision
            vae = vae.to(dtype=vae_dtype)
        say("loading the ControlNet")
        controlnet = load_diffusers_model(ControlNetModel, model.controlnet, None, device, dtype, model.variant,
                                          "ControlNet")
        say("encoding the prompt")
        text_encoder = load_transformers_model(CLIPTextModel, f"{base}/text_encoder", device, dtype, model.variant,
                                               "text encoder")
        tokenizer = load_tokenizer(f"{base}/tokenizer")
        prompt = _encode_text(tokenizer, text_encoder, model.prompt, device)
        negative = _encode_text(tokenizer, text_encoder, model.negative_prompt, device)
        ip_pipeline = None
        if model.ip_adapter is not None:
            say("loading the IP-Adapter")
            ip_pipeline = _load_ip_adapter(model, unet, vae, controlnet, text_encoder, tokenizer, device, dtype)
        del text_encoder, tokenizer
    apply_attention_slicing([unet, controlnet], model.attention_slicing, device)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return StableDiffusionParts(
        unet=unet, vae=vae, controlnet=controlnet, scheduler_config=load_scheduler_config(f"{base}/scheduler"),
        prompt_embeds=prompt, negative_embeds=negative, device=device, dtype=dtype, vae_dtype=vae_dtype,
        vae_scale=float(vae.config.scaling_factor), vae_shift=float(vae.config.get("shift_factor") or 0.0),
        vae_factor=factor, size_multiple=factor * 2 ** (len(unet.config.block_out_channels) - 1),
        ip_pipeline=ip_pipeline)


@torch.no_grad()
def _encode_text(tokenizer, text_encoder, text: str, device) -> torch.Tensor:
    """(1, L, D) CLIP text conditioning (last hidden state, as SD 1.x/2.x pipelines use)."""
    tokens = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0].float()


def _load_ip_adapter(model, unet, vae, controlnet, text_encoder, tokenizer, device, dtype):
    """Attach the IP-Adapter to the UNet with diffusers' loader (it needs a pipeline
    object to hang the image encoder on; the pipeline is kept only to encode images)."""
    from diffusers import DDIMScheduler, StableDiffusionControlNetImg2ImgPipeline

    ip = model.ip_adapter
    pipeline = StableDiffusionControlNetImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet,
        scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None, image_encoder=None,
        requires_safety_checker=False)
    with loading_errors("IP-Adapter", ip.path):
        pipeline.load_ip_adapter(ip.path, subfolder=ip.subfolder or "", weight_name=ip.weight_name,
                                 image_encoder_folder=ip.image_encoder, local_files_only=True)
    pipeline.set_ip_adapter_scale(ip.scale)
    pipeline.image_encoder.to(device=device, dtype=dtype).requires_grad_(False)
    pipeline.text_encoder = None
    return pipeline


class ControlNetNormalDenoiser:
    """``ViewDenoiser`` over StableDiffusionParts (see the module docstring)."""

    outputs_normals = False
    supports_init_images = True

    def __init__(self, parts: StableDiffusionParts, model: ModelConfig):
        self.parts = parts
        self.model = model
        self.name = model.name
        self.num_train_timesteps = int(parts.scheduler_config.get("num_train_timesteps", 1000))
        self._ip_cache: tuple[bytes, list] | None = None

    def describe(self) -> dict:
        m = self.model
        return {"backend": "controlnet-normal", "model": m.name, "resolution": m.resolution, "steps": m.steps,
                "strength": m.strength, "guidance_scale": m.guidance_scale, "controlnet_scale": m.controlnet_scale,
                "ip_adapter": m.ip_adapter is not None, "dtype": str(self.parts.dtype).replace("torch.", "")}

    @torch.no_grad()
    def denoise(self, job: DenoiseJob, on_step: StepCallback) -> DenoiseResult:
        p, m = self.parts, self.model
        height, width = job.masks.shape[1:3]
        size = model_size(width, height, m.resolution, p.size_multiple)
        guidance = m.guidance_scale if job.guidance_scale is None else job.guidance_scale
        generator = seeded_generator(job.seed)
        latent_shape = (job.count, p.unet.config.in_channels, size[1] // p.vae_factor, size[0] // p.vae_factor)
        noise_all = torch.randn(latent_shape, generator=generator)
        scheduler = make_scheduler(p.scheduler_config)
        timesteps = tail_timesteps(scheduler, job.strength, job.steps, p.device)
        total = len(timesteps) * self._chunks(job.count)
        done = [0]

        def step() -> None:
            done[0] += 1
            on_step(done[0], total)

        images = []
        views = f"{job.count} view{'s' if job.count != 1 else ''}"
        with oom_guard(f"denoising {views} at {size[0]}x{size[1]} with {m.name!r}", p.device):
            ip_embeds = self._ip_embeds(job)
            for start in range(0, job.count, m.batch_size):
                chunk = slice(start, min(start + m.batch_size, job.count))
                images.append(self._denoise_chunk(job, chunk, size, noise_all[chunk].to(p.device), scheduler,
                                                  timesteps, guidance, ip_embeds, step))
        return DenoiseResult(images=from_model(torch.cat(images), (width, height)).clip(0.0, 1.0))

    def _chunks(self, count: int) -> int:
        return -(-count // self.model.batch_size)

    def _denoise_chunk(self, job, chunk, size, noise, scheduler, timesteps, guidance, ip_embeds, step) -> torch.Tensor:
        p, m = self.parts, self.model
        k = len(range(*chunk.indices(job.count)))
        normal_rgb = encode_normals(job.normals_camera[chunk], job.masks[chunk], m.normal_encoding,
                                    m.normal_background)
        condition = to_model(normal_rgb, size, p.device, p.dtype)
        keep = start_latents = None
        if job.init_images is not None:
            start_latents = self._encode(to_model(job.init_images[chunk], size, p.device, p.vae_dtype) * 2.0 - 1.0)
            latents = scheduler.add_noise(start_latents, noise, timesteps[:1])
            if job.known is not None and m.keep_known:
                keep = latent_keep_mask(job.known[chunk], (noise.shape[-1], noise.shape[-2]), p.device)
        else:
            latents = noise * scheduler.init_noise_sigma
        cfg = guidance > 1.0
        text = torch.cat([p.negative_embeds.expand(k, -1, -1), p.prompt_embeds.expand(k, -1, -1)]) if cfg \
            else p.prompt_embeds.expand(k, -1, -1)
        text = text.to(p.dtype)
        condition = torch.cat([condition, condition]) if cfg else condition
        added = None
        if ip_embeds is not None:
            added = {"image_embeds": [self._ip_slice(e, k, cfg) for e in ip_embeds]}

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x_in = torch.cat([x, x]) if cfg else x
            x_in = scheduler.scale_model_input(x_in, t).to(p.dtype)
            down, mid = p.controlnet(x_in, t, encoder_hidden_states=text, controlnet_cond=condition,
                                     conditioning_scale=m.controlnet_scale, return_dict=False)
            out = p.unet(x_in, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid, added_cond_kwargs=added, return_dict=False)[0].float()
            if cfg:
                uncond, cond = out.chunk(2)
                out = uncond + guidance * (cond - uncond)
            return out

        latents = run_ddim(latents, timesteps, scheduler, predict, on_step=step, keep=keep,
                           keep_latents=start_latents, keep_noise=noise)
        return self._decode(latents)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [-1, 1] -> normalized latents (float32), the distribution's mean."""
        p = self.parts
        latents = p.vae.encode(images.to(p.vae_dtype)).latent_dist.mean.float()
        return (latents - p.vae_shift) * p.vae_scale

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> (B, 3, h, w) in [0, 1] float32, one view at a time (bounds VAE memory)."""
        p = self.parts
        out = [p.vae.decode((z[None] / p.vae_scale + p.vae_shift).to(p.vae_dtype), return_dict=False)[0].float()
               for z in latents]
        return ((torch.cat(out) + 1.0) * 0.5).clamp(0.0, 1.0)

    def _ip_embeds(self, job: DenoiseJob):
        """IP-Adapter embeddings of the photo, [negative, positive] per adapter (cached: the
        same photo serves every call of a job)."""
        pipeline = self.parts.ip_pipeline
        if pipeline is None:
            return None
        reference = over_background(job.reference_image[None], job.reference_mask[None])[0]
        key = hashlib.sha1(reference.tobytes()).digest()
        if self._ip_cache is None or self._ip_cache[0] != key:
            image = (np.clip(reference, 0, 1) * 255).round().astype(np.uint8)
            embeds = pipeline.prepare_ip_adapter_image_embeds(image, None, self.parts.device, 1, True)
            self._ip_cache = (key, embeds)
        return self._ip_cache[1]

    @staticmethod
    def _ip_slice(embeds: torch.Tensor, k: int, cfg: bool) -> torch.Tensor:
        """(2, ...) [negative, positive] embeddings -> (2k, ...) or (k, ...) for this batch."""
        negative, positive = embeds.chunk(2)
        reps = [k] + [1] * (positive.dim() - 1)
        return torch.cat([negative.repeat(*reps), positive.repeat(*reps)]) if cfg else positive.repeat(*reps)

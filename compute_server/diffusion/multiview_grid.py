"""``headsplat:grid``, the built-in reference multi-view adapter (and the model for your own).

The model format it runs, after GAF's multi-view head diffusion (Fig. 3) and Zero123++'s
tiling: the K views' latents are tiled into one grid, so the UNet's self-attention spans
all views (cross-view consistency without custom attention layers); each view's noisy
latent is concatenated along channels with the VAE latent of its mesh normal map
(GAF: "normal map ... encoded ... and concatenated"); the photo's VAE latent, flattened to
tokens, is what the UNet cross-attends to (GAF: "cross-attention between the multi-view
denoised latents and the VAE latent of I_cond"), projected by the UNet's
``encoder_hid_proj``. With ``out_channels = 2 C`` the UNet denoises image and normal
latents jointly (GeoDiff4D), and the normals come back decoded by the same VAE.

Folder: ``unet/`` (UNet2DConditionModel, in_channels = out_channels + C,
encoder_hid_dim = C, encoder_hid_dim_type "text_proj"), ``vae/`` (AutoencoderKL with C
latent channels), ``scheduler/``, ``model_index.json`` and the manifest with
``"adapter": "headsplat:grid"``. No public checkpoint is trained in this format; it is
the contract's worked example and what the tests run with tiny random weights.
"""

from __future__ import annotations

import math

import torch

from .denoising import make_scheduler, run_ddim, tail_timesteps
from .loading import load_diffusers_model, load_scheduler_config
from .multiview_contract import MultiviewRequest, MultiviewResult


def check_grid_components(components: dict, outputs_normals: bool | None = None) -> None:
    """Config-level checks of a grid folder (``component_checks.Component`` by name); raises
    ValueError with a sentence fragment ("has a UNet ...")."""
    unet, vae = components.get("unet"), components.get("vae")
    if unet is None or vae is None or unet.class_name != "UNet2DConditionModel" or vae.class_name != "AutoencoderKL":
        raise ValueError("needs unet (UNet2DConditionModel) and vae (AutoencoderKL) for the headsplat:grid adapter")
    c = vae.config.get("latent_channels", 4)
    out = unet.config.get("out_channels", 4)
    if out not in (c, 2 * c):
        raise ValueError(f"has a UNet with {out} output channels; headsplat:grid needs {c} (images) or {2 * c} "
                         "(images and normals)")
    if unet.config.get("in_channels") != out + c:
        raise ValueError(f"has a UNet with {unet.config.get('in_channels')} input channels; headsplat:grid needs "
                         f"{out + c} (the noisy latents plus the normal map's latent)")
    if unet.config.get("encoder_hid_dim") != c or unet.config.get("encoder_hid_dim_type") != "text_proj":
        raise ValueError(f"has a UNet that does not attend to {c}-channel photo latents (encoder_hid_dim = {c}, "
                         "encoder_hid_dim_type = 'text_proj')")
    if outputs_normals is not None and outputs_normals != (out == 2 * c):
        raise ValueError("has outputs_normals in its manifest that disagrees with its UNet's output channels")


class GridMultiviewAdapter:
    """The adapter class behind ``"adapter": "headsplat:grid"`` (contract version 1)."""

    def __init__(self, folder: str, *, device: torch.device, dtype: torch.dtype, options: dict):
        from diffusers import AutoencoderKL, UNet2DConditionModel

        self.device, self.dtype = device, dtype
        self.unet = load_diffusers_model(UNet2DConditionModel, folder, "unet", device, dtype, what="UNet")
        self.vae = load_diffusers_model(AutoencoderKL, folder, "vae", device, dtype, what="VAE")
        self.scheduler_config = load_scheduler_config(f"{folder}/scheduler")
        self.num_train_timesteps = int(self.scheduler_config.get("num_train_timesteps", 1000))
        self.latent_channels = self.vae.config.latent_channels
        self.joint_normals = self.unet.config.out_channels == 2 * self.latent_channels
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scale = float(self.vae.config.scaling_factor)
        self.grid_columns = int(options.get("grid_columns", 0)) or None

    def release(self) -> None:
        self.unet = self.vae = None

    @torch.no_grad()
    def generate(self, request: MultiviewRequest) -> MultiviewResult:
        k = request.normal_maps.shape[0]
        cols = self.grid_columns or math.ceil(math.sqrt(k))
        rows = math.ceil(k / cols)
        normals = self._encode(request.normal_maps)
        reference = self._encode(request.reference_image[None])                    # (1, C, hr, wr)
        tokens = reference.flatten(2).transpose(1, 2)                              # (1, hr*wr, C)
        scheduler = make_scheduler(self.scheduler_config)
        timesteps = tail_timesteps(scheduler, request.strength, request.steps, self.device)
        gen_channels = self.unet.config.out_channels
        h, w = normals.shape[-2:]
        noise = torch.randn((k, gen_channels, h, w), generator=request.generator).to(self.device)
        if request.init_images is not None and request.strength < 1.0:
            start = self._encode(request.init_images)
            if self.joint_normals:
                start = torch.cat([start, normals], dim=1)    # the mesh's normals start the normal channels
            latents = scheduler.add_noise(start, noise, timesteps[:1])
        else:
            latents = noise * scheduler.init_noise_sigma
        cfg = request.guidance_scale > 1.0
        condition = _tile(normals, rows, cols)
        context = torch.cat([torch.zeros_like(tokens), tokens]) if cfg else tokens
        total = len(timesteps)
        done = [0]

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            grid = torch.cat([_tile(x, rows, cols), condition], dim=1)
            grid = torch.cat([grid, grid]) if cfg else grid
            out = self.unet(scheduler.scale_model_input(grid, t).to(self.dtype), t,
                            encoder_hidden_states=context.to(self.dtype), return_dict=False)[0].float()
            if cfg:
                uncond, cond = out.chunk(2)
                out = uncond + request.guidance_scale * (cond - uncond)
            return _untile(out, k, rows, cols)

        def step() -> None:
            done[0] += 1
            request.on_step(done[0], total)

        latents = run_ddim(latents, timesteps, scheduler, predict, on_step=step)
        images = self._decode(latents[:, :self.latent_channels])
        normal_images = self._decode(latents[:, self.latent_channels:]) if self.joint_normals else None
        return MultiviewResult(images=images, normal_images=normal_images)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) in [0, 1] -> (B, C, H/f, W/f) normalized latents (float32)."""
        x = images.permute(0, 3, 1, 2).to(self.dtype) * 2.0 - 1.0
        return self.vae.encode(x).latent_dist.mean.float() * self.scale

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> (B, H, W, 3) in [0, 1]."""
        out = [self.vae.decode((z[None] / self.scale).to(self.dtype), return_dict=False)[0].float() for z in latents]
        return ((torch.cat(out) + 1.0) * 0.5).clamp(0.0, 1.0).permute(0, 2, 3, 1)


def _tile(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(K, C, h, w) -> (1, C, rows h, cols w), row-major, missing tiles zero."""
    k, c, h, w = x.shape
    padded = torch.cat([x, x.new_zeros((rows * cols - k, c, h, w))]) if rows * cols > k else x
    return padded.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(1, c, rows * h, cols * w)


def _untile(grid: torch.Tensor, k: int, rows: int, cols: int) -> torch.Tensor:
    """The inverse of ``_tile`` for a (B, C, rows h, cols w) grid with B = 1."""
    _, c, gh, gw = grid.shape
    h, w = gh // rows, gw // cols
    return grid.reshape(c, rows, h, cols, w).permute(1, 3, 0, 2, 4).reshape(rows * cols, c, h, w)[:k]

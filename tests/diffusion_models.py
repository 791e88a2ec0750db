"""Tiny random-weight diffusion checkpoints for tests and benchmarks (diffusers' dummy
components idea): real classes, real ``save_pretrained`` folders, real loading code,
seconds on a CPU at 64 x 64.

Why under tests/ and not in the server package: random weights make noise, so no user
path needs them (``headsplat doctor`` checks the user's real weights); the tests and
``bench/diffusion.py`` (GPU timings with random weights in Stable Diffusion 1.5's shape)
are the only callers.

Everything is built from configs with fixed seeds; the shapes are chosen so every rule
the real checkpoints follow holds: the VAE downsamples by 4, so the ControlNet's
conditioning embedding has three stages (it must downsample by the VAE's factor); the
text encoder's width is the UNet's cross-attention width; the IP-Adapter's tensors fit
the UNet's attention layers. ``sd15_unet_config`` is the Stable Diffusion 1.5 UNet's
shape (random weights stand in for real ones in the GPU benchmark).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

TINY_RESOLUTION = 64
TINY_CROSS_DIM = 32
TINY_TOKENS = 16
_UNET_BLOCKS = dict(block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
_VAE = dict(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=8, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)


@dataclass(frozen=True)
class TinyModels:
    """Folders written by ``write_tiny_models``."""

    base: str
    controlnet: str
    ip_adapter: str
    multiview: str
    multiview_normals: str


def sd15_unet_config() -> dict:
    """The UNet of Stable Diffusion 1.5 (860 M parameters), for random-weight timing."""
    return dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
                attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def _randomize_zero_weights(module: torch.nn.Module, seed: int) -> None:
    """Zero-initialized layers (ControlNet's zero convolutions, output heads) would make a
    random model ignore its conditions; give them a fresh layer's default initialization."""
    torch.manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)) and not layer.weight.any():
            layer.reset_parameters()


def tiny_tokenizer():
    """A CLIP tokenizer over the 256 byte symbols (no merges): every text tokenizes."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_TOKENS)


def tiny_unet(in_channels: int = 4, out_channels: int = 4, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=TINY_RESOLUTION // 4, in_channels=in_channels, out_channels=out_channels,
                                cross_attention_dim=TINY_CROSS_DIM, **_UNET_BLOCKS, **extra)


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, sample_size=TINY_RESOLUTION, **_VAE)


def write_tiny_stable_diffusion(folder: str, seed: int = 0) -> str:
    """A Stable Diffusion pipeline folder (model_index.json, unet, vae, text_encoder,
    tokenizer, scheduler) as ``StableDiffusionPipeline.save_pretrained`` writes it."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_CROSS_DIM, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=TINY_TOKENS, projection_dim=TINY_CROSS_DIM,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    unet, vae = tiny_unet(), tiny_vae()
    _randomize_zero_weights(unet, seed)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=PNDMScheduler(**SD_SCHEDULER), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder


def write_tiny_controlnet(folder: str, base: str, seed: int = 1) -> str:
    """A normal-map ControlNet initialized from the base UNet (as ControlNet training
    starts), with random instead of zero output convolutions."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", local_files_only=True)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16))
    _randomize_zero_weights(controlnet, seed)
    with torch.no_grad():   # variance-preserving init, so the condition reaches the UNet at full strength
        for layer in controlnet.controlnet_cond_embedding.modules():
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    controlnet.save_pretrained(folder)
    return folder


def write_tiny_ip_adapter(folder: str, base: str, seed: int = 2) -> str:
    """An IP-Adapter laid out like h94/IP-Adapter: models/ip-adapter_sd15.safetensors and
    models/image_encoder/ (a tiny CLIP vision encoder), shaped for the base UNet."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8))
    encoder.save_pretrained(os.path.join(folder, "models", "image_encoder"))
    unet_config = UNet2DConditionModel.load_config(base, subfolder="unet", local_files_only=True)
    unet = UNet2DConditionModel.from_config(unet_config)
    cross = unet_config["cross_attention_dim"]
    widths = list(unet_config["block_out_channels"])
    tensors = {"image_proj.proj.weight": torch.randn(4 * cross, 32, generator=generator) * 0.05,
               "image_proj.proj.bias": torch.zeros(4 * cross),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = widths[-1]
        elif name.startswith("up_blocks"):
            hidden = widths[::-1][int(name[len("up_blocks.")])]
        else:
            hidden = widths[int(name[len("down_blocks.")])]
        for kind in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{key}.{kind}.weight"] = torch.randn(hidden, cross, generator=generator) * 0.05
        key += 2
    save_file(tensors, os.path.join(folder, "models", "ip-adapter_sd15.safetensors"))
    return folder


def write_tiny_multiview(folder: str, *, outputs_normals: bool = False, views_per_call: int = 4,
                         resolution: int = TINY_RESOLUTION, seed: int = 3) -> str:
    """A ``headsplat:grid`` multi-view pipeline folder (see multiview_grid)."""
    from diffusers import DDIMScheduler

    torch.manual_seed(seed)
    latent = _VAE["latent_channels"]
    out = 2 * latent if outputs_normals else latent
    unet = tiny_unet(in_channels=out + latent, out_channels=out, encoder_hid_dim=latent,
                     encoder_hid_dim_type="text_proj")
    _randomize_zero_weights(unet, seed)
    unet.save_pretrained(os.path.join(folder, "unet"))
    tiny_vae().save_pretrained(os.path.join(folder, "vae"))
    DDIMScheduler(**{k: v for k, v in SD_SCHEDULER.items() if k != "skip_prk_steps"}).save_pretrained(
        os.path.join(folder, "scheduler"))
    _write_json(os.path.join(folder, "model_index.json"), {
        "_class_name": "HeadSplatGridMultiviewPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]})
    _write_json(os.path.join(folder, "headsplat_multiview.json"), {
        "contract": 1, "adapter": "headsplat:grid", "views_per_call": views_per_call, "resolution": resolution,
        "normal_encoding": "opengl", "supports_init_images": True, "outputs_normals": outputs_normals,
        "options": {}})
    return folder


def write_random_sd15(root: str, seed: int = 0, dtype: torch.dtype = torch.float16) -> tuple[str, str]:
    """A Stable Diffusion 1.5-sized pipeline and normal ControlNet with random weights
    (UNet 860 M, VAE 84 M, a 12-layer 768-wide text encoder over the byte vocabulary),
    saved in ``dtype``: real shapes, real memory and time, meaningless pictures. Returns
    (base folder, controlnet folder). About 2.5 GB on disk in half precision."""
    from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    tokenizer.model_max_length = 77
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_attention_heads=12,
        num_hidden_layers=12, max_position_embeddings=77, projection_dim=768, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(**sd15_unet_config())
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, sample_size=512, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4)
    controlnet = ControlNetModel.from_unet(unet)
    base = os.path.join(root, "random-sd15")
    StableDiffusionPipeline(vae=vae.to(dtype), text_encoder=text_encoder.to(dtype), tokenizer=tokenizer,
                            unet=unet.to(dtype), scheduler=PNDMScheduler(**SD_SCHEDULER), safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(base)
    controlnet_folder = os.path.join(root, "random-controlnet-sd15")
    controlnet.to(dtype).save_pretrained(controlnet_folder)
    return base, controlnet_folder


def write_tiny_models(root: str) -> TinyModels:
    """All tiny checkpoints under ``root`` (a few seconds)."""
    base = write_tiny_stable_diffusion(os.path.join(root, "tiny-sd"))
    return TinyModels(base=base, controlnet=write_tiny_controlnet(os.path.join(root, "tiny-controlnet"), base),
                      ip_adapter=write_tiny_ip_adapter(os.path.join(root, "tiny-ip-adapter"), base),
                      multiview=write_tiny_multiview(os.path.join(root, "tiny-multiview")),
                      multiview_normals=write_tiny_multiview(os.path.join(root, "tiny-multiview-normals"),
                                                             outputs_normals=True))


def tiny_model_entries(models: TinyModels, **overrides) -> list[dict]:
    """Models-config entries for the tiny checkpoints, with fast sampling settings."""
    fast = {"resolution": TINY_RESOLUTION, "steps": 4, "strength": 0.75, "guidance_scale": 2.0, "batch_size": 4,
            "prior": {"refresh_every": 5, "views": 2, "k": 250, "weight": 0.5}}
    fast.update(overrides)
    return [
        {"name": "tiny-sd", "backend": "controlnet-normal", "base": models.base, "controlnet": models.controlnet,
         **fast},
        {"name": "tiny-sd-ip", "backend": "controlnet-normal", "base": models.base, "controlnet": models.controlnet,
         "ip_adapter": {"path": models.ip_adapter, "subfolder": "models", "weight_name": "ip-adapter_sd15.safetensors",
                        "image_encoder": "image_encoder", "scale": 0.6}, **fast},
        {"name": "tiny-mv", "backend": "multiview", "pipeline": models.multiview, **fast},
        {"name": "tiny-mv-normals", "backend": "multiview", "pipeline": models.multiview_normals, **fast},
    ]


def synthetic_synthesis_input(size: int = 64, seed: int = 7):
    """(head model, SynthesisInput) without a photo: the built-in head, neutral, seen from
    the front by a size x size camera, a shaded rendering standing in for the photo (its
    matte is the mesh's silhouette). For tests and benchmarks that need the synthesis and
    optimizer inputs in well under a second."""
    import numpy as np

    from shared.camera import Camera, look_at

    from compute_server.diffusion.variations import pose_vertices
    from compute_server.head.model import load_head_model
    from compute_server.views.sampling import head_centre
    from compute_server.views.surface import render_surface
    from compute_server.views.synthesis import SynthesisInput
    from compute_server.views.vertex_colors import complete_vertex_colors

    head = load_head_model()
    faces, regions = head.faces.numpy(), head.face_region.numpy()
    params = {"shape": np.zeros(head.n_shape, np.float32), "expr": np.zeros(head.n_expr, np.float32),
              "rotation": np.zeros(3, np.float32), "neck_pose": np.zeros(3, np.float32),
              "jaw_pose": np.zeros(3, np.float32), "eyes_pose": np.zeros(6, np.float32),
              "translation": np.zeros(3, np.float32)}
    vertices = pose_vertices(head, params)
    centre = head_centre(vertices)
    camera = Camera(look_at(centre + np.array([0.0, 0.0, 0.6]), centre), size * 2.2, size * 2.2, size / 2, size / 2,
                    size, size, 0.01, 10.0)
    surface = render_surface(vertices, faces, [camera])[0]
    image = np.full((size, size, 3), 0.9, np.float32)
    image[surface.mask] = 0.35 + 0.3 * surface.normals_camera[surface.mask]
    matte = surface.mask.astype(np.float32)
    colors = complete_vertex_colors(vertices, faces, regions, head.region_names, vertices, image, matte, camera,
                                    surface)
    return head, SynthesisInput(image=image, matte=matte, camera=camera, head_params=params, vertices=vertices,
                                faces=faces, rest_vertices=vertices, face_region=regions,
                                region_names=head.region_names, vertex_colors=colors, surface=surface,
                                expression_names=list(head.expression_names), seed=seed)


def write_models_config(path: str, entries: list[dict]) -> str:
    """A models config file (JSON, or TOML when the name ends in .toml)."""
    if path.endswith(".toml"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(_to_toml(entries))
    else:
        _write_json(path, {"models": entries})
    return path


def _write_json(path: str, value) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)


def _to_toml(entries: list[dict]) -> str:
    """A minimal TOML writer for models entries (strings, numbers, booleans, lists, one
    level of sub-tables) — enough for tests to exercise the TOML reader."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = []
    for entry in entries:
        lines.append("[[models]]")
        tables = {k: v for k, v in entry.items() if isinstance(v, dict)}
        lines += [f"{k} = {value(v)}" for k, v in entry.items() if not isinstance(v, dict)]
        for key, table in tables.items():
            lines.append(f"[models.{key}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)

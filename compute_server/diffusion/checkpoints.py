"""Is this folder a usable checkpoint? Quick checks that read configs and weight-file
headers only (no weights are loaded, nothing is imported from diffusers).

Used at server start (``server.info`` lists each model as usable or not, with the
reason), at job submission (``DiffusionModels.check``) and by ``headsplat models check``.
Each check returns a ``CheckResult`` whose ``problem`` is a sentence naming the folder,
the file and what to do. What is checked, per component folder: the config file parses
and names the expected class; the weight file exists, its header is intact and its data
complete; the shapes of a few tensors agree with the config (a config copied from another
model is caught); and across components, the dimensions that must agree (text encoder
width = UNet cross-attention width, ControlNet blocks = UNet blocks, ControlNet
conditioning downsampling = the VAE's factor, IP-Adapter projection = UNet width).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .component_checks import (DIFFUSERS_STEMS, TRANSFORMERS_STEMS, CheckProblem, Component, check_scheduler,
                               check_tokenizer, not_a_folder, read_component, read_json, weight_kind)
from .config import IPAdapterConfig, ModelConfig
from .multiview_contract import MANIFEST_NAME, ManifestError, read_manifest
from .weights_files import WeightFileError, WeightFiles, tensor_shapes

SD_REQUIRED = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass
class CheckResult:
    """kind: "stable-diffusion", "controlnet", "ip-adapter", "multiview" or "unknown".
    usable: whether the backend can load it; problem: the reason when not; summary: one
    line for people; details: facts other checks compare (dimensions, factors)."""

    path: str
    kind: str
    usable: bool
    problem: str | None = None
    summary: str = ""
    details: dict = field(default_factory=dict)


def _result(path: str, kind: str, what: str, run) -> CheckResult:
    """Run a check body; a CheckProblem becomes an unusable result with a full sentence."""
    try:
        summary, details = run()
    except CheckProblem as exc:
        return CheckResult(path, kind, False, problem=f"the {what} {path} {exc}")
    except OSError as exc:   # permissions, a vanished network mount, ...
        return CheckResult(path, kind, False, problem=f"the {what} {path} cannot be read ({exc.strerror or exc}: "
                                                      f"{exc.filename or path})")
    return CheckResult(path, kind, True, summary=summary, details=details)


def check_stable_diffusion(path: str, variant: str | None = None) -> CheckResult:
    """A diffusers Stable Diffusion 1.x/2.x pipeline folder (model_index.json + components)."""

    def run():
        if not os.path.isdir(path):
            raise not_a_folder(path)
        index = read_json(os.path.join(path, "model_index.json"), "model_index.json (it is not a diffusers "
                                                                   "pipeline folder)")
        pipeline_class = str(index.get("_class_name", ""))
        if "XL" in pipeline_class or "text_encoder_2" in index:
            raise CheckProblem(f"is a {pipeline_class} (SDXL) checkpoint; the controlnet-normal backend needs "
                               "Stable Diffusion 1.x or 2.x")
        missing = [name for name in SD_REQUIRED if name not in index]
        if missing:
            raise CheckProblem(f"has a model_index.json without {', '.join(missing)}")
        unet = read_component(os.path.join(path, "unet"), "unet", classes=("UNet2DConditionModel",),
                              stems=DIFFUSERS_STEMS, variant=variant)
        vae = read_component(os.path.join(path, "vae"), "vae", classes=("AutoencoderKL",), stems=DIFFUSERS_STEMS,
                             variant=variant)
        text = read_component(os.path.join(path, "text_encoder"), "text_encoder", classes=("CLIPTextModel",),
                              stems=TRANSFORMERS_STEMS, variant=variant)
        check_tokenizer(os.path.join(path, "tokenizer"))
        scheduler = check_scheduler(os.path.join(path, "scheduler"))
        latent = vae.config.get("latent_channels", 4)
        if unet.config.get("in_channels", 4) != latent:
            raise CheckProblem(f"has a UNet with {unet.config.get('in_channels')} input channels for "
                               f"{latent}-channel latents (an inpainting or depth model?); use a text-to-image "
                               "checkpoint")
        if text.config.get("hidden_size") != unet.config.get("cross_attention_dim"):
            raise CheckProblem(f"has a text encoder of width {text.config.get('hidden_size')} but a UNet that "
                               f"attends to width {unet.config.get('cross_attention_dim')}")
        details = {"cross_attention_dim": unet.config.get("cross_attention_dim"),
                   "block_out_channels": list(unet.config["block_out_channels"]),
                   "unet_in_channels": unet.config.get("in_channels", 4),
                   "vae_factor": 2 ** (len(vae.config["block_out_channels"]) - 1),
                   "latent_channels": latent, "sample_size": unet.config.get("sample_size"),
                   "prediction_type": scheduler.get("prediction_type", "epsilon"),
                   "num_train_timesteps": int(scheduler.get("num_train_timesteps", 1000))}
        size = (unet.config.get("sample_size") or 64) * details["vae_factor"]
        summary = (f"Stable Diffusion pipeline ({pipeline_class or 'unnamed'}), {size} px native, cross-attention "
                   f"width {details['cross_attention_dim']}, {details['prediction_type']} prediction, weights "
                   f"{weight_kind(unet)}")
        return summary, details

    return _result(path, "stable-diffusion", "Stable Diffusion folder", run)


def check_controlnet(path: str, variant: str | None = None) -> CheckResult:
    """A diffusers ControlNetModel folder (config.json + weights)."""

    def run():
        if not os.path.isdir(path):
            raise not_a_folder(path)
        cn = read_component(path, "", classes=("ControlNetModel",), stems=DIFFUSERS_STEMS, variant=variant)
        emb = cn.config.get("conditioning_embedding_out_channels") or (16, 32, 96, 256)
        if cn.config.get("conditioning_channels", 3) != 3:
            raise CheckProblem(f"expects {cn.config.get('conditioning_channels')}-channel conditioning images, "
                               "not RGB normal maps")
        details = {"cross_attention_dim": cn.config.get("cross_attention_dim"),
                   "block_out_channels": list(cn.config["block_out_channels"]),
                   "in_channels": cn.config.get("in_channels", 4), "conditioning_factor": 2 ** (len(emb) - 1)}
        summary = (f"ControlNet, cross-attention width {details['cross_attention_dim']}, conditioning image "
                   f"downsampled x{details['conditioning_factor']}, weights {weight_kind(cn)}")
        return summary, details

    return _result(path, "controlnet", "ControlNet folder", run)


def controlnet_fits(sd: CheckResult, cn: CheckResult) -> str | None:
    """Why a ControlNet cannot drive this UNet (None when it can)."""
    s, c = sd.details, cn.details
    if c["cross_attention_dim"] != s["cross_attention_dim"]:
        return (f"the ControlNet {cn.path} was trained for cross-attention width {c['cross_attention_dim']} but the "
                f"base model {sd.path} has {s['cross_attention_dim']} (e.g. an SD 1.5 ControlNet with an SD 2 base)")
    if c["block_out_channels"] != s["block_out_channels"] or c["in_channels"] != s["unet_in_channels"]:
        return f"the ControlNet {cn.path} does not match the UNet of {sd.path} (different block widths)"
    if c["conditioning_factor"] != s["vae_factor"]:
        return (f"the ControlNet {cn.path} downsamples its conditioning image by {c['conditioning_factor']} but the "
                f"VAE of {sd.path} by {s['vae_factor']}; they cannot be combined")
    return None


def check_ip_adapter(cfg: IPAdapterConfig) -> CheckResult:
    """An IP-Adapter weight file plus its CLIP vision encoder folder."""
    path = cfg.path

    def run():
        if not os.path.isdir(path):
            raise not_a_folder(path)
        rel = os.path.join(cfg.subfolder, cfg.weight_name) if cfg.subfolder else cfg.weight_name
        weight = cfg.weight_file
        if not os.path.isfile(weight):
            raise CheckProblem(f"has no {rel}")
        try:
            shapes = tensor_shapes(WeightFiles((weight,)))
        except WeightFileError as exc:
            raise CheckProblem(f"has a broken weight file {rel}: it {exc}") from None
        details = {}
        if shapes:
            prefixes = {k.split(".", 1)[0] for k in shapes}
            if not {"image_proj", "ip_adapter"} <= prefixes:
                raise CheckProblem(f"has a {rel} without image_proj.* and ip_adapter.* tensors; it is not an "
                                   "IP-Adapter")
            keys = sorted(k for k in shapes if k.startswith("ip_adapter.") and k.endswith("to_k_ip.weight"))
            key = keys[0] if keys else None
            if key is not None:
                details["cross_attention_dim"] = shapes[key][1]
            if "image_proj.proj.weight" in shapes:
                details["image_embed_dim"] = shapes["image_proj.proj.weight"][1]
        encoder_rel = os.path.relpath(cfg.image_encoder_dir, path)
        encoder = read_component(cfg.image_encoder_dir, encoder_rel, classes=("CLIPVisionModelWithProjection",),
                                 stems=TRANSFORMERS_STEMS)
        projection = encoder.config.get("projection_dim")
        if "image_embed_dim" in details and projection != details["image_embed_dim"]:
            raise CheckProblem(f"has an image encoder with {projection}-d embeddings but {rel} expects "
                               f"{details['image_embed_dim']}-d ones")
        return f"IP-Adapter {rel} with image encoder {encoder_rel}", details

    return _result(path, "ip-adapter", "IP-Adapter folder", run)


def check_multiview(path: str, variant: str | None = None) -> CheckResult:
    """A multi-view pipeline folder: headsplat_multiview.json (the adapter contract),
    model_index.json and every component it lists."""

    def run():
        if not os.path.isdir(path):
            raise not_a_folder(path)
        try:
            manifest = read_manifest(path)
        except ManifestError as exc:
            raise CheckProblem(str(exc)) from None
        index = read_json(os.path.join(path, "model_index.json"), "model_index.json (it is not a diffusers "
                                                                   "pipeline folder)")
        components = {}
        for name, spec in sorted(index.items()):
            if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[1] is None:
                continue
            components[name] = _check_listed_component(os.path.join(path, name), name, str(spec[0]), str(spec[1]),
                                                        variant)
        if manifest.builtin is not None:
            from .multiview_grid import check_grid_components
            try:
                check_grid_components(components, manifest.outputs_normals)
            except ValueError as exc:
                raise CheckProblem(str(exc)) from None
        summary = (f"multi-view pipeline, adapter {manifest.adapter}, {manifest.views_per_call} views per call at "
                   f"{manifest.resolution} px, components: {', '.join(sorted(components)) or 'none'}")
        return summary, {"manifest": manifest, "components": sorted(components)}

    return _result(path, "multiview", "multi-view pipeline folder", run)


def _check_listed_component(folder: str, name: str, library: str, class_name: str, variant) -> Component | None:
    if class_name.endswith("Scheduler"):
        check_scheduler(folder)
        return None
    if "Tokenizer" in class_name:
        check_tokenizer(folder)
        return None
    if "Processor" in class_name or "FeatureExtractor" in class_name:
        read_json(os.path.join(folder, "preprocessor_config.json"), f"{name}/preprocessor_config.json")
        return None
    stems = TRANSFORMERS_STEMS if library == "transformers" else DIFFUSERS_STEMS
    return read_component(folder, name, classes=(class_name,), stems=stems, variant=variant)


def check_model(model: ModelConfig) -> CheckResult:
    """Everything one models-config entry needs, and that its parts fit together."""
    if model.backend == "multiview":
        return check_multiview(model.pipeline, model.variant)
    sd = check_stable_diffusion(model.base, model.variant)
    if not sd.usable:
        return sd
    cn = check_controlnet(model.controlnet, model.variant)
    if not cn.usable:
        return cn
    problem = controlnet_fits(sd, cn)
    if problem:
        return CheckResult(model.base, "controlnet-normal", False, problem=problem)
    parts = [sd.summary, cn.summary]
    if model.ip_adapter is not None:
        ip = check_ip_adapter(model.ip_adapter)
        if not ip.usable:
            return ip
        width = ip.details.get("cross_attention_dim")
        if width is not None and width != sd.details["cross_attention_dim"]:
            return CheckResult(model.ip_adapter.path, "controlnet-normal", False,
                               problem=f"the IP-Adapter {model.ip_adapter.weight_file} was made for cross-attention "
                                       f"width {width} but the base model {model.base} has "
                                       f"{sd.details['cross_attention_dim']}")
        parts.append(ip.summary)
    return CheckResult(model.base, "controlnet-normal", True, summary="; ".join(parts),
                       details={"base": sd.details, "controlnet": cn.details})


def check_directory(path: str) -> CheckResult:
    """Whatever ``path`` is (for ``headsplat models check``): a multi-view pipeline, a
    Stable Diffusion pipeline, a ControlNet or an IP-Adapter folder."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        return CheckResult(path, "unknown", False, problem=f"{path} {not_a_folder(path)}")
    names = set(os.listdir(path))
    if MANIFEST_NAME in names:
        return check_multiview(path)
    if "model_index.json" in names:
        try:
            index = read_json(os.path.join(path, "model_index.json"), "model_index.json")
        except CheckProblem as exc:
            return CheckResult(path, "unknown", False, problem=f"{path} {exc}")
        if "text_encoder" in index or str(index.get("_class_name", "")).startswith("StableDiffusion"):
            return check_stable_diffusion(path)
        return check_multiview(path)   # another pipeline: usable only through a multi-view adapter
    if os.path.isdir(os.path.join(path, "unet")):
        return check_stable_diffusion(path)
    if "config.json" in names:
        try:
            config = read_json(os.path.join(path, "config.json"), "config.json")
        except CheckProblem as exc:
            return CheckResult(path, "unknown", False, problem=f"{path} {exc}")
        if config.get("_class_name") == "ControlNetModel":
            return check_controlnet(path)
        kind = config.get("_class_name") or (config.get("architectures") or ["unknown"])[0]
        return CheckResult(path, "unknown", False, problem=f"{path} holds a single {kind} component, not a pipeline, "
                                                           "ControlNet or IP-Adapter; point at the folder above it")
    for sub in ("", "models"):
        for name in sorted(os.listdir(os.path.join(path, sub)) if os.path.isdir(os.path.join(path, sub)) else []):
            if name.startswith("ip-adapter") and name.endswith((".safetensors", ".bin")):
                return check_ip_adapter(IPAdapterConfig(path=path, weight_name=name, subfolder=sub))
    return CheckResult(path, "unknown", False, problem=f"{path} is not a diffusers folder: it has no "
                                                       "model_index.json, config.json or ip-adapter weights")

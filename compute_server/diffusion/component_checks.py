"""Checks of one component folder (a UNet, VAE, text encoder, ControlNet, CLIP image
encoder ...): its config names the expected class, its weights exist and are complete,
and a few tensor shapes agree with the config. Reads configs and weight-file headers
only. ``checkpoints`` builds the pipeline-level checks on these."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .weights_files import WeightFileError, WeightFiles, find_weights, tensor_shapes

DIFFUSERS_STEMS = ("diffusion_pytorch_model",)
TRANSFORMERS_STEMS = ("model", "pytorch_model")
SINGLE_FILE_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".bin", ".pth")


class CheckProblem(Exception):
    """Why a folder is unusable (a sentence fragment completed by the caller)."""


@dataclass
class Component:
    """A diffusers/transformers component folder as read by the checks."""

    folder: str
    class_name: str
    config: dict
    shapes: dict
    weights: WeightFiles | None


def read_json(path: str, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            value = json.load(f)
    except FileNotFoundError:
        raise CheckProblem(f"has no {what}") from None
    except (OSError, ValueError) as exc:
        raise CheckProblem(f"has a {what} that cannot be read ({exc})") from None
    if not isinstance(value, dict):
        raise CheckProblem(f"has a {what} that is not a JSON object")
    return value


def read_component(folder: str, role: str, *, classes: tuple[str, ...] | None, stems: tuple[str, ...],
                   variant: str | None = None) -> Component:
    """Config + weights of one component subfolder (``role`` names it in messages; ""
    for a folder that is itself the component)."""
    where = f"{role}/" if role else ""
    if not os.path.isdir(folder):
        raise CheckProblem(f"has no {where or 'component'} folder")
    config = read_json(os.path.join(folder, "config.json"), f"{where}config.json")
    class_name = config.get("_class_name") or (config.get("architectures") or [""])[0]
    if classes is not None and class_name not in classes:
        raise CheckProblem(f"has a {where or 'config.json for a'} {class_name or 'unknown class'}, expected "
                           f"{' or '.join(classes)}")
    weights = None
    try:
        weights = find_weights(folder, stems, variant)
        if weights is None:
            hint = f" (for variant {variant!r})" if variant else ""
            raise CheckProblem(f"has no weights in {where or 'it'}{hint}: expected {where}{stems[0]}.safetensors "
                               "or .bin; the download is incomplete")
        shapes = tensor_shapes(weights)
    except WeightFileError as exc:
        name = os.path.basename(weights.primary) if weights else "weights"
        raise CheckProblem(f"has a broken weight file {where}{name}: it {exc}") from None
    if weights.files and not shapes and weights.files[0].endswith(".safetensors"):
        raise CheckProblem(f"has an empty weight file {where}{os.path.basename(weights.primary)}")
    _check_shapes(class_name, config, shapes, where)
    return Component(folder, class_name, config, shapes, weights)


def _find_shape(shapes: dict, suffix: str) -> tuple[str, tuple] | None:
    """The tensor named ``suffix``, or else the shortest name ending in it (transformers
    checkpoints may prefix names, e.g. "text_model.")."""
    if suffix in shapes:
        return suffix, shapes[suffix]
    matches = sorted((n for n in shapes if n.endswith("." + suffix)), key=len)
    return (matches[0], shapes[matches[0]]) if matches else None


def _check_shapes(class_name: str, config: dict, shapes: dict, where: str) -> None:
    """Compare a few tensors with what the config implies (skipped for .bin weights)."""
    if not shapes:
        return
    try:
        expected = _expected_shapes(class_name, config)
    except (KeyError, TypeError, IndexError, ValueError):
        raise CheckProblem(f"has a {where}config.json that lacks fields a {class_name} needs") from None
    for suffix, shape in expected.items():
        found = _find_shape(shapes, suffix)
        if found is None:
            raise CheckProblem(f"has {where or 'its '}weights without {suffix}; they are not {class_name} weights")
        if tuple(found[1]) != tuple(shape):
            raise CheckProblem(f"has a {where}config.json that does not match its weights ({found[0]} is "
                               f"{tuple(found[1])}, the config implies {tuple(shape)}); the folder mixes files of "
                               "different models")


def _expected_shapes(class_name: str, c: dict) -> dict[str, tuple]:
    if class_name in ("UNet2DConditionModel", "ControlNetModel"):
        k = c.get("conv_in_kernel", 3)
        out = {"conv_in.weight": (c["block_out_channels"][0], c.get("in_channels", 4), k, k)}
        if class_name == "ControlNetModel":
            emb = c.get("conditioning_embedding_out_channels") or (16, 32, 96, 256)
            out["controlnet_cond_embedding.conv_in.weight"] = (emb[0], c.get("conditioning_channels", 3), 3, 3)
        return out
    if class_name == "AutoencoderKL":
        return {"encoder.conv_in.weight": (c["block_out_channels"][0], c.get("in_channels", 3), 3, 3),
                "decoder.conv_out.weight": (c.get("out_channels", 3), c["block_out_channels"][0], 3, 3)}
    if class_name == "CLIPTextModel":
        return {"embeddings.token_embedding.weight": (c["vocab_size"], c["hidden_size"])}
    if class_name == "CLIPVisionModelWithProjection":
        return {"visual_projection.weight": (c["projection_dim"], c["hidden_size"])}
    return {}


def check_tokenizer(folder: str) -> None:
    if not os.path.isdir(folder):
        raise CheckProblem("has no tokenizer/ folder")
    names = set(os.listdir(folder))
    if "tokenizer.json" not in names and not {"vocab.json", "merges.txt"} <= names:
        raise CheckProblem("has a tokenizer/ without tokenizer.json or vocab.json + merges.txt")


def check_scheduler(folder: str) -> dict:
    config = read_json(os.path.join(folder, "scheduler_config.json"), "scheduler/scheduler_config.json")
    if int(config.get("num_train_timesteps", 1000)) < 2:
        raise CheckProblem("has a scheduler with fewer than 2 training timesteps")
    return config


def not_a_folder(path: str) -> CheckProblem:
    if os.path.isfile(path) and path.lower().endswith(SINGLE_FILE_EXTENSIONS):
        return CheckProblem("is a single-file checkpoint, not a diffusers folder; convert it where you downloaded "
                            "it (diffusers' from_single_file(...).save_pretrained(folder)), see docs/diffusion.md")
    if os.path.exists(path):
        return CheckProblem("is not a folder")
    return CheckProblem("does not exist")


def weight_kind(component: Component) -> str:
    files = component.weights.files if component.weights else ()
    kind = "safetensors" if files and files[0].endswith(".safetensors") else "torch .bin (not verified)"
    return kind + (f" in {len(files)} shards" if len(files) > 1 else "")

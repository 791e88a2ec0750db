"""The diffusion models configuration: which local weights the server may use, and how.

Why a file and not command-line flags: a model is a handful of folders plus sampling
settings, and a server may offer several. ``headsplat serve --models-config FILE`` reads
a JSON or TOML file (by extension) with a list under ``models``; docs/diffusion.md is the
reference. Every path is a local folder (relative paths are relative to the file); the
server never downloads anything.

This module is pure: it parses and validates the file into frozen dataclasses and never
looks inside the model folders (``checkpoints`` does that) or imports torch.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields

from ..errors import UserError

BACKENDS = ("controlnet-normal", "multiview")
DTYPES = ("auto", "float16", "bfloat16", "float32")
ATTENTION_SLICING = ("auto", "max", "off")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVED_NAMES = ("none",)

DEFAULT_PROMPT = ("a photo of a person's head, natural skin texture, detailed hair, soft even studio lighting, "
                  "plain white background")
DEFAULT_NEGATIVE_PROMPT = ("blurry, deformed, distorted face, extra eyes, cartoon, painting, text, watermark, "
                           "harsh shadows")


@dataclass(frozen=True)
class IPAdapterConfig:
    """An IP-Adapter (reference-image conditioning) for a Stable Diffusion model.

    path: folder holding the weights (e.g. a copy of h94/IP-Adapter); subfolder: where
    ``weight_name`` lies inside it ("models" for h94/IP-Adapter); image_encoder: the CLIP
    vision encoder folder, relative to ``path/subfolder`` when it has no slash, else
    relative to ``path`` (diffusers' rule); scale: strength of the image conditioning.
    """

    path: str
    weight_name: str = "ip-adapter_sd15.safetensors"
    subfolder: str = ""
    image_encoder: str = "image_encoder"
    scale: float = 0.6

    @property
    def weight_file(self) -> str:
        return os.path.join(self.path, self.subfolder, self.weight_name)

    @property
    def image_encoder_dir(self) -> str:
        if "/" in self.image_encoder or os.path.isabs(self.image_encoder):
            return os.path.join(self.path, self.image_encoder)
        return os.path.join(self.path, self.subfolder, self.image_encoder)


@dataclass(frozen=True)
class PriorConfig:
    """GAF's iterative-denoising prior (section 4.2) inside the optimization.

    Every ``refresh_every`` optimizer iterations, ``views`` renders of the avatar at random
    cameras are encoded, noised to t ~ U[t_min, t_max] (a fraction of the training
    timesteps) and denoised with DDIM in round(t * T / k) steps; the results supervise
    those views with loss weight ``weight``. guidance_scale: None uses the model's.
    """

    enabled: bool = True
    refresh_every: int = 100
    views: int = 4
    weight: float = 0.5
    t_min: float = 0.02
    t_max: float = 0.98
    k: int = 20
    guidance_scale: float | None = None


@dataclass(frozen=True)
class ModelConfig:
    """One diffusion model the server offers (see docs/diffusion.md for every field).

    base / controlnet / ip_adapter: the ``controlnet-normal`` backend's folders;
    pipeline: the ``multiview`` backend's folder. resolution: the long side of the
    images the model sees (pixels). strength: img2img noise level of the novel views
    (1 = ignore the reprojected start image). steps: denoising steps of a full schedule.
    normal_encoding: how normal maps become RGB ("normalbae", the colours ControlNet 1.1's
    normal model learned; "opengl", "opencv" or an axes string such as "x,-y,-z"; see
    normal_encoding.py); normal_background: RGB of pixels off the mesh. keep_known: keep
    the photo's pixels of each novel view (the rest is repainted). batch_size: views per
    network call. source: the config file (for messages).
    """

    name: str
    backend: str
    base: str | None = None
    controlnet: str | None = None
    ip_adapter: IPAdapterConfig | None = None
    pipeline: str | None = None
    dtype: str = "auto"
    variant: str | None = None
    resolution: int = 512
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    strength: float = 0.75
    steps: int = 30
    guidance_scale: float = 5.0
    controlnet_scale: float = 1.0
    normal_encoding: str = "normalbae"
    normal_background: tuple[float, float, float] = (0.5, 0.5, 1.0)
    keep_known: bool = True
    batch_size: int = 4
    attention_slicing: str = "auto"
    keep_warm: bool = False
    prior: PriorConfig = field(default_factory=PriorConfig)
    source: str = ""

    def folders(self) -> dict[str, str]:
        """The folders this entry names, by role (for messages and checks)."""
        out = {"base": self.base, "controlnet": self.controlnet, "pipeline": self.pipeline}
        if self.ip_adapter is not None:
            out["ip_adapter"] = self.ip_adapter.path
        return {k: v for k, v in out.items() if v}


def load_models_config(path: str | os.PathLike) -> list[ModelConfig]:
    """Read and validate a models config file (``.json`` or ``.toml``).

    Raises UserError("bad_request", ...) naming the file and the problem for anything
    wrong with the file itself; whether the folders hold usable weights is checked later
    (``checkpoints.check_model``), so one broken model does not stop the server.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    raw = _read(path)
    entries = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise _bad(path, "it must hold a list named 'models' (see docs/diffusion.md)")
    unknown = sorted(set(raw) - {"models"})
    if unknown:
        raise _bad(path, f"unknown top-level key(s) {', '.join(unknown)}; only 'models' is read")
    models, seen = [], set()
    for i, entry in enumerate(entries):
        model = parse_model_entry(entry, path, i)
        if model.name in seen:
            raise _bad(path, f"two models are named {model.name!r}; names must be unique")
        seen.add(model.name)
        models.append(model)
    return models


def _read(path: str) -> object:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UserError("bad_request", f"the models config {path} does not exist") from None
    except OSError as exc:
        raise UserError("bad_request", f"the models config {path} cannot be read ({exc.strerror})") from None
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".toml":
            return tomllib.loads(data.decode("utf-8"))
        if ext == ".json":
            return json.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(path, f"it is not valid {ext[1:].upper()} ({exc})") from None
    raise _bad(path, "its name must end in .json or .toml")


def _bad(path: str, problem: str) -> UserError:
    return UserError("bad_request", f"models config {path}: {problem}")


class _EntryReader:
    """Typed access to one table of the file, with messages that name the entry and key."""

    def __init__(self, table: object, path: str, where: str):
        if not isinstance(table, dict):
            raise _bad(path, f"{where} must be a table/object")
        self.table, self.path, self.where = table, path, where

    def fail(self, key: str, problem: str) -> UserError:
        return _bad(self.path, f"{self.where}: '{key}' {problem}")

    def check_keys(self, allowed) -> None:
        unknown = sorted(set(self.table) - set(allowed))
        if unknown:
            raise _bad(self.path, f"{self.where}: unknown key(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(sorted(allowed))})")

    def string(self, key: str, default=None, *, required=False, choices=None) -> str | None:
        if key not in self.table:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.table[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {type(value).__name__}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def number(self, key: str, default, *, low=None, high=None, integer=False, allow_none=False):
        if key not in self.table:
            return default
        value = self.table[key]
        if value is None and allow_none:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.fail(key, f"must be {'an integer' if integer else 'a number'}, not {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.fail(key, f"must be {bounds}, not {value}")
        return int(value) if integer else float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def folder(self, key: str) -> str | None:
        value = self.string(key)
        if value is None:
            return None
        if not value.strip():
            raise self.fail(key, "is empty")
        if "://" in value:
            raise self.fail(key, "must be a local folder; the server never downloads models "
                                 "(download elsewhere and copy the folder here)")
        value = os.path.expanduser(value)
        return os.path.normpath(value if os.path.isabs(value) else os.path.join(os.path.dirname(self.path), value))


def parse_model_entry(entry: object, path: str, index: int) -> ModelConfig:
    """One ``models`` entry -> ModelConfig (UserError naming the entry and key)."""
    name = entry.get("name") if isinstance(entry, dict) else None
    r = _EntryReader(entry, path, f"model {index + 1}" + (f" ({name!r})" if isinstance(name, str) else ""))
    allowed = {f.name for f in fields(ModelConfig)} - {"source"}
    r.check_keys(allowed)
    name = r.string("name", required=True)
    if not NAME_PATTERN.match(name) or name.lower() in RESERVED_NAMES:
        raise r.fail("name", "must be 1-64 letters, digits, '.', '_' or '-' (and not 'none')")
    backend = r.string("backend", required=True, choices=BACKENDS)
    model = ModelConfig(
        name=name, backend=backend, base=r.folder("base"), controlnet=r.folder("controlnet"),
        ip_adapter=_ip_adapter(r), pipeline=r.folder("pipeline"),
        dtype=r.string("dtype", "auto", choices=DTYPES), variant=r.string("variant"),
        resolution=r.number("resolution", 512, low=32, high=2048, integer=True),
        prompt=r.string("prompt", DEFAULT_PROMPT), negative_prompt=r.string("negative_prompt", DEFAULT_NEGATIVE_PROMPT),
        strength=r.number("strength", 0.75, low=0.05, high=1.0),
        steps=r.number("steps", 30, low=1, high=1000, integer=True),
        guidance_scale=r.number("guidance_scale", 5.0, low=0.0, high=50.0),
        controlnet_scale=r.number("controlnet_scale", 1.0, low=0.0, high=5.0),
        normal_encoding=r.string("normal_encoding", "normalbae"),
        normal_background=_rgb(r, "normal_background", (0.5, 0.5, 1.0)),
        keep_known=r.boolean("keep_known", True),
        batch_size=r.number("batch_size", 4, low=1, high=64, integer=True),
        attention_slicing=r.string("attention_slicing", "auto", choices=ATTENTION_SLICING),
        keep_warm=r.boolean("keep_warm", False), prior=_prior(r), source=path)
    try:
        from .normal_encoding import parse_normal_encoding
        parse_normal_encoding(model.normal_encoding)
    except ValueError as exc:
        raise r.fail("normal_encoding", str(exc)) from None
    if backend == "controlnet-normal":
        for key in ("base", "controlnet"):
            if getattr(model, key) is None:
                raise r.fail(key, "is required for the controlnet-normal backend (a local diffusers folder)")
        if model.pipeline is not None:
            raise r.fail("pipeline", "belongs to the multiview backend")
    else:
        if model.pipeline is None:
            raise r.fail("pipeline", "is required for the multiview backend (a local diffusers folder with "
                                     "headsplat_multiview.json)")
        for key in ("base", "controlnet", "ip_adapter"):
            if getattr(model, key) is not None:
                raise r.fail(key, "belongs to the controlnet-normal backend")
    return model


def _rgb(r: _EntryReader, key: str, default) -> tuple[float, float, float]:
    value = r.table.get(key, default)
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in value)):
        raise r.fail(key, f"must be three numbers in [0, 1], not {value!r}")
    return tuple(float(v) for v in value)


def _ip_adapter(r: _EntryReader) -> IPAdapterConfig | None:
    if "ip_adapter" not in r.table:
        return None
    t = _EntryReader(r.table["ip_adapter"], r.path, f"{r.where} ip_adapter")
    t.check_keys({f.name for f in fields(IPAdapterConfig)})
    defaults = IPAdapterConfig(path="")
    folder = t.folder("path")
    if folder is None:
        raise t.fail("path", "is required (the folder holding the IP-Adapter weights)")
    return IPAdapterConfig(path=folder,
                           weight_name=t.string("weight_name", defaults.weight_name),
                           subfolder=t.string("subfolder", defaults.subfolder),
                           image_encoder=t.string("image_encoder", defaults.image_encoder),
                           scale=t.number("scale", defaults.scale, low=0.0, high=2.0))


def _prior(r: _EntryReader) -> PriorConfig:
    if "prior" not in r.table:
        return PriorConfig()
    t = _EntryReader(r.table["prior"], r.path, f"{r.where} prior")
    t.check_keys({f.name for f in fields(PriorConfig)})
    d = PriorConfig()
    prior = PriorConfig(enabled=t.boolean("enabled", d.enabled),
                        refresh_every=t.number("refresh_every", d.refresh_every, low=1, integer=True),
                        views=t.number("views", d.views, low=1, high=32, integer=True),
                        weight=t.number("weight", d.weight, low=0.0, high=100.0),
                        t_min=t.number("t_min", d.t_min, low=0.0, high=1.0),
                        t_max=t.number("t_max", d.t_max, low=0.0, high=1.0),
                        k=t.number("k", d.k, low=1, high=1000, integer=True),
                        guidance_scale=t.number("guidance_scale", None, low=0.0, high=50.0, allow_none=True))
    if not 0.0 < prior.t_min <= prior.t_max <= 1.0:
        raise t.fail("t_min", f"and t_max must satisfy 0 < t_min <= t_max <= 1 (got {prior.t_min}, {prior.t_max})")
    return prior

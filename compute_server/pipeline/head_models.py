"""The head models this server offers by name: "builtin" plus the FLAME files configured
with ``headsplat serve --head-model PATH`` (named by their version, e.g. "flame2023")."""

from __future__ import annotations

import threading

import torch

from ..errors import UserError
from ..head.model import HeadModel
from ..head.registry import available_head_models, load_head_model

BUILTIN = "builtin"


class HeadModelCatalog:
    """Resolves names to loaded models (cached per device; loading is cheap but not free)."""

    def __init__(self, specs: list[str] | None = None):
        self._specs = list(specs or [])
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], HeadModel] = {}
        self._names: dict[str, str] | None = None

    def describe(self) -> list[dict]:
        """server.info's head_models: the built-in head first (the default), then FLAME files."""
        entries = []
        for entry in available_head_models(self._specs):
            entry = dict(entry)
            entry["default"] = entry.get("name") == BUILTIN
            entries.append(entry)
        return entries

    def _name_map(self) -> dict[str, str]:
        if self._names is None:
            names = {BUILTIN: BUILTIN}
            for entry in available_head_models(self._specs):
                if entry.get("status") == "ok" and entry.get("name") != BUILTIN:
                    names.setdefault(entry["name"], entry.get("spec", ""))
            self._names = names
        return self._names

    def check(self, name: str) -> str:
        """The spec behind ``name``, or UserError naming the models this server has."""
        names = self._name_map()
        if name not in names:
            raise UserError("bad_request", f"this server has no head model named {name!r}; "
                                           f"it offers {', '.join(sorted(names))}")
        return names[name]

    def load(self, name: str, device: torch.device) -> HeadModel:
        spec = self.check(name)
        key = (name, str(device))
        with self._lock:
            model = self._loaded.get(key)
            if model is None:
                model = load_head_model(None if spec == BUILTIN else spec, device=device)
                if model.landmark_mp_index.numel() == 0:
                    raise UserError("bad_model", f"head model {name!r} has no MediaPipe landmark embedding, so "
                                    "portraits cannot be fitted to it; put mediapipe_landmark_embedding.npz "
                                    "next to the FLAME file")
                self._loaded[key] = model
            return model

"""Writing and reading an avatar folder (docs/formats.md, "Avatar folder").

One place knows which file holds what, so the job that makes avatars, the renderer, the
exporters and the tests agree.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from shared.camera import Camera
from shared.splat_format import EXPRESSION_COLOUR_FILE, LocalSplats

from ..errors import UserError
from ..head.model import HeadModel
from ..splats.model import SplatModel

RIG_ARRAYS = ("rest_vertices", "faces", "expression_deltas", "joint_rest", "joint_parents", "skin_weights",
              "face_region")


def rig_arrays(head_model: HeadModel, shape: np.ndarray) -> dict:
    """The numeric arrays of rig.npz for an identity ``shape`` (S,) and the model's static
    offset (its hair shell; the joints are regressed without it, as the model poses them)."""
    export = head_model.rig_export(np.asarray(shape, dtype=np.float32))
    arrays = {k: np.asarray(export[k]) for k in RIG_ARRAYS}
    arrays["faces"] = arrays["faces"].astype(np.int32)
    arrays["joint_parents"] = arrays["joint_parents"].astype(np.int32)
    arrays["face_region"] = arrays["face_region"].astype(np.int32)
    arrays["shape"] = np.asarray(shape, dtype=np.float32)
    arrays["static_offset"] = head_model.static_offset.detach().cpu().numpy().astype(np.float32)
    arrays["rest_vertices"] = (arrays["rest_vertices"] + arrays["static_offset"]).astype(np.float32)
    return arrays


def png_bytes(rgba: np.ndarray) -> bytes:
    """(H, W, 4) or (H, W, 3) float in [0, 1] -> 8-bit PNG bytes."""
    from PIL import Image

    mode = "RGBA" if rgba.shape[-1] == 4 else "RGB"
    buf = io.BytesIO()
    Image.fromarray((np.clip(rgba, 0, 1) * 255).round().astype(np.uint8), mode).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class LoadedAvatar:
    """An avatar ready to render: its Gaussians, head model and identity."""

    avatar_id: str
    metadata: dict
    splats: SplatModel
    head_model: HeadModel        # with the avatar's static offset (its hair shell)
    shape: torch.Tensor          # (1, S)
    portrait_camera: Camera | None

    @property
    def n_expr(self) -> int:
        return self.head_model.n_expr


def avatar_head_model(catalog, metadata: dict, rig, device) -> HeadModel:
    """The head model an avatar was made with, carrying the avatar's static offset (its
    hair shell) when it has one."""
    head_model = catalog.load(metadata.get("head_model", {}).get("name", "builtin"), device)
    offset = np.array(rig["static_offset"], np.float32) if "static_offset" in rig else None
    if offset is not None and np.any(offset != 0):
        head_model = head_model.with_static_offset(offset)
    return head_model


def load_avatar(store, avatar_id: str, catalog, device: torch.device) -> LoadedAvatar:
    """Read an avatar from the store and its head model from the catalog (UserError if the
    model it was made with is not available on this server any more)."""
    extra = [EXPRESSION_COLOUR_FILE] if (store.path(avatar_id) / EXPRESSION_COLOUR_FILE).is_file() else []
    metadata, arrays, _ = store.get(avatar_id, ["splats.npz", "rig.npz"] + extra)
    if "splats" not in arrays or "rig" not in arrays:
        raise UserError("bad_file", f"avatar {avatar_id} has no splats/rig data; it was not made by avatar.create")
    head_info = metadata.get("head_model", {})
    head_model = avatar_head_model(catalog, metadata, arrays["rig"], device)
    expected = head_info.get("sha256")
    if expected and head_model.source_sha256 and expected != head_model.source_sha256:
        raise UserError("bad_model", f"avatar {avatar_id} was made with a different version of head model "
                                     f"{head_info.get('name')!r} than this server has; recreate the avatar")
    stem = EXPRESSION_COLOUR_FILE.rsplit(".", 1)[0]
    splats = LocalSplats.from_arrays({k: np.array(v) for k, v in {**arrays["splats"], **arrays.get(stem, {})}.items()})
    splats.check_binding(head_model.n_faces)
    if splats.expression_colour is not None and splats.expression_colour.shape[1] != head_model.n_expr + 3:
        raise UserError("bad_file", f"avatar {avatar_id}'s expression colour has {splats.expression_colour.shape[1]} "
                                    f"codes per Gaussian; its head model needs {head_model.n_expr + 3}")
    rig = arrays["rig"]
    camera = metadata.get("portrait_camera")
    return LoadedAvatar(
        avatar_id=avatar_id, metadata=metadata,
        splats=SplatModel.from_local_splats(splats, device=device),
        head_model=head_model,
        shape=torch.as_tensor(np.array(rig["shape"]), dtype=torch.float32, device=device)[None],
        portrait_camera=Camera.from_wire(camera) if camera else None)

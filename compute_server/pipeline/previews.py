"""Still images of an avatar for people: the portrait-camera preview and a turntable
contact sheet saved with every avatar (and shown in the Blender panel)."""

from __future__ import annotations

import numpy as np
import torch

from shared.camera import Camera

from ..camera_torch import stack_cameras
from ..head.model import HeadParams
from ..splats.model import SplatModel, expression_code
from ..splats.render_avatar import render_avatar
from ..views.sampling import head_centre, orbit_like


@torch.no_grad()
def posed_vertices(head_model, params: dict) -> torch.Tensor:
    """(V, 3) vertices of one frame's head parameters (numpy arrays, one frame)."""
    device = head_model.faces.device
    hp = HeadParams.from_numpy({k: np.asarray(v, dtype=np.float32).reshape(1, -1) for k, v in params.items()},
                               device=device)
    return head_model(hp).vertices[0]


@torch.no_grad()
def render_rgba(model: SplatModel, head_model, params: dict, camera: Camera) -> np.ndarray:
    """(H, W, 4) float RGBA render of the avatar posed by ``params`` seen by ``camera``."""
    vertices = posed_vertices(head_model, params)
    viewmats, Ks = stack_cameras([camera], device=vertices.device)
    code = None
    if model.has_expression_colour:
        code = expression_code(*(torch.as_tensor(np.asarray(params[k], np.float32).reshape(-1), device=vertices.device)
                                 for k in ("expr", "jaw_pose")))
    out = render_avatar(model, vertices, head_model.faces, viewmats, Ks, camera.width, camera.height,
                        colour_code=code)
    return torch.cat([out.rgb[0], out.alpha[0, ..., None]], dim=-1).clamp(0, 1).cpu().numpy()


@torch.no_grad()
def contact_sheet(model: SplatModel, head_model, params: dict, camera: Camera, vertices: np.ndarray, *,
                  count: int = 8, size: int = 192, columns: int = 4) -> np.ndarray:
    """A grid of ``count`` renders orbiting the head (RGBA float), starting at the front."""
    small = camera.resized(size, size)
    centre = head_centre(np.asarray(vertices))
    tiles = [render_rgba(model, head_model, params, orbit_like(small, centre, 360.0 * i / count, 0.0))
             for i in range(count)]
    rows = [np.concatenate(tiles[r * columns:(r + 1) * columns], axis=1) for r in range(int(np.ceil(count / columns)))]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)

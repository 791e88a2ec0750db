"""Render triangle-bound Gaussians of a posed head into cameras: colour, alpha, depth and
normals, with one call for training and final renders alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import SplatModel
from .normals import normalize_rendered_normals, normals_to_camera, orient_towards, splat_normals_world
from .rasterize import rasterize_splats
from .sh import colors_for_cameras


@dataclass
class AvatarRender:
    """Renders of one posed avatar in C cameras.

    rgb: (C, H, W, 3) composited over the background; alpha: (C, H, W);
    depth: (C, H, W) expected depth in metres (0 where empty) or None;
    normals: (C, H, W, 3) unit camera-space normals (OpenCV axes) or None, with
    normals_valid (C, H, W) bool; meta: the rasterizer's meta (means2d for densification).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor | None
    normals: torch.Tensor | None
    normals_valid: torch.Tensor | None
    meta: dict


def render_avatar(model: SplatModel, vertices: torch.Tensor, faces: torch.Tensor, viewmats: torch.Tensor,
                  Ks: torch.Tensor, width: int, height: int, *, background: torch.Tensor | None = None,
                  with_depth: bool = False, with_normals: bool = False, sh_degree: int | None = None,
                  backend: str = "auto", colour_code: torch.Tensor | None = None) -> AvatarRender:
    """Pose the Gaussians on ``vertices`` (V, 3) (one head pose) and render them into C
    cameras (viewmats (C, 4, 4), Ks (C, 3, 3)).

    background: (3,) colour behind the avatar (default black). sh_degree: bands to use
    (default: all the model has; training grows it progressively). colour_code: the head's
    expression code (1-D, ``splats.model.expression_code``) for a model with an
    expression colour; None renders its neutral colours.
    """
    posed = model.pose(vertices[None], faces)
    means, quats, scales = posed.means[0], posed.quats[0], posed.scales[0]
    opacities = model.opacities()
    degree = model.sh_degree if sh_degree is None else min(sh_degree, model.sh_degree)
    rgb_feats = colors_for_cameras(model.sh_coeffs(colour_code), means, viewmats, degree)      # (C, N, 3)
    n_cams = viewmats.shape[0]
    bg = torch.zeros(3, device=means.device) if background is None else background.to(means.device)
    feats, backgrounds = rgb_feats, bg[None].expand(n_cams, 3)
    if with_normals:
        centers = torch.linalg.inv(viewmats)[:, :3, 3]
        n_world = orient_towards(splat_normals_world(quats, scales), means, centers)  # (C, N, 3)
        feats = torch.cat([rgb_feats, normals_to_camera(n_world, viewmats)], dim=-1)
        backgrounds = torch.cat([backgrounds, torch.zeros(n_cams, 3, device=means.device)], dim=-1)
    out, alphas, meta = rasterize_splats(means, quats, scales, opacities, feats, viewmats, Ks, width, height,
                                         backgrounds=backgrounds, render_mode="RGB+ED" if with_depth else "RGB",
                                         backend=backend)
    normals = valid = depth = None
    if with_normals:
        normals, valid = normalize_rendered_normals(out[..., 3:6], alphas)
    if with_depth:
        depth = out[..., -1]
    return AvatarRender(rgb=out[..., :3], alpha=alphas[..., 0], depth=depth, normals=normals, normals_valid=valid,
                        meta=meta)

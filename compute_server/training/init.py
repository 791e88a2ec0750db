"""Where the Gaussians start: spread over the head mesh, flat along its surface, coloured
from the photo where the photo sees them and from the completed vertex colours elsewhere.

GaussianAvatars starts with one Gaussian per triangle at its centroid; at the counts a
CPU can train, that leaves big faces blurry and tiny ones crowded, so here each triangle
gets a share of ``count`` proportional to its area (at least one, so every triangle can
grow its own), at random positions inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from shared.camera import Camera

from ..splats.binding import triangle_frames
from ..splats.model import SplatModel
from ..splats.sh import rgb_to_sh_dc
from ..views.surface import SurfaceView, bilinear_sample, visible_in

# (points (N, 3), face ids (N,), barycentrics (N, 3)) -> (N, 3) colours where the photo is silent
ColourFill = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class InitSettings:
    count: int = 20_000               # target number of Gaussians (at least one per face)
    sh_degree: int = 3
    opacity: float = 0.6
    flatness: float = 0.35            # scale along the normal relative to the in-surface scale
    region_weights: dict | None = None  # e.g. {"face": 2.0}: more Gaussians where detail lives


def faces_per_gaussian(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                       settings: InitSettings, rng: np.random.Generator) -> np.ndarray:
    """(N,) face index of each initial Gaussian: one per face plus an area-proportional share."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    weight = area.copy()
    for name, w in (settings.region_weights or {}).items():
        if name in region_names:
            weight[face_region == region_names.index(name)] *= w
    extra = max(0, settings.count - len(faces))
    if extra and weight.sum() > 0:
        extra_faces = rng.choice(len(faces), size=extra, p=weight / weight.sum())
    else:
        extra_faces = np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(len(faces)), extra_faces]).astype(np.int64)


def initialize_splats(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                      vertex_colors: np.ndarray, settings: InitSettings, rng: np.random.Generator, *,
                      photo: np.ndarray | None = None, photo_matte: np.ndarray | None = None,
                      photo_camera: Camera | None = None, photo_surface: SurfaceView | None = None,
                      fill: ColourFill | None = None) -> SplatModel:
    """Gaussians on the posed mesh ``vertices`` (V, 3) (the pose of the photo).

    vertex_colors: (V, 3) completed colours in [0, 1]; ``fill`` replaces them where given
    (the novel views' own colours, e.g. the scalp's hair texture, so the Gaussians start
    from what they are trained towards instead of a smooth blend that a draft's few
    iterations never wash out). With ``photo`` (H, W, 3), its matte, camera and
    SurfaceView, Gaussians the photo sees take their colour straight from it.
    """
    binding = faces_per_gaussian(vertices, faces, face_region, region_names, settings, rng)
    n = len(binding)
    # barycentric positions: the first Gaussian of each face at its centroid, the rest random
    bary = rng.dirichlet(np.ones(3), size=n)
    bary[: len(faces)] = 1.0 / 3.0
    tri = vertices[faces[binding]]                                     # (N, 3, 3)
    points = np.einsum("nk,nkc->nc", bary, tri)
    rot, cen, k = (t[0].numpy().astype(np.float64) for t in
                   triangle_frames(torch.as_tensor(vertices, dtype=torch.float64)[None], torch.as_tensor(faces)))
    rot_b, cen_b, k_b = rot[binding], cen[binding], k[binding]
    means_local = np.einsum("nji,nj->ni", rot_b, points - cen_b) / k_b[:, None]

    tri_all = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri_all[:, 1] - tri_all[:, 0], tri_all[:, 2] - tri_all[:, 0]), axis=1)
    per_face = np.bincount(binding, minlength=len(faces))
    spacing = np.sqrt(area[binding] / per_face[binding])               # metres between neighbours
    in_plane = np.log(np.maximum(0.6 * spacing / k_b, 1e-4))
    log_scales = np.stack([in_plane, in_plane, in_plane + np.log(settings.flatness)], axis=1)

    colors = np.einsum("nk,nkc->nc", bary, vertex_colors[faces[binding]]) if fill is None \
        else np.asarray(fill(points, binding, bary), np.float64)
    if photo is not None:
        normals = rot_b[:, :, 2]
        seen, px = visible_in(points, normals, photo_camera, photo_surface)
        seen &= bilinear_sample(photo_matte, px) > 0.5
        colors[seen] = bilinear_sample(photo, px[seen])
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    n_rest = (settings.sh_degree + 1) ** 2 - 1
    opacity_logit = float(np.log(settings.opacity / (1 - settings.opacity)))
    return SplatModel.from_tensors(
        means=t(means_local), scales=t(log_scales), quats=t(np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))),
        opacities=torch.full((n,), opacity_logit), sh0=rgb_to_sh_dc(t(np.clip(colors, 0, 1)))[:, None],
        shN=torch.zeros(n, n_rest, 3), binding=torch.as_tensor(binding), sh_degree=settings.sh_degree)

"""Colours for every vertex of the head mesh from a single photo.

What the photo shows is sampled directly; the other side of the face comes from its
mirror image (faces are nearly symmetric); what neither shows (the back and sides of the
head, under the chin) is filled by harmonic interpolation over the mesh, which spreads
the colours at the edge of the seen region (skin from the cheeks, hair from the top)
smoothly inwards. Mouth interior, teeth and the unseen part of the eyeballs get fixed
plausible colours. This is the "no diffusion" completion every other backend is
measured against, and the colour initialization of the Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from shared.camera import Camera

from ..head.builtin.mesh_fields import harmonic
from ..head.mesh_topology import vertex_adjacency
from .surface import SurfaceView, bilinear_sample, render_surface, visible_in

SEEN, MIRRORED, FILLED, DEFAULT = 0, 1, 2, 3
REGION_DEFAULT_RGB = {
    "teeth": (0.86, 0.83, 0.76),
    "mouth_interior": (0.32, 0.12, 0.12),
    "eyeball": (0.88, 0.86, 0.84),
}
MIRROR_MAX_DISTANCE_M = 0.004


@dataclass
class VertexColors:
    colors: np.ndarray   # (V, 3) float32 in [0, 1]
    origin: np.ndarray   # (V,) int8: SEEN, MIRRORED, FILLED or DEFAULT

    def fraction(self, origin: int) -> float:
        return float(np.mean(self.origin == origin))


def mirror_vertex_index(rest_vertices: np.ndarray, max_distance_m: float = MIRROR_MAX_DISTANCE_M) -> np.ndarray:
    """(V,) index of each vertex's mirror partner across the x = 0 plane, -1 where none is
    close enough. ``rest_vertices`` (V, 3) in the neutral, unposed head (symmetric pose)."""
    mirrored = rest_vertices * np.array([-1.0, 1.0, 1.0])
    dist, idx = cKDTree(rest_vertices).query(mirrored)
    return np.where(dist <= max_distance_m, idx, -1).astype(np.int64)


def vertex_regions(faces: np.ndarray, face_region: np.ndarray, n_verts: int) -> np.ndarray:
    """(V,) region index of each vertex (a vertex shared by regions takes the lowest index,
    which is the skin-side region in every model we ship)."""
    out = np.full(n_verts, np.iinfo(np.int64).max, dtype=np.int64)
    for k in range(3):
        np.minimum.at(out, faces[:, k], face_region)
    out[out == np.iinfo(np.int64).max] = 0
    return out


def complete_vertex_colors(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                           rest_vertices: np.ndarray, image: np.ndarray, matte: np.ndarray, camera: Camera,
                           surface: SurfaceView | None = None) -> VertexColors:
    """Per-vertex colours of the posed mesh (V, 3) seen by ``camera`` in ``image`` (H, W, 3)
    with foreground ``matte`` (H, W). ``rest_vertices`` (V, 3) define the mirror pairs."""
    n = len(vertices)
    if surface is None:
        surface = render_surface(vertices, faces, [camera])[0]
    from ..render.normal_maps import vertex_normals
    import torch

    normals = vertex_normals(torch.as_tensor(vertices, dtype=torch.float32)[None],
                             torch.as_tensor(faces, dtype=torch.long))[0].numpy()
    visible, px = visible_in(vertices, normals, camera, surface)
    fg = bilinear_sample(matte, px) > 0.5
    seen = visible & fg
    colors = np.zeros((n, 3), np.float64)
    colors[seen] = bilinear_sample(image, px[seen])
    origin = np.full(n, FILLED, dtype=np.int8)
    origin[seen] = SEEN

    partner = mirror_vertex_index(rest_vertices)
    use_mirror = (~seen) & (partner >= 0)
    use_mirror &= seen[np.maximum(partner, 0)]
    colors[use_mirror] = colors[partner[use_mirror]]
    origin[use_mirror] = MIRRORED

    regions = vertex_regions(faces, face_region, n)
    for name, rgb in REGION_DEFAULT_RGB.items():
        if name in region_names:
            unset = (regions == region_names.index(name)) & (origin == FILLED)
            colors[unset] = rgb
            origin[unset] = DEFAULT

    known = origin != FILLED
    # every connected piece of the mesh needs a known value for the harmonic solve
    _, component = connected_components(vertex_adjacency(faces, n), directed=False)
    fallback = colors[known].mean(axis=0) if known.any() else np.array([0.6, 0.5, 0.45])
    for comp in np.unique(component[~known]):
        members = component == comp
        if not (members & known).any():
            first = np.flatnonzero(members)[0]
            colors[first] = fallback
            origin[first] = DEFAULT
            known[first] = True
    if (~known).any():
        colors = harmonic(np.asarray(vertices, dtype=np.float64), faces, np.flatnonzero(known), colors[known], order=1)
    return VertexColors(colors=np.clip(colors, 0, 1).astype(np.float32), origin=origin)

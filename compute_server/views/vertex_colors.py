"""Colours for every vertex of the head mesh from a single photo.

What the photo shows is sampled directly; the other side of the face comes from its
mirror image (faces are nearly symmetric); the unseen back of the scalp borrows the hair
texture of the seen front of the scalp (mirrored front to back), so the back of the head
has hair-like variation instead of one flat colour; what remains (sides of the neck,
under the chin) is filled by harmonic interpolation over the mesh, which spreads the
colours at the edge of the seen region smoothly inwards. Mouth interior, tongue, teeth and
the unseen part of the eyeballs get colours derived from the photo (``interior_colors``).
This is the "no diffusion" completion every other backend is measured against, and the
colour initialization of the Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from shared.camera import Camera

from ..head.mesh_fields import harmonic
from ..head.mesh_topology import vertex_adjacency
from .interior_colors import interior_colours
from .shading import Shading, relit_faces
from .surface import SurfaceView, bilinear_sample, render_surface, visible_in

SEEN, MIRRORED, FILLED, DEFAULT, HAIR_TRANSFER = 0, 1, 2, 3, 4
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


def _transfer_scalp_front_to_back(rest_vertices: np.ndarray, scalp: np.ndarray, colors: np.ndarray,
                                  origin: np.ndarray) -> None:
    """Unseen scalp vertices take the colour of the seen scalp vertex nearest to their
    front-to-back mirror image (z reflected about the scalp's middle). In place."""
    source = scalp & ((origin == SEEN) | (origin == MIRRORED))
    target = scalp & (origin == FILLED)
    if not source.any() or not target.any():
        return
    z_mid = 0.5 * (rest_vertices[scalp, 2].min() + rest_vertices[scalp, 2].max())
    reflected = rest_vertices[target] * np.array([1.0, 1.0, -1.0]) + np.array([0.0, 0.0, 2 * z_mid])
    source_index = np.flatnonzero(source)
    dist, nearest = cKDTree(rest_vertices[source_index]).query(reflected)
    close = dist < 0.02   # reflected points far from any seen hair keep the smooth fill
    target_index = np.flatnonzero(target)[close]
    colors[target_index] = colors[source_index[nearest[close]]]
    origin[target_index] = HAIR_TRANSFER


def _fill_by_region(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, colors: np.ndarray,
                    known: np.ndarray) -> np.ndarray:
    """Harmonic fill of the unknown colours, region by region (scalp colours spread over the
    scalp, skin over the neck, rather than blending across the hairline), then over the
    whole mesh for whatever a region could not fill (a region with no known colour)."""
    colors = colors.copy()
    known = known.copy()
    for region in np.unique(face_region):
        sub_faces = faces[face_region == region]
        used = np.unique(sub_faces)
        sub_known = known[used]
        if sub_known.all() or not sub_known.any():
            continue
        local = np.full(len(vertices), -1, dtype=np.int64)
        local[used] = np.arange(len(used))
        pieces, component = connected_components(vertex_adjacency(local[sub_faces], len(used)), directed=False)
        solvable = np.isin(component, np.unique(component[sub_known]))   # pieces with a known vertex
        keep = np.flatnonzero(solvable)
        if not (solvable & ~sub_known).any():
            continue
        relocal = np.full(len(used), -1, dtype=np.int64)
        relocal[keep] = np.arange(len(keep))
        face_ok = np.all(solvable[local[sub_faces]], axis=1)
        filled = harmonic(vertices[used[keep]], relocal[local[sub_faces[face_ok]]],
                          np.flatnonzero(sub_known[keep]), colors[used[keep]][sub_known[keep]], order=1)
        new = used[keep][~sub_known[keep]]
        colors[new] = filled[~sub_known[keep]]
        known[new] = True
    # whatever is left: the whole mesh, every connected piece anchored somewhere
    _, component = connected_components(vertex_adjacency(faces, len(vertices)), directed=False)
    fallback = colors[known].mean(axis=0) if known.any() else np.array([0.6, 0.5, 0.45])
    for comp in np.unique(component[~known]):
        members = component == comp
        if not (members & known).any():
            first = np.flatnonzero(members)[0]
            colors[first] = fallback
            known[first] = True
    if (~known).any():
        colors = harmonic(vertices, faces, np.flatnonzero(known), colors[known], order=1)
    return colors


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
                           surface: SurfaceView | None = None, shading: Shading | None = None) -> VertexColors:
    """Per-vertex colours of the posed mesh (V, 3) seen by ``camera`` in ``image`` (H, W, 3)
    with foreground ``matte`` (H, W). ``rest_vertices`` (V, 3) define the mirror pairs.
    ``shading`` (``views.shading.Shading``): relight colours copied from mirror partners."""
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
    if shading is not None:
        relit = np.zeros(n, bool)
        relit[faces[relit_faces(face_region, region_names)].ravel()] = True
        relit &= use_mirror
        colors[relit] *= shading.ratio(normals[partner[relit]], normals[relit])
    origin[use_mirror] = MIRRORED

    regions = vertex_regions(faces, face_region, n)
    if "scalp" in region_names:
        _transfer_scalp_front_to_back(rest_vertices, regions == region_names.index("scalp"), colors, origin)
    interior = interior_colours(rest_vertices, faces, regions, region_names, colors, seen)
    for name, rgb in interior.colours.items():
        unset = regions == region_names.index(name)
        if name in interior.photo_shows:
            unset &= origin == FILLED
        colors[unset] = rgb[unset]
        origin[unset] = DEFAULT

    known = origin != FILLED
    colors = _fill_by_region(np.asarray(vertices, dtype=np.float64), faces, face_region, colors, known)
    return VertexColors(colors=np.clip(colors, 0, 1).astype(np.float32), origin=origin)

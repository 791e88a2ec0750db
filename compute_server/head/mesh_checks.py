"""Quality checks for head meshes: self-intersections and folded or degenerate triangles.

Why: the built-in head is generated and then deformed by identity and expression
components; tests must prove that a closed surface stays an embedded surface (no
triangle passes through another) and that deformations do not flip triangles. These
checks are brute-force-with-a-grid and exact enough for meshes of a few thousand faces.
"""

from __future__ import annotations

import numpy as np

from . import mesh_topology as mt


def _candidate_pairs(vertices: np.ndarray, faces: np.ndarray, cell: float) -> np.ndarray:
    """(P, 2) face pairs (i < j) whose bounding boxes overlap, found through a uniform grid."""
    tri = vertices[faces]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    origin = lo.min(axis=0)
    cells_lo = np.floor((lo - origin) / cell).astype(np.int64)
    span = np.floor((hi - origin) / cell).astype(np.int64) - cells_lo + 1
    # every (face, cell) the face's box touches
    max_span = span.max(axis=0)
    offsets = np.stack(np.meshgrid(*[np.arange(m) for m in max_span], indexing="ij"), -1).reshape(-1, 3)
    keys = cells_lo[:, None, :] + offsets[None]
    valid = np.all(offsets[None] < span[:, None, :], axis=2)
    owners = np.broadcast_to(np.arange(len(faces))[:, None], valid.shape)[valid]
    keys = keys[valid]
    dims = keys.max(axis=0) + 1
    flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    order = np.argsort(flat, kind="stable")
    flat, owners = flat[order], owners[order]
    # pair each entry with the following entries of the same cell
    pairs = []
    k = 1
    while k < len(flat):
        same = flat[k:] == flat[:-k]
        if not same.any():
            break
        pairs.append(np.stack([owners[:-k][same], owners[k:][same]], axis=1))
        k += 1
    if not pairs:
        return np.zeros((0, 2), np.int64)
    pairs = np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    overlap = np.all((lo[pairs[:, 0]] <= hi[pairs[:, 1]]) & (lo[pairs[:, 1]] <= hi[pairs[:, 0]]), axis=1)
    return pairs[overlap]


def _segments_hit_triangles(p0: np.ndarray, p1: np.ndarray, tri: np.ndarray, eps: float) -> np.ndarray:
    """Does segment p0->p1 (N, 3) cross triangle tri (N, 3, 3)? (Moeller-Trumbore, strict interior)."""
    d = p1 - p0
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    h = np.cross(d, e2)
    a = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(a) > 1e-18
    f = np.where(ok, 1.0 / np.where(ok, a, 1.0), 0.0)
    s = p0 - tri[:, 0]
    u = f * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    v = f * np.einsum("ij,ij->i", d, q)
    t = f * np.einsum("ij,ij->i", e2, q)
    return ok & (u > eps) & (v > eps) & (u + v < 1 - eps) & (t > eps) & (t < 1 - eps)


def self_intersections(vertices: np.ndarray, faces: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """(K, 2) pairs of faces that share no vertex and cross each other.

    vertices (V, 3), faces (F, 3). A pair is reported when an edge of one triangle passes
    through the interior of the other (touching within ``eps`` barycentric is ignored).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    edge_len = np.linalg.norm(vertices[faces] - np.roll(vertices[faces], 1, axis=1), axis=2)
    pairs = _candidate_pairs(vertices, faces, cell=2.0 * float(np.median(edge_len)))
    if len(pairs) == 0:
        return pairs
    fa, fb = faces[pairs[:, 0]], faces[pairs[:, 1]]
    shares = (fa[:, :, None] == fb[:, None, :]).any(axis=(1, 2))
    pairs, fa, fb = pairs[~shares], fa[~shares], fb[~shares]
    hit = np.zeros(len(pairs), dtype=bool)
    for first, second in ((fa, fb), (fb, fa)):
        tri = vertices[second]
        for k in range(3):
            a, b = vertices[first[:, k]], vertices[first[:, (k + 1) % 3]]
            hit |= _segments_hit_triangles(a, b, tri, eps)
    return pairs[hit]


def flipped_faces(rest_vertices: np.ndarray, deformed_vertices: np.ndarray, faces: np.ndarray,
                  max_angle_rad: float = np.pi / 2) -> np.ndarray:
    """Indices of faces whose normal turned by more than ``max_angle_rad`` under a deformation."""
    n0 = mt.face_normals(rest_vertices, faces)
    n1 = mt.face_normals(deformed_vertices, faces)
    return np.flatnonzero(np.einsum("ij,ij->i", n0, n1) < np.cos(max_angle_rad))

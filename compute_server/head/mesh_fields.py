"""Smooth fields on a mesh: Laplacians and harmonic / biharmonic interpolation.

Why: nearly everything the generator computes on the head is "known here, smooth in
between": the seam between face and cranium, skinning weights (known on the neck base,
the skull, the chin), expression and identity displacements (known at a few landmark
groups, zero far away). Harmonic interpolation (order 1) gives the smoothest field with
prescribed values; biharmonic (order 2) is also smooth across the constrained vertices,
so displacements fade out without a crease.

All functions take vertices (V, 3) in metres and faces (F, 3) and return numpy arrays.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import mesh_topology as mt


def uniform_laplacian(faces: np.ndarray, n_verts: int) -> sp.csr_matrix:
    """Graph Laplacian L = D - A (n_verts, n_verts), positive semi-definite."""
    adjacency = mt.vertex_adjacency(faces, n_verts)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return (sp.diags(degree) - adjacency).tocsr()


def cotangent_laplacian(vertices: np.ndarray, faces: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Cotangent stiffness matrix L (V, V) (positive semi-definite) and lumped vertex areas (V,).

    Cotangent weights are clamped at a small positive value so obtuse triangles cannot
    make the operator indefinite (keeps every solve well posed on generated meshes).
    """
    n = len(vertices)
    tri = vertices[faces]
    weights, rows, cols = [], [], []
    for k in range(3):
        i, j, o = faces[:, (k + 1) % 3], faces[:, (k + 2) % 3], k
        u = tri[:, (k + 1) % 3] - tri[:, o]
        v = tri[:, (k + 2) % 3] - tri[:, o]
        cot = np.einsum("ij,ij->i", u, v) / np.maximum(np.linalg.norm(np.cross(u, v), axis=1), 1e-20)
        w = 0.5 * np.maximum(cot, 1e-3)
        rows += [i, j]
        cols += [j, i]
        weights += [w, w]
    W = sp.coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    L = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    areas = np.zeros(n)
    tri_area = mt.triangle_areas(vertices, faces)
    for k in range(3):
        np.add.at(areas, faces[:, k], tri_area / 3.0)
    return L.tocsr(), np.maximum(areas, 1e-12)


def interpolate(operator: sp.spmatrix, known_index: np.ndarray, known_values: np.ndarray) -> np.ndarray:
    """Solve operator[U, :] x = 0 for the unknown vertices U with x[known] = known_values.

    operator: (V, V) symmetric positive semi-definite (a Laplacian or a bi-Laplacian);
    known_index: (K,) vertex indices; known_values: (K,) or (K, C). Returns x (V,) or (V, C).
    Every connected component must contain a known vertex.
    """
    operator = sp.csr_matrix(operator)
    n = operator.shape[0]
    known_index = np.asarray(known_index, dtype=np.int64)
    values = np.asarray(known_values, dtype=np.float64)
    squeeze = values.ndim == 1
    values = values.reshape(len(known_index), -1)
    is_known = np.zeros(n, dtype=bool)
    is_known[known_index] = True
    unknown = np.flatnonzero(~is_known)
    out = np.zeros((n, values.shape[1]))
    out[known_index] = values
    if len(unknown):
        A = operator[unknown][:, unknown].tocsc()
        b = -operator[unknown][:, known_index] @ values
        solve = spla.factorized(A)
        out[unknown] = np.column_stack([solve(b[:, c]) for c in range(values.shape[1])])
    return out[:, 0] if squeeze else out


def harmonic(vertices: np.ndarray, faces: np.ndarray, known_index, known_values, order: int = 1,
             cotangent: bool = True) -> np.ndarray:
    """Harmonic (order 1) or biharmonic (order 2) interpolation of known vertex values.

    Uses the cotangent Laplacian (with the lumped mass for the bi-Laplacian L M^-1 L) by
    default, the graph Laplacian with ``cotangent=False``. Shapes as in ``interpolate``.
    """
    if cotangent:
        L, mass = cotangent_laplacian(vertices, faces)
    else:
        L, mass = uniform_laplacian(faces, len(vertices)), np.ones(len(vertices))
    operator = L if order == 1 else L @ sp.diags(1.0 / mass) @ L
    return interpolate(operator, known_index, known_values)


def geodesic_like_distance(vertices: np.ndarray, faces: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Shortest edge-path distance (V,) in metres from a set of source vertices (Dijkstra)."""
    from scipy.sparse.csgraph import dijkstra
    edges, _ = mt.undirected_edges(faces)
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    n = len(vertices)
    graph = sp.coo_matrix((np.r_[lengths, lengths], (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                          shape=(n, n)).tocsr()
    return dijkstra(graph, directed=False, indices=np.asarray(sources, dtype=np.int64), min_only=True)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Cubic Hermite step: 0 below edge0, 1 above edge1, C1 in between."""
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)

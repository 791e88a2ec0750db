"""Triangle-mesh topology and basic geometry in numpy: edges, boundary loops, orientation.

Why: the built-in head generator stitches meshes together and must prove the result is a
consistently oriented, closed surface; the FLAME teeth builder finds the mouth opening as
a boundary loop. Both need the same small, well-tested helpers. Faces are (F, 3) integer
arrays; a face (a, b, c) is counter-clockwise seen from the side its normal points to.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def directed_edges(faces: np.ndarray) -> np.ndarray:
    """(F, 3) faces -> (3F, 2) directed half-edges (a->b, b->c, c->a), face-major order."""
    faces = np.asarray(faces)
    return np.stack([faces, np.roll(faces, -1, axis=1)], axis=-1).reshape(-1, 2)


def undirected_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) with a < b, and how many faces use each (E,)."""
    half = np.sort(directed_edges(faces), axis=1)
    edges, counts = np.unique(half, axis=0, return_counts=True)
    return edges, counts


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered vertex loops along the mesh boundary (edges used by exactly one face).

    Each loop follows its faces' half-edges: seen from the side the normals point to, the
    outer rim of a disk runs counter-clockwise and the rim of a hole clockwise. Raises
    ValueError on a non-manifold boundary (a vertex where two boundary loops touch).
    """
    half = directed_edges(faces)
    key = np.sort(half, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    boundary = half[counts[inverse.reshape(-1)] == 1]
    nxt: dict[int, int] = {}
    for a, b in boundary.tolist():
        if a in nxt:
            raise ValueError(f"non-manifold boundary at vertex {a}")
        nxt[a] = b
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            if v not in nxt:
                raise ValueError(f"open boundary chain at vertex {v}")
            v = nxt[v]
        if v != start:
            raise ValueError(f"boundary chain from vertex {start} does not close")
        loops.append(np.array(loop, dtype=np.int64))
    return loops


def vertex_adjacency(faces: np.ndarray, n_verts: int) -> sp.csr_matrix:
    """Symmetric 0/1 vertex adjacency (n_verts, n_verts) of the mesh edges."""
    edges, _ = undirected_edges(faces)
    ones = np.ones(len(edges))
    adj = sp.coo_matrix((np.r_[ones, ones], (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                        shape=(n_verts, n_verts)).tocsr()
    adj.data[:] = 1.0
    return adj


def vertex_components(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """Connected-component label (n_verts,) of every vertex (isolated vertices get their own)."""
    return connected_components(vertex_adjacency(faces, n_verts), directed=False)[1]


def face_normals(vertices: np.ndarray, faces: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(F, 3) face normals (unit, or with length = 2 * area when normalize=False)."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if normalize:
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    return n


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) triangle areas in squared vertex units."""
    return 0.5 * np.linalg.norm(face_normals(vertices, faces, normalize=False), axis=1)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals (zero for unused vertices)."""
    n = face_normals(vertices, faces, normalize=False)
    out = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(out, faces[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-300)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (positive for a closed surface with outward normals)."""
    tri = vertices[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def is_edge_manifold(faces: np.ndarray) -> bool:
    """Every undirected edge is used by one or two faces."""
    _, counts = undirected_edges(faces)
    return bool(np.all(counts <= 2))


def is_consistently_oriented(faces: np.ndarray) -> bool:
    """No directed half-edge appears twice (neighbouring faces traverse shared edges oppositely)."""
    half = directed_edges(faces)
    return len(np.unique(half, axis=0)) == len(half)


def orient_consistently(faces: np.ndarray) -> np.ndarray:
    """Flip faces so every component is consistently oriented (relative to its first face).

    Breadth-first over face adjacency through manifold edges; raises ValueError for a
    non-orientable component (a Moebius-like configuration).
    """
    faces = np.array(faces, dtype=np.int64, copy=True)
    edge_faces: dict[tuple[int, int], list[int]] = defaultdict(list)
    for f, tri in enumerate(faces.tolist()):
        for k in range(3):
            a, b = tri[k], tri[(k + 1) % 3]
            edge_faces[(min(a, b), max(a, b))].append(f)
    visited = np.zeros(len(faces), dtype=bool)
    for seed in range(len(faces)):
        if visited[seed]:
            continue
        visited[seed] = True
        queue = [seed]
        while queue:
            f = queue.pop()
            tri = faces[f].tolist()
            for k in range(3):
                a, b = tri[k], tri[(k + 1) % 3]
                for g in edge_faces[(min(a, b), max(a, b))]:
                    if g == f:
                        continue
                    other = faces[g].tolist()
                    same_direction = any(other[m] == a and other[(m + 1) % 3] == b for m in range(3))
                    if not visited[g]:
                        if same_direction:
                            faces[g] = faces[g][::-1]
                        visited[g] = True
                        queue.append(g)
                    elif same_direction:
                        raise ValueError("mesh is not orientable")
    return faces


def euler_characteristic(faces: np.ndarray, n_verts: int | None = None) -> int:
    """V - E + F over the vertices the faces use (or n_verts when given)."""
    edges, _ = undirected_edges(faces)
    v = len(np.unique(faces)) if n_verts is None else n_verts
    return int(v - len(edges) + len(faces))

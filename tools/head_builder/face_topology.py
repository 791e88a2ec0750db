"""MediaPipe face-mesh triangles, recovered from the tessellation's edge list.

Why: the mediapipe wheel ships the 468-point tessellation only as 2556 directed edges
(``FACEMESH_TESSELATION``), not as triangles. Every face of a triangle mesh is a 3-cycle
of its edge graph, but not every 3-cycle is a face: where a vertex of valence 3 sits
inside a triangle of its neighbours, the four form a 4-clique whose outer 3-cycle is
not a face. We take all 3-cycles, drop each one that has a common neighbour of its three
corners inside it (in a frontal 2-D projection), then check the result is an
edge-manifold, orientable disk with exactly four holes (outer face oval, two eyes,
mouth), orient it consistently and choose the side whose normals face the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compute_server.head import mesh_topology as mt
from .face_source import N_FACE_POINTS


@dataclass(frozen=True)
class FaceTopology:
    """Triangles of the face mesh and its named boundary loops (MediaPipe indices).

    faces (F, 3) counter-clockwise seen from in front of the face (normals towards +Z).
    Loops are ordered along the boundary half-edges: ``oval`` (36, the face outline),
    ``eye_right`` / ``eye_left`` (16 each, the lid rims; subject's right = -X) and
    ``mouth`` (20, the inner lip contour).
    """

    faces: np.ndarray
    oval: np.ndarray
    eye_right: np.ndarray
    eye_left: np.ndarray
    mouth: np.ndarray


def tessellation_edges() -> np.ndarray:
    """(E, 2) unique undirected MediaPipe face-mesh edges, sorted."""
    from mediapipe.python.solutions import face_mesh_connections as fmc
    return np.array(sorted({tuple(sorted(e)) for e in fmc.FACEMESH_TESSELATION}), dtype=np.int64)


def face_oval_indices() -> set[int]:
    from mediapipe.python.solutions import face_mesh_connections as fmc
    return {v for e in fmc.FACEMESH_FACE_OVAL for v in e}


def _point_in_triangle(p: np.ndarray, tri: np.ndarray) -> bool:
    def side(a, b):
        return (p[0] - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (p[1] - b[1])
    d = np.array([side(tri[0], tri[1]), side(tri[1], tri[2]), side(tri[2], tri[0])])
    return bool(np.all(d > 0) or np.all(d < 0))


def triangles_from_edges(edges: np.ndarray, frontal_xy: np.ndarray) -> np.ndarray:
    """3-cycles of the edge graph that are faces, consistently oriented.

    edges: (E, 2) vertex pairs; frontal_xy: (V, 2) positions seen from the front (x right,
    y up), used only to reject the outer triangle of a 4-clique and to pick the side.
    Returns (F, 3) faces whose normals point towards the viewer of ``frontal_xy``.
    """
    n = int(edges.max()) + 1
    neighbours = [set() for _ in range(n)]
    for a, b in edges.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
    cycles = set()
    for a, b in edges.tolist():
        for c in neighbours[a] & neighbours[b]:
            cycles.add(tuple(sorted((a, b, c))))
    faces = []
    for tri in sorted(cycles):
        common = neighbours[tri[0]] & neighbours[tri[1]] & neighbours[tri[2]]
        corners = frontal_xy[list(tri)]
        if any(_point_in_triangle(frontal_xy[v], corners) for v in common):
            continue
        faces.append(tri)
    faces = np.array(faces, dtype=np.int64)
    if not mt.is_edge_manifold(faces):
        raise ValueError("face-mesh triangles are not edge-manifold after removing non-face 3-cycles")
    faces = mt.orient_consistently(faces)
    tri = frontal_xy[faces]
    signed = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.sum(signed > 0) < np.sum(signed < 0):
        faces = faces[:, ::-1].copy()
    return faces


def face_topology(frontal_xy: np.ndarray) -> FaceTopology:
    """The MediaPipe face mesh as a validated FaceTopology.

    frontal_xy: (>= 468, 2) landmark positions seen from the front (x right = subject's
    left, y up); any roughly frontal detection works.
    """
    frontal_xy = np.asarray(frontal_xy, dtype=np.float64)[:N_FACE_POINTS]
    faces = triangles_from_edges(tessellation_edges(), frontal_xy)
    if mt.euler_characteristic(faces, N_FACE_POINTS) != -2:
        raise ValueError("face mesh is not a disk with three holes (eyes and mouth)")
    loops = mt.boundary_loops(faces)
    oval_set = face_oval_indices()
    oval = [loop for loop in loops if set(loop.tolist()) == oval_set]
    inner = [loop for loop in loops if set(loop.tolist()) != oval_set]
    if len(oval) != 1 or len(inner) != 3:
        raise ValueError(f"face mesh boundary has {len(loops)} loops; expected the oval, two eyes and the mouth")
    centres = np.array([frontal_xy[loop].mean(axis=0) for loop in inner])
    mouth_k = int(np.argmin(centres[:, 1]))
    eyes = [k for k in range(3) if k != mouth_k]
    eye_right, eye_left = sorted(eyes, key=lambda k: centres[k, 0])
    return FaceTopology(faces=faces, oval=oval[0], eye_right=inner[eye_right], eye_left=inner[eye_left],
                        mouth=inner[mouth_k])

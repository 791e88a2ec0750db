"""Per-landmark visibility from the face mesh's own geometry.

Why: MediaPipe's face mesh predicts all 478 points even where the face turns away from the
camera or leaves the frame; a fitter that trusts the far cheek's outline at 60 degrees of
yaw pulls the head the wrong way. We rebuild the mesh's triangles from MediaPipe's
tesselation edges (the wheel has no triangle list), orient them consistently once, and
score each landmark by how squarely its surface faces the camera and whether it lies
inside the image. Self-occlusion by the nose is not modelled.
"""

from __future__ import annotations

import collections
import functools
import itertools

import numpy as np

from . import landmark_indices as idx

# A landmark whose surface normal is at this cosine to the viewing ray (or more) counts as
# fully visible; grazing (0) or back-facing surfaces count as hidden.
FULLY_VISIBLE_COS = 0.25


def triangles_from_edges(edges: set[tuple[int, int]]) -> np.ndarray:
    """(F, 3) int32 triangles of a manifold triangulation given as its undirected edges.

    Every 3-clique of the edge graph is a candidate; a clique whose three edges are each
    shared by three candidates is a "separating" triangle (it encloses a vertex) and not a
    face. The rest are wound consistently (neighbours traverse a shared edge in opposite
    directions) by a breadth-first walk; the global sign is arbitrary.
    """
    undirected = {tuple(sorted(e)) for e in edges}
    neighbours: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in undirected:
        neighbours[a].add(b)
        neighbours[b].add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in undirected for c in neighbours[a] & neighbours[b]}
    edge_use = collections.Counter(e for tri in cliques for e in itertools.combinations(tri, 2))
    faces = [tri for tri in cliques if not all(edge_use[e] >= 3 for e in itertools.combinations(tri, 2))]
    by_edge: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for face_index, tri in enumerate(faces):
        for e in itertools.combinations(tri, 2):
            by_edge[e].append(face_index)
    oriented: dict[int, tuple[int, int, int]] = {}
    for seed in range(len(faces)):
        if seed in oriented:
            continue
        oriented[seed] = faces[seed]
        queue = collections.deque([seed])
        while queue:
            current = oriented[queue.popleft()]
            for a, b in ((current[0], current[1]), (current[1], current[2]), (current[2], current[0])):
                for other in by_edge[tuple(sorted((a, b)))]:
                    if other in oriented:
                        continue
                    tri = faces[other]
                    third = next(v for v in tri if v not in (a, b))
                    oriented[other] = (b, a, third)  # traverse the shared edge the other way
                    queue.append(other)
    return np.array([oriented[i] for i in range(len(faces))], dtype=np.int32)


@functools.lru_cache(maxsize=1)
def face_mesh_triangles() -> np.ndarray:
    """(F, 3) int32 triangles over MediaPipe's 468 mesh landmarks (consistently wound)."""
    from .mediapipe_runtime import filtered_native_stderr  # noqa: PLC0415

    with filtered_native_stderr():
        from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION  # noqa: PLC0415
    return triangles_from_edges(set(FACEMESH_TESSELATION))


def vertex_facing(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Cosine between each vertex normal and the direction towards the camera.

    points: (V, 3) with x right, y down, z away from the camera (orthographic view along
    +z). triangles: (F, 3) consistently wound. The winding's sign is fixed so the mesh's
    total normal faces the camera, which holds for any face a detector can see.
    Returns (V,) float64 in [-1, 1]; vertices without triangles get 1.
    """
    points = np.asarray(points, dtype=np.float64)
    a, b, c = (points[triangles[:, k]] for k in range(3))
    face_normals = np.cross(b - a, c - a)  # length = 2 * area: area weighting
    if face_normals[:, 2].sum() > 0:  # make the total normal point towards the camera (-z)
        face_normals = -face_normals
    vertex_normals = np.zeros_like(points)
    for k in range(3):
        np.add.at(vertex_normals, triangles[:, k], face_normals)
    lengths = np.linalg.norm(vertex_normals, axis=1)
    facing = np.ones(len(points))
    has = lengths > 1e-12
    facing[has] = -vertex_normals[has, 2] / lengths[has]
    return facing


def landmark_visibility(landmarks: np.ndarray, image_size: tuple[int, int],
                        valid: np.ndarray | None = None) -> np.ndarray:
    """(478,) float32 in [0, 1]: 1 = facing the camera and inside the image.

    landmarks: (478, 3) pixels (x, y, MediaPipe depth). image_size: (width, height).
    valid: optional (H, W) float mask of real (non-padding) pixels. Iris points take the
    visibility of their eye's contour.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    triangles = face_mesh_triangles()
    facing = vertex_facing(points[: idx.N_MESH_LANDMARKS], triangles)
    score = np.ones(len(points))
    score[: idx.N_MESH_LANDMARKS] = np.clip(facing / FULLY_VISIBLE_COS, 0.0, 1.0)
    if len(points) > idx.N_MESH_LANDMARKS:
        score[list(idx.LEFT_IRIS)] = score[list(idx.LEFT_EYE)].mean()
        score[list(idx.RIGHT_IRIS)] = score[list(idx.RIGHT_EYE)].mean()
    width, height = image_size
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if valid is not None:
        cols = np.clip(x.astype(np.int64), 0, width - 1)
        rows = np.clip(y.astype(np.int64), 0, height - 1)
        inside &= np.asarray(valid)[rows, cols] > 0.5
    return (score * inside).astype(np.float32)

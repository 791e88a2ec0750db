"""Close the face into a full head: a star-shaped surface around the face's outline.

Why this construction: seen from one centre inside the head, the face outline is a simple
closed curve on the sphere of directions. We sample well-spread directions outside it,
add the outline's own directions, and triangulate on the sphere (the convex hull of unit
vectors is a spherical Delaunay triangulation); dropping the hull triangles inside the
outline leaves a mesh whose only boundary is exactly the face outline, so cranium and face
share those vertices. Each direction gets the radius at which the ray leaves the head
volume (``head_volume.py``); near the outline the radius is corrected by a biharmonic
field so the surface meets the face with matching position and slope. The result is a
radial graph: no triangle can fold over or cross another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull

from compute_server.head import mesh_topology as mt
from compute_server.head import mesh_fields
from .head_volume import HeadVolume, ray_exit_distance


@dataclass(frozen=True)
class ClosureSettings:
    n_directions: int = 4200
    outline_margin: float = 0.55      # keep samples this many outline spacings away from it
    seam_band_rad: float = 0.42       # radius correction fades out over this angle
    centre_below_eyes_m: float = 0.030
    centre_behind_eyes_m: float = 0.070


@dataclass(frozen=True)
class Closure:
    """vertices (N, 3) of the new (non-face) vertices; faces (G, 3) index the combined
    array [face points (468), closure vertices]; part (G,) nearest head-volume primitive
    (0 cranium, 1 jaw, 2 neck, 3 ear, 4 neck base cap); centre (3,) the ray origin."""

    vertices: np.ndarray
    faces: np.ndarray
    part: np.ndarray
    centre: np.ndarray


def fibonacci_directions(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere (golden-angle spiral), deterministic."""
    k = np.arange(n) + 0.5
    y = 1.0 - 2.0 * k / n
    r = np.sqrt(1.0 - y * y)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], axis=1)


def _stereographic(d: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Project unit vectors (N, 3) from the pole -axis onto the plane through the origin."""
    axis = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 1.0, 0.0]) if abs(axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(helper, axis)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    denom = 1.0 + d @ axis
    return np.stack([d @ u, d @ v], axis=1) / denom[:, None]


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which 2-D points (N, 2) are inside the closed polygon (M, 2)."""
    inside = np.zeros(len(points), dtype=bool)
    x, y = points[:, 0], points[:, 1]
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (a[1] > y) != (b[1] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
        inside ^= crosses & (x < x_at)
    return inside


def _distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Euclidean distance (N,) from points (N, k) to a closed polyline (M, k)."""
    best = np.full(len(points), np.inf)
    for a, b in zip(polyline, np.roll(polyline, -1, axis=0)):
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(ab @ ab, 1e-30), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def triangulate_outside(outline_dirs: np.ndarray, n_directions: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample directions outside a closed outline on the sphere and triangulate them with it.

    outline_dirs: (M, 3) unit vectors, in loop order. Returns (sample_dirs (N, 3), faces
    (G, 3)) where indices < M refer to the outline and M + i to sample i; faces are
    counter-clockwise seen from outside the sphere; the only boundary is the outline.
    """
    axis = outline_dirs.mean(axis=0)
    axis /= np.linalg.norm(axis)
    samples = fibonacci_directions(n_directions)
    plane_outline = _stereographic(outline_dirs, axis)
    inside = _inside_polygon(_stereographic(samples, axis), plane_outline)
    spacing = np.mean(np.linalg.norm(outline_dirs - np.roll(outline_dirs, -1, axis=0), axis=1))
    near = _distance_to_polyline(samples, outline_dirs) < margin * spacing
    samples = samples[~inside & ~near & (samples @ axis > -1.0 + 1e-9)]
    dirs = np.concatenate([outline_dirs, samples])
    faces = ConvexHull(dirs).simplices.astype(np.int64)
    tri = dirs[faces]
    outward = np.einsum("ij,ij->i", np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), tri.sum(axis=1)) > 0
    faces = np.where(outward[:, None], faces, faces[:, ::-1])
    m = len(outline_dirs)
    all_outline = np.all(faces < m, axis=1)
    centroid = dirs[faces].mean(axis=1)
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
    in_hole = all_outline & _inside_polygon(_stereographic(centroid, axis), plane_outline)
    return samples, faces[~in_hole]


def build_closure(face_points: np.ndarray, face_faces: np.ndarray, oval: np.ndarray, volume: HeadVolume,
                  settings: ClosureSettings = ClosureSettings()) -> Closure:
    """Close the face with the head volume.

    face_points: (478, 3) prepared face in head space (468 mesh points + 10 iris points);
    face_faces: (852, 3) face triangles; oval: the face outline loop.
    """
    s = settings
    eyes = face_points[[468, 473]].mean(axis=0)
    centre = np.array([0.0, eyes[1] - s.centre_below_eyes_m, eyes[2] - s.centre_behind_eyes_m])
    face = face_points[:468]
    outline_dirs = face[oval] - centre
    outline_dirs /= np.linalg.norm(outline_dirs, axis=1, keepdims=True)
    sample_dirs, local_faces = triangulate_outside(outline_dirs, s.n_directions, s.outline_margin)

    # map local indices (outline first, then samples) to the combined [face, closure] numbering
    n_face = len(face)
    local_to_global = np.r_[oval, n_face + np.arange(len(sample_dirs))]
    faces = local_to_global[local_faces]
    loops = mt.boundary_loops(faces)
    if len(loops) != 1 or set(loops[0].tolist()) != set(oval.tolist()):
        raise ValueError("the closure's boundary is not exactly the face outline")

    radius = ray_exit_distance(volume, centre, sample_dirs)
    # seam: radius corrections known on the face (its actual radius minus the volume's)
    # and zero beyond the band; biharmonic in between over face + closure connectivity
    face_dirs = face - centre
    face_radius = np.linalg.norm(face_dirs, axis=1)
    face_dirs /= face_radius[:, None]
    correction_face = face_radius - ray_exit_distance(volume, centre, face_dirs)
    angle_to_outline = np.arccos(np.clip(sample_dirs @ outline_dirs.T, -1, 1)).min(axis=1)
    n_total = n_face + len(sample_dirs)
    all_faces = np.concatenate([face_faces, faces])
    known = np.r_[np.arange(n_face), n_face + np.flatnonzero(angle_to_outline >= s.seam_band_rad)]
    values = np.r_[correction_face, np.zeros(len(known) - n_face)]
    correction = mesh_fields.interpolate(_bilaplacian(all_faces, n_total), known, values)
    vertices = centre + sample_dirs * (radius + correction[n_face:])[:, None]

    centroids = np.concatenate([face, vertices])[faces].mean(axis=1)
    part = volume.nearest_part(centroids)
    on_cap = centroids[:, 1] < volume.neck.y_base + 0.5 * volume.neck.edge_radius
    part[on_cap] = 4
    return Closure(vertices=vertices, faces=faces, part=part, centre=centre)


def _bilaplacian(faces: np.ndarray, n: int):
    L = mesh_fields.uniform_laplacian(faces, n)
    return L @ L

"""Eyeballs, eye sockets and the iris landmarks of the built-in head.

Why this shape: the face mesh has open lid rims. Each eyeball is a sphere centred behind
its iris; the lid rims are laid onto a sphere slightly larger than the eyeball (lids
glide on the eye), and a socket continues from the rims around the back of the eyeball,
so the head's skin stays a closed surface and an eye can rotate in its socket without
ever cutting through skin. The eyeball is a latitude/longitude sphere whose pole faces
forward, with a ring at the iris radius; MediaPipe's iris centre and four iris-boundary
points (468-477) are vertices of it, so the landmark embedding is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compute_server.head import mesh_fields

IRIS_RIGHT = (468, 469, 470, 471, 472)  # centre, then 4 boundary points (subject's right eye)
IRIS_LEFT = (473, 474, 475, 476, 477)


@dataclass(frozen=True)
class EyeSettings:
    eyeball_radius_m: float = 0.0120
    cornea_ahead_of_iris_m: float = 0.0010   # the iris landmark sits just behind the sphere's front
    lid_clearance_m: float = 0.0007          # lid rims rest this far outside the eyeball
    socket_clearance_m: float = 0.0035       # the socket surface behind the eyeball
    n_azimuth: int = 24                      # multiple of 4 so the iris points are vertices
    n_rings: int = 10
    socket_rings: int = 6
    lid_influence_m: float = 0.022


@dataclass(frozen=True)
class Eyeball:
    """One eyeball mesh: vertices (N, 3), faces (G, 3) outward, is_iris (G,) per face,
    centre (3,), landmark_vertex: {MediaPipe index: local vertex index} for 468-477."""

    vertices: np.ndarray
    faces: np.ndarray
    is_iris: np.ndarray
    centre: np.ndarray
    landmark_vertex: dict


def eyeball_centres(points: np.ndarray, settings: EyeSettings = EyeSettings()) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) eyeball centres (3,) behind the iris centre landmarks (gaze +Z)."""
    back = settings.eyeball_radius_m - settings.cornea_ahead_of_iris_m
    return points[IRIS_RIGHT[0]] - [0, 0, back], points[IRIS_LEFT[0]] - [0, 0, back]


def build_eyeball(points: np.ndarray, iris: tuple, centre: np.ndarray, settings: EyeSettings = EyeSettings()) -> Eyeball:
    """Latitude/longitude sphere around ``centre`` with MediaPipe's iris points as vertices."""
    s = settings
    r = s.eyeball_radius_m
    boundary = points[list(iris[1:])] - points[iris[0]]
    iris_radius = float(np.mean(np.linalg.norm(boundary[:, :2], axis=1)))
    theta_iris = np.arcsin(min(iris_radius / r, 0.9))
    thetas = np.r_[0.5 * theta_iris, theta_iris, np.linspace(theta_iris, np.pi, s.n_rings - 1)[1:-1]]
    phis = 2 * np.pi * np.arange(s.n_azimuth) / s.n_azimuth
    ring = lambda t: np.stack([np.sin(t) * np.cos(phis), np.sin(t) * np.sin(phis), np.full_like(phis, np.cos(t))], 1)  # noqa: E731
    unit = np.concatenate([[[0.0, 0.0, 1.0]], *[ring(t) for t in thetas], [[0.0, 0.0, -1.0]]])
    vertices = centre + r * unit
    n_az, n_ring = s.n_azimuth, len(thetas)
    faces = [[0, 1 + j, 1 + (j + 1) % n_az] for j in range(n_az)]
    for k in range(n_ring - 1):
        a, b = 1 + k * n_az, 1 + (k + 1) * n_az
        for j in range(n_az):
            j1 = (j + 1) % n_az
            faces += [[a + j, b + j, b + j1], [a + j, b + j1, a + j1]]
    back = len(unit) - 1
    last = 1 + (n_ring - 1) * n_az
    faces += [[last + j, back, last + (j + 1) % n_az] for j in range(n_az)]
    faces = np.array(faces, dtype=np.int64)
    normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    if np.einsum("ij,ij->i", normals, vertices[faces].mean(1) - centre).mean() < 0:
        faces = faces[:, ::-1].copy()
    is_iris = np.zeros(len(faces), dtype=bool)
    is_iris[: n_az * 3] = True  # the pole fan and the ring band up to the iris boundary
    landmark_vertex = {iris[0]: 0}
    iris_ring = 1 + n_az  # second ring = iris boundary
    for mp_index, offset in zip(iris[1:], boundary):
        phi = np.arctan2(offset[1], offset[0]) % (2 * np.pi)
        landmark_vertex[mp_index] = iris_ring + int(np.round(phi / (2 * np.pi / n_az))) % n_az
    return Eyeball(vertices, faces, is_iris, centre, landmark_vertex)


def lids_onto_eyeballs(points: np.ndarray, faces: np.ndarray, rims: tuple[np.ndarray, np.ndarray],
                       centres: tuple[np.ndarray, np.ndarray], fixed: np.ndarray,
                       settings: EyeSettings = EyeSettings()) -> np.ndarray:
    """Move the lid rims radially onto the lid sphere and the lid skin smoothly with them.

    points (468, 3) face points; faces the face triangles; rims the two lid-rim loops;
    centres the eyeball centres; fixed vertices that must not move (the face outline).
    Returns the new points.
    """
    lid_radius = settings.eyeball_radius_m + settings.lid_clearance_m
    targets = {}
    for rim, centre in zip(rims, centres):
        for v in rim:
            d = points[v] - centre
            targets[int(v)] = centre + d / np.linalg.norm(d) * lid_radius - points[v]
    far = np.min([np.linalg.norm(points - c, axis=1) for c in centres], axis=0) > settings.lid_influence_m
    zero = (set(np.flatnonzero(far).tolist()) | set(np.asarray(fixed).tolist())) - set(targets)
    known = np.array(sorted(targets) + sorted(zero))
    values = np.array([targets[v] for v in sorted(targets)] + [np.zeros(3)] * len(zero))
    return points + mesh_fields.harmonic(points, faces, known, values, order=2)


def build_socket(points: np.ndarray, rim: np.ndarray, centre: np.ndarray, first_index: int,
                 settings: EyeSettings = EyeSettings()) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Socket behind one eye: rings from the lid rim around the back of the eyeball to a pole.

    rim: lid-rim loop (face indices, in boundary order); first_index: the index the first
    new vertex will have. Returns (new vertices (K, 3), faces (G, 3), rim_vertex (K,) the
    rim vertex each new vertex continues (-1 for the pole), depth (K,) in (0, 1] from the
    rim to the pole). Faces use face indices for the rim and ``first_index + k`` for new
    vertices; orientation is fixed by the caller.
    """
    s = settings
    radius = s.eyeball_radius_m + s.socket_clearance_m
    lid_radius = s.eyeball_radius_m + s.lid_clearance_m
    back = np.array([0.0, 0.0, -1.0])
    rim_dirs = points[rim] - centre
    rim_dirs /= np.linalg.norm(rim_dirs, axis=1, keepdims=True)
    rings, ring_ids, vertices = [np.asarray(rim)], [], []
    rim_vertex, depth = [], []
    next_id = first_index
    for k in range(1, s.socket_rings + 1):
        t = k / (s.socket_rings + 1)
        ring = []
        for d in rim_dirs:
            omega = np.arccos(np.clip(d @ back, -1, 1))
            mixed = (np.sin((1 - t) * omega) * d + np.sin(t * omega) * back) / np.sin(omega)
            ring_radius = lid_radius + (radius - lid_radius) * min(1.0, 3.0 * t) ** 2
            vertices.append(centre + ring_radius * mixed / np.linalg.norm(mixed))
            rim_vertex.append(int(rim[len(ring)]))
            depth.append(t)
            ring.append(next_id)
            next_id += 1
        rings.append(np.array(ring))
        ring_ids.append(ring)
    vertices.append(centre + radius * back)
    pole = next_id
    faces = []
    n = len(rim)
    # each quad is split along the diagonal from the lid-side vertex of the column nearer
    # an eye corner to the socket-side vertex of the other column: when a lid rim vertex
    # swings towards a corner that stays, its triangles turn with it instead of folding
    lateral = np.abs(points[rim, 0] - centre[0])
    for a, b in zip(rings[:-1], rings[1:]):
        for j in range(n):
            j1 = (j + 1) % n
            if lateral[j1] >= lateral[j]:
                faces += [[a[j], b[j], a[j1]], [a[j1], b[j], b[j1]]]
            else:
                faces += [[a[j], b[j], b[j1]], [a[j], b[j1], a[j1]]]
    last = rings[-1]
    faces += [[last[j], pole, last[(j + 1) % n]] for j in range(n)]
    rim_vertex.append(-1)
    depth.append(1.0)
    return np.array(vertices), np.array(faces, dtype=np.int64), np.array(rim_vertex), np.array(depth)

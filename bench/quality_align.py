"""Geometry of the ground-truth benchmark: where to cut the scan's neck, its landmarks, and
the similarity that best lays the avatar's fitted mesh onto the scan (pure numpy/scipy).

The scan (LeePerrySmith.glb, CC-BY 3.0, Lee Perry-Smith / ir-ltd.net) is a head and
shoulders in the glTF's Y-up axes, face towards +Z -- head space's axes, in scan units
(about 8.5 wide). The avatar is a head on a cut neck, so the ground truth is cut too: at
the base of the neck, found from the scan's own horizontal cross-sections (see
``neck_cut_height``), and everything below that plane is deleted before rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.quality_cameras import Similarity

SLICE_FRACTION = 0.02        # cross-section thickness, fraction of the scan's height
SHOULDER_FLARE = 1.3         # the neck ends where the cross-section is this much wider than its narrowest


@dataclass(frozen=True)
class ScanGeometry:
    """What the benchmark needs to know about the scan (scan space, scan units).

    vertices: (V, 3), faces: (F, 3) int; neck_cut_y: the cut plane is y = neck_cut_y (the
    head is y >= neck_cut_y); head_centre: (3,) bounding-box centre of the head above the
    cut; nose_tip: (3,) the front-most vertex (max z) above the cut.
    """

    vertices: np.ndarray
    faces: np.ndarray
    neck_cut_y: float
    head_centre: np.ndarray
    nose_tip: np.ndarray

    @property
    def head_vertices(self) -> np.ndarray:
        return self.vertices[self.vertices[:, 1] >= self.neck_cut_y]

    @property
    def head_faces(self) -> np.ndarray:
        """(F', 3) the faces entirely above the cut."""
        keep = self.vertices[:, 1] >= self.neck_cut_y
        return self.faces[keep[self.faces].all(axis=1)]


def load_scan(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float64 vertices in the glTF's axes and (F, 3) int64 faces of a mesh file."""
    import trimesh

    mesh = trimesh.load(str(path), force="mesh", process=False)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def cross_section_widths(vertices: np.ndarray, n_slices: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-right extent (x) of horizontal slices of the mesh.

    vertices: (V, 3) Y-up. Returns slice centres (n,) and widths (n,), NaN for empty slices.
    """
    y = vertices[:, 1]
    edges = np.linspace(y.min(), y.max(), n_slices + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    index = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, n_slices - 1)
    widths = np.full(n_slices, np.nan)
    for i in range(n_slices):
        x = vertices[index == i, 0]
        if x.size:
            widths[i] = x.max() - x.min()
    return centres, widths


def neck_cut_height(vertices: np.ndarray) -> float:
    """Height (y) of the base of the neck of a head-and-shoulders scan (V, 3), Y-up.

    The neck is the narrowest cross-section in the lower half of the scan; going down from
    it, the neck ends (and the shoulders begin) at the first slice wider than
    SHOULDER_FLARE times that narrowest width. The cut is at the top of that slice.
    ValueError if the scan has no such narrowing (not a head-and-shoulders scan).
    """
    n = int(round(1.0 / SLICE_FRACTION))
    centres, widths = cross_section_widths(vertices, n)
    half = (centres[0] + centres[-1]) / 2
    lower = np.flatnonzero((centres < half) & np.isfinite(widths))
    if lower.size == 0:
        raise ValueError("scan has no vertices in its lower half")
    neck = lower[np.argmin(widths[lower])]
    step = centres[1] - centres[0]
    for i in range(neck - 1, -1, -1):
        if np.isfinite(widths[i]) and widths[i] > SHOULDER_FLARE * widths[neck]:
            return float(centres[i] + step / 2)
    raise ValueError("the scan does not widen below its narrowest point: no shoulders to cut off")


def scan_geometry(path: Path) -> ScanGeometry:
    vertices, faces = load_scan(path)
    cut = neck_cut_height(vertices)
    head = vertices[vertices[:, 1] >= cut]
    centre = 0.5 * (head.min(axis=0) + head.max(axis=0))
    return ScanGeometry(vertices, faces, cut, centre, head[np.argmax(head[:, 2])].copy())


def surface_samples(vertices: np.ndarray, faces: np.ndarray, count: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points spread uniformly by area over the triangles (V, 3) / (F, 3), and the unit
    normals of the triangles they lie on: -> (count, 3), (count, 3)."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    chosen = rng.choice(len(faces), size=count, p=area / area.sum())
    bary = rng.dirichlet(np.ones(3), size=count)
    normals = cross[chosen] / np.maximum(2 * area[chosen, None], 1e-300)
    return np.einsum("nk,nkc->nc", bary, tri[chosen]), normals


# ----------------------------------------------------------------------------- alignment

def umeyama(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity with target ~ s R source + t (Umeyama 1991).

    source, target: (N, 3) corresponding points; weights: (N,) >= 0 or None.
    """
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    xs, xt = source - mu_s, target - mu_t
    cov = (xt * w[:, None]).T @ xs
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = float(w @ (xs ** 2).sum(axis=1))
    scale = float((sig * d).sum() / var_s)
    return Similarity(scale, rot, mu_t - scale * rot @ mu_s)


def initial_alignment(avatar_points: np.ndarray, scan_points: np.ndarray, avatar_to_scan_rotation: np.ndarray,
                      avatar_landmark: np.ndarray, scan_landmark: np.ndarray) -> Similarity:
    """A starting similarity avatar -> scan for ICP: the given rotation (e.g. from the two
    input cameras), the scale from the ear-to-ear widths (1st..99th percentile of x of the
    rotated points; both are heads with ears), and the translation that lays the landmark
    (3,) (e.g. the nose tip) onto the scan's."""
    rotated = avatar_points @ np.asarray(avatar_to_scan_rotation).T
    width_avatar = np.subtract(*np.percentile(rotated[:, 0], [99, 1]))
    width_scan = np.subtract(*np.percentile(scan_points[:, 0], [99, 1]))
    scale = float(width_scan / width_avatar)
    rot = np.asarray(avatar_to_scan_rotation, dtype=np.float64)
    return Similarity(scale, rot, np.asarray(scan_landmark) - scale * rot @ np.asarray(avatar_landmark))


def _small_similarity(scale_step: float, rotation_vector: np.ndarray, translation_step: np.ndarray,
                      centre: np.ndarray) -> Similarity:
    """x -> (1 + ds) R(w) (x - c) + c + dt, the update of one Gauss-Newton step."""
    from shared.rotations import axis_angle_to_matrix

    rot = axis_angle_to_matrix(rotation_vector)
    s = 1.0 + scale_step
    return Similarity(s, rot, centre + translation_step - s * rot @ centre)


@dataclass(frozen=True)
class Alignment:
    """avatar_to_scan: the fitted similarity; rms_scan_units: RMS point-to-surface distance
    of the kept pairs after alignment (scan units); kept_fraction: share of the avatar
    points used; iterations: ICP iterations run."""

    avatar_to_scan: Similarity
    rms_scan_units: float
    kept_fraction: float
    iterations: int


def align_icp(avatar_points: np.ndarray, scan_points: np.ndarray, scan_normals: np.ndarray,
              initial_avatar_to_scan: Similarity, *, iterations: int = 60, keep_fraction: float = 0.8,
              tolerance: float = 1e-6) -> Alignment:
    """Trimmed point-to-plane ICP with a similarity: avatar mesh points (N, 3) onto a dense
    sample of the scan surface (M, 3) with its unit normals (M, 3).

    Each round pairs every transformed avatar point with its nearest scan sample, keeps
    the ``keep_fraction`` closest pairs (parts the other surface lacks -- the avatar's
    longer neck, eyeballs behind lids -- fall out) and takes one Gauss-Newton step on the
    point-to-plane distances (scale, rotation, translation: 7 unknowns, linearized about
    the kept points' centroid). Point-to-plane converges in a few rounds where
    point-to-point ICP crawls along smooth surfaces.
    """
    from scipy.spatial import cKDTree

    tree = cKDTree(scan_points)
    current = initial_avatar_to_scan
    kept, done = 3, 0
    for done in range(1, iterations + 1):
        moved = current.apply(avatar_points)
        _, idx = tree.query(moved)
        kept = max(7, int(keep_fraction * len(moved)))
        order = np.argsort(np.linalg.norm(moved - scan_points[idx], axis=1))[:kept]
        x, q, n = moved[order], scan_points[idx[order]], scan_normals[idx[order]]
        centre = x.mean(axis=0)
        d = x - centre
        jac = np.c_[np.einsum("ij,ij->i", n, d), np.cross(d, n), n]          # (K, 7): scale, rotation, translation
        residual = np.einsum("ij,ij->i", n, x - q)
        step, *_ = np.linalg.lstsq(jac, -residual, rcond=None)
        current = current.then(_small_similarity(step[0], step[1:4], step[4:], centre))
        size = np.sqrt((d ** 2).sum(axis=1).mean())
        if abs(step[0]) + np.linalg.norm(step[1:4]) + np.linalg.norm(step[4:]) / size < tolerance:
            break
    moved = current.apply(avatar_points)
    _, idx = tree.query(moved)
    plane = np.abs(np.einsum("ij,ij->i", scan_normals[idx], moved - scan_points[idx]))
    point = np.linalg.norm(moved - scan_points[idx], axis=1)
    kept_plane = plane[np.argsort(point)[:kept]]
    return Alignment(current, float(np.sqrt(np.mean(kept_plane ** 2))), kept / len(avatar_points), done)

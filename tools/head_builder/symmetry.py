"""Left/right symmetry of the face: mirror correspondences, the symmetry plane, symmetrising.

Why: a head model's neutral face should be symmetric (identity and expression asymmetry
come from the components), and the expression generator needs to know each point's
mirror partner to build left/right pairs. MediaPipe's topology is symmetric by design,
but the wheel does not list the pairs, so we compute them: mirror the points across the
current symmetry plane and solve the optimal one-to-one assignment to the unmirrored
points (a symmetric cost, so the result is a permutation that we verify is an involution;
midline points map to themselves). The plane is re-estimated from the pairs (the
improper isometry ``p -> R M p + t`` that best maps each point to its partner is a
reflection; its -1 eigenvector is the plane normal) until the pairing stops changing.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

MIRROR_X = np.diag([-1.0, 1.0, 1.0])


def mirror_pairs(points: np.ndarray) -> np.ndarray:
    """Partner index (N,) of every point (N, 3) under reflection x -> -x.

    The optimal assignment between the mirrored and the original points; the cost is
    symmetric so the permutation is (and is checked to be) an involution.
    """
    cost = cdist(points @ MIRROR_X, points, "sqeuclidean")
    _, partner = linear_sum_assignment(cost)
    if not np.array_equal(partner[partner], np.arange(len(points))):
        raise ValueError("mirror correspondence is not an involution")
    return partner


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (3, 3) taking unit vector a to unit vector b."""
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    if s < 1e-15:
        return np.eye(3)
    k = axis / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def _fit_reflection(points: np.ndarray, partner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plane (unit normal with +x sign, point on it) of the reflection best mapping p -> p[partner]."""
    mirrored = points @ MIRROR_X
    target = points[partner]
    ca, cb = mirrored.mean(0), target.mean(0)
    u, _, vt = np.linalg.svd((mirrored - ca).T @ (target - cb))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
    rotation = vt.T @ d @ u.T
    linear = rotation @ MIRROR_X
    values, vectors = np.linalg.eig(linear)
    normal = np.real(vectors[:, int(np.argmin(np.abs(values + 1.0)))])
    normal /= np.linalg.norm(normal)
    if normal[0] < 0:
        normal = -normal
    translation = cb - rotation @ ca
    mapped = points @ linear.T + translation
    return normal, 0.5 * (points + mapped).mean(0)


def align_symmetry_plane(points: np.ndarray, max_iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Rotate/translate points (N, 3) so their symmetry plane is x = 0.

    The input must already be roughly in head axes (x across the face). Returns the
    aligned points and the mirror partner of each point.
    """
    aligned = np.asarray(points, dtype=np.float64).copy()
    partner = mirror_pairs(aligned)
    for _ in range(max_iterations):
        normal, on_plane = _fit_reflection(aligned, partner)
        aligned = (aligned - on_plane) @ _rotation_between(normal, np.array([1.0, 0.0, 0.0])).T
        new_partner = mirror_pairs(aligned)
        converged = np.array_equal(new_partner, partner) and abs(normal[0] - 1.0) < 1e-12
        partner = new_partner
        if converged:
            break
    return aligned, partner


def symmetrize(points: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """Average each point with its partner's mirror image; midline points get x = 0 exactly."""
    sym = 0.5 * (points + points[partner] @ MIRROR_X)
    sym[partner == np.arange(len(points)), 0] = 0.0
    return sym

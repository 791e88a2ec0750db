"""Upper and lower teeth rows as closed slabs swept along a dental arch.

Why: an opened jaw must show teeth, not the inside of the head. Like GaussianAvatars we
add simple geometry behind the lips (upper row rigid with the skull, lower row with the
jaw); ours is a watertight slab per row so normals are well defined for rendering and
Gaussian binding. Both the built-in head and FLAME (``flame_teeth.py``) use this builder;
they differ only in where the arch comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import mesh_topology as mt


@dataclass(frozen=True)
class TeethSettings:
    height_m: float = 0.0095          # visible crown height of each row
    thickness_m: float = 0.0065       # front-to-back thickness of each row
    gap_m: float = 0.0008             # vertical gap between the rows' edges at rest
    lower_setback_m: float = 0.0015   # lower incisors sit behind the upper ones


@dataclass(frozen=True)
class TeethGeometry:
    """vertices (T, 3); faces (G, 3) indexing them, outward normals; is_lower (T,) bool;
    column (T,) int, which arch sample each vertex was made from."""

    vertices: np.ndarray
    faces: np.ndarray
    is_lower: np.ndarray
    column: np.ndarray


def _inward_normals_xz(arch: np.ndarray) -> np.ndarray:
    """Unit normals (N, 3) in the horizontal plane pointing to the inside of the arch (towards -Z)."""
    tangent = np.gradient(arch, axis=0)
    normal = np.stack([tangent[:, 2], np.zeros(len(arch)), -tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    return normal


def _slab(front_edge: np.ndarray, up: float, height: float, thickness: float, inward: np.ndarray) -> tuple:
    """One closed row: cross-section (root front, edge front, edge back, root back) swept along the arch."""
    n = len(front_edge)
    lift = np.array([0.0, up * height, 0.0])
    rings = [front_edge + lift, front_edge, front_edge + thickness * inward, front_edge + thickness * inward + lift]
    vertices = np.concatenate(rings)  # index = ring * n + column
    faces = []
    for side in range(4):
        a, b = side * n, ((side + 1) % 4) * n
        for i in range(n - 1):
            faces += [[a + i, b + i, b + i + 1], [a + i, b + i + 1, a + i + 1]]
    for col in (0, n - 1):
        cap = [r * n + col for r in range(4)]
        faces += [[cap[0], cap[1], cap[2]], [cap[0], cap[2], cap[3]]]
    faces = mt.orient_consistently(np.array(faces, dtype=np.int64))
    if mt.signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    column = np.tile(np.arange(n), 4)
    return vertices, faces, column


def build_teeth(arch: np.ndarray, settings: TeethSettings = TeethSettings()) -> TeethGeometry:
    """Teeth rows along an arch.

    arch: (N, 3) points of the front surface of the teeth at the biting (occlusal) level,
    ordered from the subject's right (-X) to the left (+X), N >= 3, head space metres.
    Upper row rises from arch + gap/2, lower row hangs from arch - gap/2 set back by
    ``lower_setback``.
    """
    arch = np.asarray(arch, dtype=np.float64)
    if arch.ndim != 2 or arch.shape[1] != 3 or len(arch) < 3:
        raise ValueError(f"teeth arch must be (N >= 3, 3), got {arch.shape}")
    inward = _inward_normals_xz(arch)
    half_gap = np.array([0.0, 0.5 * settings.gap_m, 0.0])
    s = settings
    upper_v, upper_f, upper_c = _slab(arch + half_gap, +1.0, s.height_m, s.thickness_m, inward)
    lower_edge = arch - half_gap + s.lower_setback_m * inward
    lower_v, lower_f, lower_c = _slab(lower_edge, -1.0, s.height_m, s.thickness_m, inward)
    vertices = np.concatenate([upper_v, lower_v])
    faces = np.concatenate([upper_f, lower_f + len(upper_v)])
    is_lower = np.r_[np.zeros(len(upper_v), bool), np.ones(len(lower_v), bool)]
    return TeethGeometry(vertices, faces, is_lower, np.r_[upper_c, lower_c])


def arch_from_lip_line(lip_line: np.ndarray, n_columns: int, depth_m: float, narrowing: float = 0.9) -> np.ndarray:
    """A dental arch behind a lip line.

    lip_line: (M, 3) points along the line where the lips meet (any order); returns (n_columns,
    3) arch points: the lip line's x range narrowed by ``narrowing``, its height made level
    (mean y), its depth profile followed and pushed ``depth_m`` further back (-Z).
    """
    lip_line = lip_line[np.argsort(lip_line[:, 0], kind="stable")]
    x = np.linspace(lip_line[0, 0], lip_line[-1, 0], n_columns) * narrowing
    z = np.interp(x / narrowing, lip_line[:, 0], lip_line[:, 2]) - depth_m
    y = np.full(n_columns, lip_line[:, 1].mean())
    return np.stack([x, y, z], axis=1)

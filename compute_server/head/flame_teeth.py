"""Teeth for real FLAME, as GaussianAvatars adds them (upper rigid with the skull, lower with the jaw).

How the lip rings are chosen (we cannot ship or look at FLAME here, so nothing is a
hard-coded FLAME vertex list): FLAME's head mesh (5023 vertices) is open at the neck, at
the two eyes and at the mouth. The mouth opening is the boundary loop that is neither the
lowest loop (the neck) nor off the midline (the eyes): the loop whose centre is closest to
the symmetry plane among the remaining loops, and it must be 2-9 cm wide. Its two
extreme-x vertices are the mouth corners; the path between them with the higher mean y is
the upper inner lip, the other the lower. The arch of the teeth follows the line where the
lips meet, a few millimetres behind it (``teeth.arch_from_lip_line``).

Each teeth vertex copies the shape blend shapes of the nearest upper and lower lip-ring
vertices (their mean, as GaussianAvatars does), has no expression or pose blend shapes,
no weight in the joint regressor, and is skinned 100 % to the neck joint (upper row,
which moves with the skull) or the jaw joint (lower row). Any other topology is refused
with a FlameFileError that names the vertex count.
"""

from __future__ import annotations

import numpy as np

from . import mesh_topology as mt
from .flame_pickle import FLAME_VERTEX_COUNT, FlameFileError
from .model_data import HeadModelData
from .teeth import TeethSettings, arch_from_lip_line, build_teeth

NECK_JOINT, JAW_JOINT = 1, 2
TEETH_COLUMNS = 15
TEETH_DEPTH_M = 0.004


def mouth_loop(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The boundary loop of the mouth opening (vertex indices in loop order)."""
    try:
        loops = mt.boundary_loops(faces)
    except ValueError as exc:
        raise FlameFileError(f"its mesh boundary is not manifold ({exc})") from exc
    if len(loops) < 2:
        raise FlameFileError("its mesh has no mouth opening to put teeth behind")
    centres = np.array([vertices[loop].mean(axis=0) for loop in loops])
    neck = int(np.argmin(centres[:, 1]))
    candidates = [k for k in range(len(loops)) if k != neck]
    k = min(candidates, key=lambda c: abs(centres[c, 0]))
    loop = loops[k]
    width = np.ptp(vertices[loop, 0])
    if not (0.02 <= width <= 0.09) or abs(centres[k, 0]) > 0.01:
        raise FlameFileError("no boundary loop of its mesh looks like the mouth opening")
    return loop


def _split(vertices: np.ndarray, loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    loop = list(loop)
    right, left = loop[int(np.argmin(vertices[loop, 0]))], loop[int(np.argmax(vertices[loop, 0]))]
    i, j = loop.index(right), loop.index(left)
    first = [loop[(i + k) % len(loop)] for k in range((j - i) % len(loop) + 1)]
    second = [loop[(j + k) % len(loop)] for k in range((i - j) % len(loop) + 1)]
    if vertices[first, 1].mean() >= vertices[second, 1].mean():
        return np.array(first), np.array(second)
    return np.array(second), np.array(first)


def add_flame_teeth(data: HeadModelData, settings: TeethSettings = TeethSettings()) -> HeadModelData:
    """A new HeadModelData with teeth rows appended (vertices, faces, region 'teeth')."""
    if data.n_verts != FLAME_VERTEX_COUNT:
        raise FlameFileError(f"teeth can only be added to the FLAME topology ({FLAME_VERTEX_COUNT} vertices); "
                             f"this mesh has {data.n_verts}")
    v = data.v_template
    upper, lower = _split(v, mouth_loop(v, data.faces))
    arch = arch_from_lip_line(np.concatenate([v[upper], v[lower]]), TEETH_COLUMNS, TEETH_DEPTH_M)
    teeth = build_teeth(arch, settings)

    # shape blend shapes: mean of the nearest upper and lower lip-ring vertices of each column
    anchor_up = upper[np.argmin(np.abs(v[upper, 0][None] - arch[:, 0][:, None]), axis=1)]
    anchor_lo = lower[np.argmin(np.abs(v[lower, 0][None] - arch[:, 0][:, None]), axis=1)]
    column_dirs = 0.5 * (data.shapedirs[anchor_up] + data.shapedirs[anchor_lo])  # (C, 3, S)
    n_new = len(teeth.vertices)
    weights = np.zeros((n_new, data.lbs_weights.shape[1]))
    weights[~teeth.is_lower, NECK_JOINT] = 1.0
    weights[teeth.is_lower, JAW_JOINT] = 1.0
    region_names = list(data.region_names)
    if "teeth" not in region_names:
        region_names.append("teeth")
    posedirs = data.posedirs.reshape(data.n_verts, 3, -1)
    return HeadModelData(
        name=data.name,
        v_template=np.concatenate([v, teeth.vertices]),
        shapedirs=np.concatenate([data.shapedirs, column_dirs[teeth.column]]),
        exprdirs=np.concatenate([data.exprdirs, np.zeros((n_new, 3, data.n_expr))]),
        posedirs=np.concatenate([posedirs, np.zeros((n_new, 3, posedirs.shape[2]))]).reshape(-1, posedirs.shape[2]),
        J_regressor=np.concatenate([data.J_regressor, np.zeros((data.J_regressor.shape[0], n_new))], axis=1),
        parents=data.parents,
        lbs_weights=np.concatenate([data.lbs_weights, weights]),
        faces=np.concatenate([data.faces, teeth.faces + data.n_verts]),
        face_region=np.concatenate([data.face_region, np.full(len(teeth.faces), region_names.index("teeth"))]),
        region_names=region_names,
        expression_names=data.expression_names,
        shape_names=data.shape_names,
        lmk_face_idx=data.lmk_face_idx,
        lmk_bary=data.lmk_bary,
        landmark_mp_index=data.landmark_mp_index,
        source_path=data.source_path,
        source_sha256=data.source_sha256,
        notes=data.notes + [f"teeth added: {n_new} vertices, {len(teeth.faces)} faces"],
    )

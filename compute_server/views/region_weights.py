"""How much each vertex of a mesh region follows a move fitted to that region.

Why: the outline fits (``hair_shell`` for the scalp, ``neck_fit`` for the neck) reshape
one region of the head and must leave the others exactly where the fit put them, with no
crease where they meet: full weight inside the region, none on any vertex another region
shares, a smooth ramp in between.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def region_weights(vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                   names, fade_m: float) -> np.ndarray:
    """(V,) in [0, 1]: 1 on vertices only the regions ``names`` use, 0 on every vertex of
    another region, a smoothstep over ``fade_m`` (straight-line distance to the nearest vertex
    of another region) in between."""
    ids = [region_names.index(n) for n in names if n in region_names]
    inside = np.isin(face_region, ids)
    in_region = np.zeros(len(vertices), bool)
    in_region[faces[inside].reshape(-1)] = True
    other = np.zeros(len(vertices), bool)
    other[faces[~inside].reshape(-1)] = True
    only = in_region & ~other
    weights = np.zeros(len(vertices))
    if not only.any() or not other.any():
        return weights
    distance, _ = cKDTree(vertices[other]).query(vertices[only])
    t = np.clip(distance / fade_m, 0.0, 1.0)
    weights[only] = t * t * (3.0 - 2.0 * t)
    return weights

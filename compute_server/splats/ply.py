"""Standard 3DGS PLY files (the layout of the reference implementation, read by 3DGS
viewers and by Blender's PLY import, which keeps every vertex property as an attribute).

Columns come from ``shared.splat_format.world_splats_to_ply_columns``; plyfile writes them
exactly (binary little-endian float32 vertex properties, no faces).
"""

from __future__ import annotations

import io

import numpy as np
from plyfile import PlyData, PlyElement

from shared.splat_format import WorldSplats, ply_property_names, world_splats_to_ply_columns


def ply_bytes(world: WorldSplats) -> bytes:
    """Posed splats -> the bytes of a binary 3DGS PLY."""
    columns = world_splats_to_ply_columns(world)
    degree = int(round(np.sqrt(world.sh_rest.shape[1] + 1))) - 1
    names = ply_property_names(degree)
    vertex = np.empty(world.means.shape[0], dtype=[(name, "<f4") for name in names])
    for name in names:
        vertex[name] = columns[name]
    buf = io.BytesIO()
    PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<").write(buf)
    return buf.getvalue()


def read_ply_columns(data: bytes) -> dict[str, np.ndarray]:
    """A PLY's vertex properties by name (for tests and importers)."""
    ply = PlyData.read(io.BytesIO(data))
    vertex = ply["vertex"].data
    return {name: np.asarray(vertex[name]) for name in vertex.dtype.names}

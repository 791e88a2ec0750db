"""Our 3DGS PLY export reads back in Blender's own PLY importer with every attribute
(the importer keeps unknown vertex properties as point attributes)."""

from __future__ import annotations

import numpy as np
import pytest

from compute_server.splats.ply import ply_bytes, read_ply_columns
from shared.splat_format import WorldSplats, ply_property_names

pytest.importorskip("bpy")


def _world(n=300, degree=3, seed=0) -> WorldSplats:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return WorldSplats(means=(rng.normal(size=(n, 3)) * 0.1).astype(np.float32), quats=q.astype(np.float32),
                       scales=(np.abs(rng.normal(size=(n, 3))) * 0.003 + 1e-4).astype(np.float32),
                       opacities=rng.uniform(0.05, 0.95, n).astype(np.float32),
                       sh_dc=rng.normal(size=(n, 3)).astype(np.float32),
                       sh_rest=(rng.normal(size=(n, (degree + 1) ** 2 - 1, 3)) * 0.1).astype(np.float32))


def test_blender_ply_import_keeps_every_3dgs_attribute(tmp_path):
    import bpy

    world = _world()
    path = tmp_path / "avatar.ply"
    path.write_bytes(ply_bytes(world))
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.wm.ply_import(filepath=str(path)) == {"FINISHED"}
    obj = bpy.context.selected_objects[0]
    mesh = obj.data
    assert len(mesh.vertices) == 300 and len(mesh.polygons) == 0
    columns = read_ply_columns(path.read_bytes())
    positions = np.empty(300 * 3, np.float32)
    mesh.vertices.foreach_get("co", positions)
    np.testing.assert_allclose(positions.reshape(-1, 3), np.stack([columns[c] for c in "xyz"], 1), atol=1e-6)
    names = set(mesh.attributes.keys())
    expected = set(ply_property_names(3)) - {"x", "y", "z", "nx", "ny", "nz"}
    assert expected <= names, sorted(expected - names)
    values = np.empty(300, np.float32)
    mesh.attributes["opacity"].data.foreach_get("value", values)
    np.testing.assert_allclose(values, columns["opacity"], rtol=1e-6)
    mesh.attributes["f_rest_44"].data.foreach_get("value", values)
    np.testing.assert_allclose(values, world.sh_rest[:, 14, 2], rtol=1e-6)

"""The splat object: a mesh of N points carrying every 3DGS field as a point attribute,
posed by the geometry-nodes tree from the evaluated head mesh (no per-point Python)."""

from __future__ import annotations

import bpy
import numpy as np

from . import gaussian_material, geometry_nodes, materials
from .splat_layout import SplatPoints, default_density

_VALUE_KEY = {"FLOAT": "value", "INT": "value", "QUATERNION": "value", "FLOAT_VECTOR": "vector",
              "FLOAT_COLOR": "color", "FLOAT4X4": "value"}


def points_mesh(name: str, points: SplatPoints):
    """A mesh with one vertex per splat (no edges or faces) and all attributes set."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(points.count)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(points.positions, dtype=np.float32).ravel())
    for attr_name, (data_type, values) in points.attributes.items():
        attribute = mesh.attributes.new(attr_name, data_type, "POINT")
        dtype = np.int32 if data_type == "INT" else np.float32
        attribute.data.foreach_set(_VALUE_KEY[data_type], np.ascontiguousarray(values, dtype=dtype).ravel())
    mesh.update()
    return mesh


def build_splat_object(name: str, points: SplatPoints, collection, parent, head_object, *,
                       density: float | None = None, sh_degree: int = 0, gaussians: bool = True):
    """The splat object, parented to the rig root (identity offset: armature space) and
    posed from ``head_object``. ``density`` defaults to ``default_density`` (a lighter
    level of detail for big avatars); ``gaussians`` False starts with the point preview."""
    obj = bpy.data.objects.new(name, points_mesh(name, points))
    collection.objects.link(obj)
    obj.parent = parent
    obj.hide_render = True  # final frames come from the server (Render Shot's EEVEE mode shows it)
    obj.visible_shadow = False  # emissive splats: stochastic shadows of every Gaussian cost EEVEE most
    material = materials.ensure_splat_material()
    gaussian = gaussian_material.ensure_gaussian_material()
    obj.data.materials.append(material)
    obj.data.materials.append(gaussian)
    density = default_density(points.count) if density is None else density
    geometry_nodes.add_pose_modifier(obj, head_object, density=density, material=material,
                                     gaussian_material=gaussian, sh_degree=sh_degree, gaussians=gaussians)
    obj["headsplat_role"] = "splats"
    return obj

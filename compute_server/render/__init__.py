"""Mesh rasterization: normal maps, masks, depth and face ids of the posed head mesh."""

from .attributes import interpolate
from .mesh_raster import MeshRaster, rasterize_mesh
from .normal_maps import normal_map_to_rgb, render_normal_map, vertex_normals

__all__ = ["MeshRaster", "interpolate", "normal_map_to_rgb", "rasterize_mesh", "render_normal_map",
           "vertex_normals"]

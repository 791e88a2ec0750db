"""The splat preview's material: each point shows its splat's colour (SH degree 0).

Emission rather than a lit BSDF because splat colours are baked radiance: the preview
then looks like the server's renders in Material Preview and EEVEE (with the Standard
view transform). Opacity mixes towards transparent. One material per .blend file.
"""

from __future__ import annotations

import bpy

from . import splat_layout as layout

MATERIAL_NAME = "HeadSplat Splats v1"


def _attribute(nodes, name: str, x: float, y: float):
    node = nodes.new("ShaderNodeAttribute")
    node.attribute_type = "GEOMETRY"
    node.attribute_name = name
    node.location = (x, y)
    return node


def ensure_splat_material():
    """The file's splat material, built on first use."""
    material = bpy.data.materials.get(MATERIAL_NAME)
    if material is not None:
        return material
    material = bpy.data.materials.new(MATERIAL_NAME)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True  # 5.0+ materials always use nodes
    material.diffuse_color = (0.8, 0.62, 0.52, 1.0)  # skin-like in Solid mode
    tree = material.node_tree
    nodes = tree.nodes
    nodes.clear()
    color = _attribute(nodes, layout.ATTR_COLOR, -600, 100)
    alpha = _attribute(nodes, layout.ATTR_ALPHA, -600, -150)
    emission = nodes.new("ShaderNodeEmission")
    emission.location = (-300, 100)
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    transparent.location = (-300, -100)
    mix = nodes.new("ShaderNodeMixShader")
    mix.location = (-50, 0)
    output = nodes.new("ShaderNodeOutputMaterial")
    output.location = (200, 0)
    tree.links.new(color.outputs["Color"], emission.inputs["Color"])
    tree.links.new(alpha.outputs["Fac"], mix.inputs["Fac"])
    tree.links.new(transparent.outputs[0], mix.inputs[1])
    tree.links.new(emission.outputs[0], mix.inputs[2])
    tree.links.new(mix.outputs[0], output.inputs["Surface"])
    if hasattr(material, "surface_render_method"):
        material.surface_render_method = "DITHERED"
    return material

"""The geometry-nodes tree that poses the splat preview from the evaluated head mesh.

It implements ``shared.splat_format.pose_splats`` (GaussianAvatars' triangle frames) as
fields, so the preview follows shape keys, bones, drivers and NLA like any other mesh:

    p0, p1, p2 = positions of the bound triangle's corners (evaluated head mesh)
    t = unit(p1 - p0), n = unit((p1 - p0) x (p2 - p0)), b = n x t
    k = (|p1 - p0| + |(p1 - p0) x (p2 - p0)| / |p1 - p0|) / 2
    position = (p0 + p1 + p2) / 3 + k (t mx + b my + n mz)       (m = hs_mean_local)
    radius   = k * hs_radius_local * Point Size      (splat_layout.preview_radius)
    rotation = [t b n] * hs_quat_local,  scale = k * exp(hs_log_scale_local)   (optional)

Two ways to draw the posed splats (the Gaussians input):

- Gaussians on (the default): true splats, one box per Gaussian with the Gaussian
  material (gaussian_nodes.py, gaussian_material.py), what EEVEE renders;
- Gaussians off: the fast point preview, one sphere of ``radius`` per splat with the
  emissive point material, for heavy scenes.

Inputs: the head mesh object, Density (level of detail: splats with ``hs_lod`` below it
are kept), Point Size and Material (point preview), Orientation (also store the posed
rotation and scale as ``hs_rotation`` / ``hs_scale`` on the points), Gaussians, Gaussian Material, SH Degree (the avatar's, set at import) and Pixel
Angle (1 / focal length in pixels of the scene camera, for the server's eps2d blur).
One tree per .blend file, shared by every avatar (``ensure_pose_tree``).
"""

from __future__ import annotations

import bpy

from . import gaussian_nodes, splat_layout as layout

TREE_NAME = "HeadSplat Pose Splats v3"  # v1 (points only) and v2 (hs_axis_*) stay in older files

INPUT_HEAD = "Head Mesh"
INPUT_DENSITY = "Density"
INPUT_POINT_SIZE = "Point Size"
INPUT_MATERIAL = "Material"
INPUT_ORIENTATION = "Orientation"
INPUT_GAUSSIANS = "Gaussians"
INPUT_GAUSSIAN_MATERIAL = "Gaussian Material"
INPUT_SH_DEGREE = "SH Degree"
INPUT_PIXEL_ANGLE = "Pixel Angle"
# 3DGS fields stored on the splat mesh for other tools, unused by the preview.
PREVIEW_UNUSED_ATTRIBUTES = ("f_*", "scale_*", "rot_*", "opacity")


class _Builder:
    """Small helpers so the tree reads like the maths above."""

    def __init__(self, tree):
        self.tree = tree
        self.x = 0

    def node(self, kind: str, **props):
        node = self.tree.nodes.new(kind)
        for key, value in props.items():
            setattr(node, key, value)
        node.location = (self.x, 0)
        self.x += 60
        return node

    def link(self, output, node, input_key) -> None:
        self.tree.links.new(output, node.inputs[input_key])

    def attribute(self, name: str, data_type: str):
        node = self.node("GeometryNodeInputNamedAttribute", data_type=data_type)
        node.inputs["Name"].default_value = name
        return node.outputs["Attribute"]

    def vmath(self, operation: str, a, b=None, c=None, *, scale=None):
        node = self.node("ShaderNodeVectorMath", operation=operation)
        self._feed(node.inputs[0], a)
        if b is not None:
            self._feed(node.inputs[1], b)
        if c is not None:  # MULTIPLY_ADD's addend
            self._feed(node.inputs[2], c)
        if scale is not None:
            self._feed(node.inputs["Scale"], scale)
        key = "Value" if operation in ("LENGTH", "DOT_PRODUCT", "DISTANCE") else "Vector"
        return node.outputs[key]

    def math(self, operation: str, a, b=None):
        node = self.node("ShaderNodeMath", operation=operation)
        self._feed(node.inputs[0], a)
        if b is not None:
            self._feed(node.inputs[1], b)
        return node.outputs[0]

    def remove_attributes(self, geometry, pattern: str):
        """Remove Named Attribute with a wildcard (Blender 4.2+); -> the output geometry."""
        node = self.node("GeometryNodeRemoveAttribute")
        if "Pattern Mode" in node.inputs:  # 5.0: a menu socket
            node.inputs["Pattern Mode"].default_value = "Wildcard"
        elif hasattr(node, "pattern_mode"):
            node.pattern_mode = "WILDCARD"
        elif "*" in pattern:  # no wildcards in this Blender: keep the attributes
            self.tree.nodes.remove(node)
            return geometry
        node.inputs["Name"].default_value = pattern
        self.link(geometry, node, "Geometry")
        return node.outputs["Geometry"]

    def _feed(self, socket, value) -> None:
        if hasattr(value, "links") or hasattr(value, "is_output"):
            self.tree.links.new(value, socket)
        else:
            socket.default_value = value


def _interface(tree) -> None:
    sockets = tree.interface
    sockets.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    sockets.new_socket(INPUT_HEAD, in_out="INPUT", socket_type="NodeSocketObject")
    density = sockets.new_socket(INPUT_DENSITY, in_out="INPUT", socket_type="NodeSocketFloat")
    density.default_value, density.min_value, density.max_value = 1.0, 0.0, 1.0
    density.subtype = "FACTOR"
    size = sockets.new_socket(INPUT_POINT_SIZE, in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value, size.max_value = 1.0, 0.0, 10.0
    sockets.new_socket(INPUT_MATERIAL, in_out="INPUT", socket_type="NodeSocketMaterial")
    orientation = sockets.new_socket(INPUT_ORIENTATION, in_out="INPUT", socket_type="NodeSocketBool")
    orientation.default_value = False
    gaussians = sockets.new_socket(INPUT_GAUSSIANS, in_out="INPUT", socket_type="NodeSocketBool")
    gaussians.default_value = True
    sockets.new_socket(INPUT_GAUSSIAN_MATERIAL, in_out="INPUT", socket_type="NodeSocketMaterial")
    degree = sockets.new_socket(INPUT_SH_DEGREE, in_out="INPUT", socket_type="NodeSocketInt")
    degree.default_value, degree.min_value, degree.max_value = 0, 0, 3
    angle = sockets.new_socket(INPUT_PIXEL_ANGLE, in_out="INPUT", socket_type="NodeSocketFloat")
    angle.default_value, angle.min_value = 0.0, 0.0
    sockets.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")


def _corner_positions(b: _Builder, head_geometry):
    """-> (p0, p1, p2) fields: the evaluated positions of each point's triangle corners."""
    corners = []
    for name in layout.ATTR_CORNERS:
        sample = b.node("GeometryNodeSampleIndex", data_type="FLOAT_VECTOR", domain="POINT")
        b.link(head_geometry, sample, "Geometry")
        b.link(b.node("GeometryNodeInputPosition").outputs[0], sample, "Value")
        b.link(b.attribute(name, "INT"), sample, "Index")
        corners.append(sample.outputs[0])
    return tuple(corners)


def _triangle_frames(b: _Builder, head_geometry):
    """-> (centroid, t, bitangent, n, k) fields of each point's bound triangle."""
    p0, p1, p2 = _corner_positions(b, head_geometry)
    e0 = b.vmath("SUBTRACT", p1, p0)
    e1 = b.vmath("SUBTRACT", p2, p0)
    cross = b.vmath("CROSS_PRODUCT", e0, e1)
    len0 = b.vmath("LENGTH", e0)
    double_area = b.vmath("LENGTH", cross)
    tangent = b.vmath("NORMALIZE", e0)
    normal = b.vmath("NORMALIZE", cross)
    bitangent = b.vmath("CROSS_PRODUCT", normal, tangent)
    centroid = b.vmath("SCALE", b.vmath("ADD", b.vmath("ADD", p0, p1), p2), scale=1.0 / 3.0)
    height = b.math("DIVIDE", double_area, b.math("MAXIMUM", len0, 1e-12))
    k = b.math("MULTIPLY", b.math("ADD", len0, height), 0.5)
    return centroid, tangent, bitangent, normal, k


def _posed_means(b: _Builder, frames):
    centroid, tangent, bitangent, normal, k = frames
    separate = b.node("ShaderNodeSeparateXYZ")
    b.link(b.attribute(layout.ATTR_MEAN_LOCAL, "FLOAT_VECTOR"), separate, "Vector")
    along_t = b.vmath("SCALE", tangent, scale=separate.outputs["X"])
    along_b = b.vmath("SCALE", bitangent, scale=separate.outputs["Y"])
    along_n = b.vmath("SCALE", normal, scale=separate.outputs["Z"])
    local = b.vmath("ADD", b.vmath("ADD", along_t, along_b), along_n)
    return b.vmath("ADD", centroid, b.vmath("SCALE", local, scale=k))


def _store_orientation(b: _Builder, geometry, frames):
    """Store hs_rotation (frame rotation times the local quaternion) and hs_scale."""
    _, tangent, _, normal, k = frames
    frame_rotation = b.node("FunctionNodeAxesToRotation", primary_axis="Z", secondary_axis="X")
    b.link(normal, frame_rotation, "Primary Axis")
    b.link(tangent, frame_rotation, "Secondary Axis")
    rotate = b.node("FunctionNodeRotateRotation", rotation_space="LOCAL")
    b.link(frame_rotation.outputs[0], rotate, "Rotation")
    b.link(b.attribute(layout.ATTR_QUAT_LOCAL, "QUATERNION"), rotate, "Rotate By")
    store_rot = b.node("GeometryNodeStoreNamedAttribute", data_type="QUATERNION", domain="POINT")
    store_rot.inputs["Name"].default_value = layout.ATTR_POSED_ROTATION
    b.link(geometry, store_rot, "Geometry")
    b.link(rotate.outputs[0], store_rot, "Value")
    log_scale = b.node("ShaderNodeSeparateXYZ")
    b.link(b.attribute(layout.ATTR_LOG_SCALE_LOCAL, "FLOAT_VECTOR"), log_scale, "Vector")
    scale_local = b.node("ShaderNodeCombineXYZ")
    for axis in "XYZ":
        b.link(b.math("EXPONENT", log_scale.outputs[axis]), scale_local, axis)
    store_scale = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT_VECTOR", domain="POINT")
    store_scale.inputs["Name"].default_value = layout.ATTR_POSED_SCALE
    b.link(store_rot.outputs[0], store_scale, "Geometry")
    b.link(b.vmath("SCALE", scale_local.outputs[0], scale=k), store_scale, "Value")
    return store_scale.outputs[0]


def build_pose_tree(name: str = TREE_NAME):
    """A new geometry-nodes group implementing the module docstring's maths."""
    tree = bpy.data.node_groups.new(name, "GeometryNodeTree")
    _interface(tree)
    b = _Builder(tree)
    group_in = b.node("NodeGroupInput")
    group_out = b.node("NodeGroupOutput")

    head = b.node("GeometryNodeObjectInfo", transform_space="RELATIVE")
    b.link(group_in.outputs[INPUT_HEAD], head, "Object")

    # drop the 3DGS fields the preview does not draw, then the level of detail, so every
    # later node works on fewer attributes and points
    geometry = group_in.outputs["Geometry"]
    for pattern in PREVIEW_UNUSED_ATTRIBUTES:
        geometry = b.remove_attributes(geometry, pattern)
    # each way of drawing keeps only the attributes it reads (a lazy switch), so the level
    # of detail's Delete Geometry and the instancing copy no more
    points_only, gaussians_only = geometry, geometry
    for pattern in gaussian_nodes.GAUSSIAN_ONLY_ATTRIBUTES:
        points_only = b.remove_attributes(points_only, pattern)
    for pattern in gaussian_nodes.UNUSED_BY_GAUSSIANS:
        gaussians_only = b.remove_attributes(gaussians_only, pattern)
    choose = b.node("GeometryNodeSwitch", input_type="GEOMETRY")
    b.link(group_in.outputs[INPUT_GAUSSIANS], choose, "Switch")
    b.link(points_only, choose, "False")
    b.link(gaussians_only, choose, "True")
    keep = b.math("LESS_THAN", b.attribute(layout.ATTR_LOD, "FLOAT"), group_in.outputs[INPUT_DENSITY])
    delete = b.node("GeometryNodeDeleteGeometry", domain="POINT", mode="ALL")
    b.link(choose.outputs[0], delete, "Geometry")
    b.link(b.math("SUBTRACT", 1.0, keep), delete, "Selection")

    frames = _triangle_frames(b, head.outputs["Geometry"])
    set_position = b.node("GeometryNodeSetPosition")
    b.link(delete.outputs[0], set_position, "Geometry")
    b.link(_posed_means(b, frames), set_position, "Position")

    oriented = _store_orientation(b, set_position.outputs[0], frames)
    switch = b.node("GeometryNodeSwitch", input_type="GEOMETRY")
    b.link(group_in.outputs[INPUT_ORIENTATION], switch, "Switch")
    b.link(set_position.outputs[0], switch, "False")
    b.link(oriented, switch, "True")

    radius = b.math("MULTIPLY", b.math("MULTIPLY", frames[4], b.attribute(layout.ATTR_RADIUS_LOCAL, "FLOAT")),
                    group_in.outputs[INPUT_POINT_SIZE])
    to_points = b.node("GeometryNodeMeshToPoints", mode="VERTICES")
    b.link(switch.outputs[0], to_points, "Mesh")
    b.link(radius, to_points, "Radius")
    set_material = b.node("GeometryNodeSetMaterial")
    b.link(to_points.outputs[0], set_material, "Geometry")
    b.link(group_in.outputs[INPUT_MATERIAL], set_material, "Material")

    instances = gaussian_nodes.gaussian_instances(
        b, delete.outputs[0], head.outputs["Geometry"],
        pixel_angle=group_in.outputs[INPUT_PIXEL_ANGLE],
        sh_degree=group_in.outputs[INPUT_SH_DEGREE], material=group_in.outputs[INPUT_GAUSSIAN_MATERIAL])
    drawn = b.node("GeometryNodeSwitch", input_type="GEOMETRY")
    b.link(group_in.outputs[INPUT_GAUSSIANS], drawn, "Switch")
    b.link(set_material.outputs[0], drawn, "False")
    b.link(instances, drawn, "True")
    b.link(drawn.outputs[0], group_out, "Geometry")
    return tree


def ensure_pose_tree():
    """The file's posing tree, built on first use."""
    tree = bpy.data.node_groups.get(TREE_NAME)
    if tree is None or tree.bl_idname != "GeometryNodeTree":
        tree = build_pose_tree()
    return tree


def input_identifier(tree, name: str) -> str:
    """The modifier key of the tree's input called ``name``."""
    for item in tree.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == name:
            return item.identifier
    raise KeyError(f"the HeadSplat pose tree has no input {name!r}")


def add_pose_modifier(splat_object, head_object, *, density: float, material, point_size: float | None = None,
                      gaussian_material=None, sh_degree: int = 0, gaussians: bool = True):
    """Put the posing tree on ``splat_object`` (a point mesh made by splats.py)."""
    tree = ensure_pose_tree()
    modifier = splat_object.modifiers.new("HeadSplat Pose", "NODES")
    modifier.node_group = tree
    modifier[input_identifier(tree, INPUT_HEAD)] = head_object
    modifier[input_identifier(tree, INPUT_DENSITY)] = float(density)
    modifier[input_identifier(tree, INPUT_MATERIAL)] = material
    if point_size is not None:
        modifier[input_identifier(tree, INPUT_POINT_SIZE)] = float(point_size)
    modifier[input_identifier(tree, INPUT_GAUSSIANS)] = bool(gaussians)
    modifier[input_identifier(tree, INPUT_SH_DEGREE)] = int(sh_degree)
    if gaussian_material is not None:
        modifier[input_identifier(tree, INPUT_GAUSSIAN_MATERIAL)] = gaussian_material
    return modifier


def set_input(splat_object, name: str, value) -> None:
    """Set the posing modifier's input ``name`` on ``splat_object`` and re-evaluate it."""
    modifier = pose_modifier(splat_object)
    modifier[input_identifier(modifier.node_group, name)] = value
    splat_object.update_tag()


def pose_modifier(splat_object):
    """The splat object's HeadSplat posing modifier (the first geometry-nodes one)."""
    for modifier in splat_object.modifiers:
        if modifier.type == "NODES" and modifier.node_group is not None:
            return modifier
    raise ValueError(f"'{splat_object.name}' has no HeadSplat posing modifier; re-import the avatar")

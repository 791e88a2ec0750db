"""Composite the server's splat frames over Blender's own render, so F12 / Ctrl+F12 give
the final shot.

For each avatar layer: an Image node playing the frame sequence, over the Render Layers
image with Alpha Over, or with Z Combine when the layer has depth (splats then hide
behind nearer scene objects and vice versa). The nodes are named ``HeadSplat ...`` and
rebuilt on every call; a compositor the user already has keeps its nodes: ours are
inserted between Render Layers' Image output and whatever it fed.

Blender 5.0 keeps the compositor in a node group (``scene.compositing_node_group``, with
a Group Output); 4.2-4.5 in ``scene.node_tree`` (with a Composite node).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy

TREE_NAME = "HeadSplat Compositing"
NODE_PREFIX = "HeadSplat"


@dataclass(frozen=True)
class FrameLayer:
    """One avatar's frames: ``first_path`` is the file of scene frame ``first_frame``;
    ``depth_first_path`` the first depth EXR, or "" without depth."""

    name: str
    first_path: str
    first_frame: int
    n_frames: int
    depth_first_path: str = ""


def _compositor_tree(scene):
    """The scene's compositor tree, created when there is none; -> (tree, output socket)."""
    if hasattr(scene, "compositing_node_group"):  # Blender 5.0+
        tree = scene.compositing_node_group
        if tree is None:
            tree = bpy.data.node_groups.new(TREE_NAME, "CompositorNodeTree")
            scene.compositing_node_group = tree
        if not any(item.in_out == "OUTPUT" for item in tree.interface.items_tree if item.item_type == "SOCKET"):
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        output = next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"), None)
        if output is None:
            output = tree.nodes.new("NodeGroupOutput")
            output.location = (600, 0)
        return tree, output.inputs[0]
    scene.use_nodes = True  # Blender 4.2-4.5
    tree = scene.node_tree
    output = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
    if output is None:
        output = tree.nodes.new("CompositorNodeComposite")
        output.location = (600, 0)
    return tree, output.inputs["Image"]


def _render_layers(tree, scene):
    node = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None)
    if node is None:
        node = tree.nodes.new("CompositorNodeRLayers")
        node.location = (-400, 0)
    node.scene = scene
    return node


def _remove_ours(tree) -> list:
    """Remove our nodes; -> the sockets our last node fed (to be fed again)."""
    ours = [n for n in tree.nodes if n.name.startswith(NODE_PREFIX)]
    consumers = []
    for link in list(tree.links):
        if link.from_node in ours and link.to_node not in ours:
            consumers.append(link.to_socket)
    for node in ours:
        tree.nodes.remove(node)
    return consumers


def _image_sequence(tree, name: str, path: str, first_frame: int, n_frames: int, location, *, data: bool = False):
    image = bpy.data.images.load(path, check_existing=True)
    image.source = "SEQUENCE"
    if data:  # depth values, not colours
        image.colorspace_settings.name = "Non-Color"
    image.reload()
    node = tree.nodes.new("CompositorNodeImage")
    node.name = node.label = name
    node.image = image
    node.frame_start = first_frame
    node.frame_duration = n_frames
    node.frame_offset = first_frame - 1  # files are numbered by scene frame
    node.use_auto_refresh = True
    node.location = location
    return node


def _socket(node, *names):
    """The first input called one of ``names`` (an int is an index: Blender 4.x's
    Alpha Over has two inputs called "Image")."""
    for name in names:
        if isinstance(name, int):
            return node.inputs[name]
        if name in node.inputs:
            return node.inputs[name]
    raise KeyError(f"{node.bl_idname} has none of the inputs {names}")


def _layer_nodes(tree, layer: FrameLayer, image_in, depth_in, index: int):
    """Add one layer's nodes over (image_in, depth_in); -> (image_out, depth_out)."""
    x = 150 * (index + 1)
    frames = _image_sequence(tree, f"{NODE_PREFIX} {layer.name} Frames", layer.first_path, layer.first_frame,
                             layer.n_frames, (x, -300))
    if layer.depth_first_path and depth_in is not None:
        depth = _image_sequence(tree, f"{NODE_PREFIX} {layer.name} Depth", layer.depth_first_path,
                                layer.first_frame, layer.n_frames, (x, -550), data=True)
        combine = tree.nodes.new("CompositorNodeZcombine")
        combine.name = combine.label = f"{NODE_PREFIX} {layer.name} Z Combine"
        combine.location = (x + 150, 0)
        if "Use Alpha" in combine.inputs:
            combine.inputs["Use Alpha"].default_value = True
        else:
            combine.use_alpha = True
        tree.links.new(image_in, _socket(combine, "A", "Image"))
        tree.links.new(depth_in, _socket(combine, "Depth A", "Z"))
        tree.links.new(frames.outputs["Image"], combine.inputs[2])
        tree.links.new(depth.outputs["Image"], combine.inputs[3])
        return combine.outputs[0], combine.outputs[1]
    over = tree.nodes.new("CompositorNodeAlphaOver")
    over.name = over.label = f"{NODE_PREFIX} {layer.name} Alpha Over"
    over.location = (x + 150, 0)
    tree.links.new(image_in, _socket(over, "Background", 1))
    tree.links.new(frames.outputs["Image"], _socket(over, "Foreground", 2))
    return over.outputs[0], depth_in


def setup_compositor(scene, layers: list[FrameLayer]) -> None:
    """Rebuild our part of the compositor for ``layers`` (see the module docstring)."""
    tree, output_socket = _compositor_tree(scene)
    render_layers = _render_layers(tree, scene)
    consumers = _remove_ours(tree)
    if not consumers:
        consumers = [link.to_socket for link in tree.links if link.from_socket == render_layers.outputs["Image"]]
    if not consumers:
        consumers = [output_socket]
    if any(layer.depth_first_path for layer in layers):
        view_layer = scene.view_layers.get(render_layers.layer) or scene.view_layers[0]
        view_layer.use_pass_z = True  # the Depth output exists only with the Z pass on
    image, depth = render_layers.outputs["Image"], render_layers.outputs.get("Depth")
    for index, layer in enumerate(layers):
        image, depth = _layer_nodes(tree, layer, image, depth, index)
    for socket in consumers:
        tree.links.new(image, socket)
    scene.render.use_compositing = True

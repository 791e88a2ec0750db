"""Render Shot's EEVEE mode: Blender renders the frame range itself (Ctrl+F12) with the
avatars drawn as true splats among the scene's objects; no server after the import.

For the render only (restored afterwards): the engine is EEVEE, the target avatars'
splat objects render (their Gaussians at full density, Pixel Angle from the scene
camera), the other avatars' splats do not, and the HeadSplat layers that Render Shot's
SERVER mode put in the compositor are muted (they would paste server frames over the
EEVEE picture). Frames go where Ctrl+F12 puts them: the scene's output path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy

from .compositor import NODE_PREFIX
from .scene_import import gaussian_view, geometry_nodes as gn

ENGINE = "BLENDER_EEVEE"  # EEVEE's identifier since Blender 4.2 (was BLENDER_EEVEE_NEXT in 4.2-4.5)


def _eevee_engine() -> str:
    items = bpy.types.RenderSettings.bl_rna.properties["engine"].enum_items
    return ENGINE if ENGINE in items else "BLENDER_EEVEE_NEXT"


def _compositor_nodes(scene) -> list:
    tree = getattr(scene, "compositing_node_group", None) or getattr(scene, "node_tree", None)
    return [n for n in tree.nodes if n.name.startswith(NODE_PREFIX)] if tree is not None else []


@dataclass
class EeveeShotSetup:
    """What ``apply`` changed, to put back with ``restore``."""

    scene_name: str
    engine: str = ""
    objects: dict = field(default_factory=dict)  # name -> (hide_render, gaussians, density)
    muted: dict = field(default_factory=dict)  # compositor node name -> mute

    def apply(self, rig_roots) -> None:
        scene = bpy.data.scenes[self.scene_name]
        self.engine = scene.render.engine
        scene.render.engine = _eevee_engine()
        targets = {obj.name for obj in gaussian_view.splat_objects(scene, rig_roots)}
        for obj in gaussian_view.splat_objects(scene):
            modifier = gn.pose_modifier(obj)
            group = modifier.node_group
            self.objects[obj.name] = (obj.hide_render, modifier[gn.input_identifier(group, gn.INPUT_GAUSSIANS)],
                                      modifier[gn.input_identifier(group, gn.INPUT_DENSITY)])
            obj.hide_render = obj.name not in targets
            if obj.name in targets:
                gn.set_input(obj, gn.INPUT_GAUSSIANS, True)
                gn.set_input(obj, gn.INPUT_DENSITY, 1.0)
        gaussian_view.sync_pixel_angle(scene, [scene.objects[name] for name in targets])
        for node in _compositor_nodes(scene):
            self.muted[node.name] = node.mute
            node.mute = True

    def restore(self) -> None:
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None:
            return
        if self.engine:
            scene.render.engine = self.engine
        for name, (hide_render, gaussians, density) in self.objects.items():
            obj = scene.objects.get(name)
            if obj is None:
                continue
            obj.hide_render = hide_render
            gn.set_input(obj, gn.INPUT_GAUSSIANS, bool(gaussians))
            gn.set_input(obj, gn.INPUT_DENSITY, float(density))
        nodes = {n.name: n for n in _compositor_nodes(scene)}
        for name, mute in self.muted.items():
            if name in nodes:
                nodes[name].mute = mute


def frame_paths(scene, frames) -> list[str]:
    """Where Ctrl+F12 writes ``frames`` (the scene's output path, absolute)."""
    return [bpy.path.abspath(scene.render.frame_path(frame=int(f))) for f in frames]


def render_blocking(scene, rig_roots) -> None:
    """Render the frame range now (scripts, background mode); settings restored after."""
    setup = EeveeShotSetup(scene.name)
    try:
        setup.apply(rig_roots)
        bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        setup.restore()


def render_in_ui(scene, rig_roots) -> None:
    """Start Blender's own render job (progress in the render window); the settings are
    restored when it completes or is cancelled."""
    setup = EeveeShotSetup(scene.name)
    try:
        setup.apply(rig_roots)
    except Exception:
        setup.restore()
        raise

    def finished(*_args):
        for handlers in (bpy.app.handlers.render_complete, bpy.app.handlers.render_cancel):
            if finished in handlers:
                handlers.remove(finished)
        setup.restore()

    bpy.app.handlers.render_complete.append(finished)
    bpy.app.handlers.render_cancel.append(finished)
    if bpy.ops.render.render("INVOKE_DEFAULT", animation=True, scene=scene.name) == {"CANCELLED"}:
        finished()

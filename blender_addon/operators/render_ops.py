"""Render the shot on the server, preview the current frame, set up the compositor."""

from __future__ import annotations

import os

import bpy
from bpy.props import EnumProperty, StringProperty

from .. import compositor, connection, eevee_shot, render_flow, shot
from .._shared import curve_sampling
from ..scene_import.rig import PROP_AVATAR_NAME
from .common import conclude, report_failure, should_wait, wait_property


def _start(operator, context, frames, *, preview: bool):
    scene = context.scene
    settings = scene.headsplat
    try:
        connection.require_connected()
        if not connection.server_has("render.frames"):
            raise ValueError("this server cannot render avatars yet (it does not offer render.frames); update the "
                             "server")
        rigs = render_flow.render_targets(scene, operator.target)
        shot_id = render_flow.new_shot_id()
        tickets = [render_flow.start_render(scene, rig, frames, fmt="PNG" if preview else settings.render_format,
                                            depth=settings.use_depth and not preview,
                                            composite=settings.setup_compositor, preview=preview, shot_id=shot_id)
                   for rig in rigs]
    except (ValueError, OSError) as exc:
        return report_failure(operator, str(exc))
    what = f"frame {frames[0]}" if preview else f"{len(frames)} frame(s) of {len(tickets)} avatar(s)"
    return conclude(operator, tickets, started=f"Rendering {what} on the server...")


RENDER_MODES = [
    ("SERVER", "Server", "The server renders the avatars (highest quality, a GPU server) and Blender composites "
                         "them over its own render"),
    ("EEVEE", "EEVEE", "Blender's EEVEE renders the frame range to the scene's output path like Ctrl+F12, the "
                       "avatars drawn as splats with the rest of the scene (no server needed)"),
]


def render_mode_property():
    return EnumProperty(name="Mode", items=RENDER_MODES, default="SERVER",
                        description="Who renders the avatars: the server, or Blender's EEVEE")


class HEADSPLAT_OT_render_shot(bpy.types.Operator):
    """Render the avatars over the scene's frame range: on the server (composited over Blender's render) or with EEVEE"""

    bl_idname = "headsplat.render_shot"
    bl_label = "Render Shot"

    target: StringProperty(name="Rig", description="Render only this rig (default: every HeadSplat rig)")
    mode: render_mode_property()
    wait: wait_property()

    def execute(self, context):
        scene = context.scene
        try:
            # the frames Blender's own animation render visits (Frame Step included)
            frames = curve_sampling.frame_numbers(scene.frame_start, scene.frame_end, scene.frame_step)
        except ValueError as exc:
            return report_failure(self, str(exc))
        if self.mode == "EEVEE":
            return self._render_eevee(scene, [int(f) for f in frames])
        return _start(self, context, [int(f) for f in frames], preview=False)

    def _render_eevee(self, scene, frames):
        try:
            rigs = render_flow.render_targets(scene, self.target)
        except ValueError as exc:
            return report_failure(self, str(exc))
        if scene.camera is None:
            return report_failure(self, "the scene has no camera; add one to render the shot")
        try:
            if should_wait(self) or bpy.app.background:
                eevee_shot.render_blocking(scene, rigs)
                self.report({"INFO"}, f"Rendered {len(frames)} frame(s) with EEVEE into "
                                      f"{os.path.dirname(eevee_shot.frame_paths(scene, frames[:1])[0])}")
            else:
                eevee_shot.render_in_ui(scene, rigs)
                self.report({"INFO"}, f"Rendering {len(frames)} frame(s) with EEVEE...")
        except (KeyError, ValueError) as exc:  # an avatar imported before true splats existed
            return report_failure(self, f"{exc.args[0] if exc.args else exc}; re-import the avatar to render it "
                                        "with EEVEE")
        return {"FINISHED"}


class HEADSPLAT_OT_preview_frame(bpy.types.Operator):
    """Render the current frame on the server and show it in an Image Editor"""

    bl_idname = "headsplat.preview_frame"
    bl_label = "Preview This Frame"

    target: StringProperty(name="Rig", description="Preview only this rig (default: every HeadSplat rig)")
    wait: wait_property()

    def execute(self, context):
        return _start(self, context, [context.scene.frame_current], preview=True)


class HEADSPLAT_OT_setup_compositor(bpy.types.Operator):
    """Composite the HeadSplat frames already on disk over Blender's render (no server needed)"""

    bl_idname = "headsplat.setup_compositor"
    bl_label = "Set Up Compositor"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        layers = []
        for rig in render_flow.render_targets(scene) if _has_rigs(scene) else []:
            name = str(rig.get(PROP_AVATAR_NAME) or rig.name)
            folder = shot.output_dir(bpy.path.abspath(scene.render.filepath), name, bpy.app.tempdir or os.getcwd())
            first = None
            for ext in ("png", "exr"):
                candidate = os.path.join(folder, shot.frame_file_name(scene.frame_start, ext))
                if os.path.exists(candidate):
                    first = candidate
                    break
            if first is None:
                continue
            depth = os.path.join(folder, shot.frame_file_name(scene.frame_start, "exr", prefix="depth"))
            layers.append(compositor.FrameLayer(name, first, scene.frame_start, scene.frame_end - scene.frame_start + 1,
                                                depth if os.path.exists(depth) else ""))
        if not layers:
            return report_failure(self, "no HeadSplat frames found for this scene's range; render the shot first")
        compositor.setup_compositor(scene, layers)
        self.report({"INFO"}, f"Compositing {len(layers)} avatar layer(s)")
        return {"FINISHED"}


def _has_rigs(scene) -> bool:
    try:
        render_flow.render_targets(scene)
        return True
    except ValueError:
        return False


CLASSES = (HEADSPLAT_OT_render_shot, HEADSPLAT_OT_preview_frame, HEADSPLAT_OT_setup_compositor)

"""The "HeadSplat" tab of the 3D View's sidebar: connection, create, jobs, server
avatars, animation controls of the selected rig, motion and render.

Panels only draw: every button is an operator, every value a real property (the rig's
shape keys and pose bones are drawn directly, so I / right-click > Insert Keyframe works
on them like anywhere else in Blender).
"""

from __future__ import annotations

import time

import bpy

from . import connection, jobs
from .operators.avatar_ops import auto_preset_text
from .operators.motion_ops import resolve_rig
from .scene_import.rig import find_head_object

CATEGORY = "HeadSplat"
_STATUS_ICONS = {connection.CONNECTED: "CHECKMARK", connection.CONNECTING: "SORTTIME",
                 connection.ERROR: "ERROR", connection.DISCONNECTED: "UNLINKED"}


def _wrapped(layout, text: str, width: int = 48) -> None:
    """Long messages over several label lines (panels do not wrap text)."""
    line = ""
    for word in text.split():
        if line and len(line) + len(word) + 1 > width:
            layout.label(text=line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        layout.label(text=line)


def format_eta(seconds: float) -> str:
    if seconds < 0:
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s left"
    return f"{seconds / 60:.0f} min left"


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class VIEW3D_PT_headsplat(_Panel, bpy.types.Panel):
    bl_label = "HeadSplat"

    def draw(self, context):
        layout = self.layout
        state = connection.state()
        box = layout.box()
        row = box.row()
        row.label(text=state.status.title(), icon=_STATUS_ICONS.get(state.status, "QUESTION"))
        if state.status == connection.CONNECTED:
            row.operator("headsplat.disconnect", text="", icon="X")
        else:
            row.operator("headsplat.connect", icon="LINKED")
        col = box.column(align=True)
        _wrapped(col, state.message)
        info = state.info
        if info:
            heads = ", ".join(m.get("name", "?") for m in info.get("head_models") or [])
            diffusion = ", ".join(m.get("name", "?") for m in info.get("diffusion_models") or []) or "none"
            col.label(text=f"Head models: {heads}")
            col.label(text=f"Diffusion: {diffusion}")
        local = connection.local_server_status_line()
        if local:
            _wrapped(col, local)
        status = context.scene.headsplat.status
        if status:
            _wrapped(layout.column(align=True), status)


class VIEW3D_PT_headsplat_create(_Panel, bpy.types.Panel):
    bl_label = "Create Avatar"
    bl_parent_id = "VIEW3D_PT_headsplat"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.headsplat
        layout.prop(settings, "source_path")
        layout.prop(settings, "preset")
        if settings.preset == "AUTO":
            _wrapped(layout.column(align=True), auto_preset_text(connection.state()))
        layout.prop(settings, "avatar_name")
        layout.prop(settings, "seed")
        if connection.state().info.get("diffusion_models"):
            layout.prop(settings, "diffusion")
        row = layout.row()
        row.enabled = connection.state().status == connection.CONNECTED
        op = row.operator("headsplat.create_avatar", icon="USER")
        op.filepath = settings.source_path
        op.preset = settings.preset
        op.name = settings.avatar_name
        op.seed = settings.seed
        op.diffusion = settings.diffusion if connection.state().info.get("diffusion_models") else "none"


class VIEW3D_PT_headsplat_jobs(_Panel, bpy.types.Panel):
    bl_label = "Jobs"
    bl_parent_id = "VIEW3D_PT_headsplat"

    @classmethod
    def poll(cls, context):
        return len(context.scene.headsplat.jobs) > 0

    def draw(self, context):
        layout = self.layout
        entries = list(context.scene.headsplat.jobs)
        active = [e for e in entries if not e.finished]
        for entry in (active or entries[-3:])[::-1][:6]:
            box = layout.box()
            box.label(text=entry.label or entry.kind, icon="SORTTIME" if not entry.finished else "INFO")
            if not entry.finished:
                text = f"{entry.stage or entry.state} {entry.fraction * 100:.0f}%"
                eta = format_eta(entry.eta_s)
                box.progress(factor=entry.fraction, type="BAR", text=f"{text}  {eta}".strip())
            else:
                box.label(text=entry.state.title())
            if entry.message:
                _wrapped(box.column(align=True), entry.message)
            if entry.finished and entry.result:
                _wrapped(box.column(align=True), entry.result)
        image = bpy.data.images.get(jobs.PROGRESS_IMAGE)
        if active and image is not None and image.preview is not None:
            layout.template_icon(icon_value=image.preview.icon_id, scale=8.0)
        row = layout.row(align=True)
        row.operator("headsplat.cancel_job", icon="CANCEL")
        row.operator("headsplat.reattach_jobs", icon="FILE_REFRESH")
        row.operator("headsplat.clear_jobs", text="", icon="TRASH")


class HEADSPLAT_UL_avatars(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row()
        row.label(text=item.display_name, icon="USER")
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.created_at)) if item.created_at else ""
        row.label(text=f"{item.splats:,} splats  {created}")


class VIEW3D_PT_headsplat_avatars(_Panel, bpy.types.Panel):
    bl_label = "Server Avatars"
    bl_parent_id = "VIEW3D_PT_headsplat"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        props = context.window_manager.headsplat
        layout.enabled = connection.state().status == connection.CONNECTED
        layout.template_list("HEADSPLAT_UL_avatars", "", props, "avatars", props, "avatar_index", rows=4)
        row = layout.row(align=True)
        row.operator("headsplat.refresh_avatars", icon="FILE_REFRESH", text="Refresh")
        row.operator("headsplat.import_avatar", icon="IMPORT", text="Import")
        row.operator("headsplat.delete_avatar", icon="TRASH", text="Delete")


class VIEW3D_PT_headsplat_animate(_Panel, bpy.types.Panel):
    bl_label = "Animate"
    bl_parent_id = "VIEW3D_PT_headsplat"

    def draw(self, context):
        layout = self.layout
        try:
            rig_root = resolve_rig(context, "")
            head = find_head_object(rig_root)
        except ValueError as exc:
            _wrapped(layout.column(align=True), str(exc))
            return
        layout.label(text=rig_root.name, icon="ARMATURE_DATA")
        col = layout.column(align=True)
        for bone_name in ("jaw", "neck", "left_eye", "right_eye", "root"):
            bone = rig_root.pose.bones.get(bone_name)
            if bone is None:
                continue
            prop = {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(
                bone.rotation_mode, "rotation_euler")
            col.label(text=bone_name.replace("_", " ").title())
            col.prop(bone, prop, text="")
            if bone_name == "root":
                col.prop(bone, "location", text="")
        keys = head.data.shape_keys
        if keys is not None:
            layout.label(text="Expressions (shape keys)")
            layout.template_list("MESH_UL_shape_keys", "", keys, "key_blocks", head, "active_shape_key_index", rows=6)
        splats = next((c for c in rig_root.children if c.get("headsplat_role") == "splats"), None)
        if splats is not None and splats.modifiers:
            modifier = splats.modifiers[0]
            from .scene_import import geometry_nodes as gn
            if modifier.node_group is not None:
                for label in (gn.INPUT_GAUSSIANS, gn.INPUT_DENSITY, gn.INPUT_POINT_SIZE):
                    try:
                        layout.prop(modifier, f'["{gn.input_identifier(modifier.node_group, label)}"]', text=label)
                    except KeyError:
                        pass


class VIEW3D_PT_headsplat_motion(_Panel, bpy.types.Panel):
    bl_label = "Motion"
    bl_parent_id = "VIEW3D_PT_headsplat"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.headsplat
        layout.prop(settings, "motion_path")
        row = layout.row(align=True)
        op = row.operator("headsplat.import_motion", icon="IMPORT")
        op.filepath = settings.motion_path
        row.operator("headsplat.export_motion", icon="EXPORT")


class VIEW3D_PT_headsplat_render(_Panel, bpy.types.Panel):
    bl_label = "Render"
    bl_parent_id = "VIEW3D_PT_headsplat"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.headsplat
        layout.prop(settings, "render_mode", expand=True)
        connected = connection.state().status == connection.CONNECTED
        if settings.render_mode == "EEVEE":
            layout.operator("headsplat.render_shot", icon="RENDER_ANIMATION").mode = "EEVEE"
        else:
            layout.prop(settings, "render_format")
            layout.prop(settings, "use_depth")
            layout.prop(settings, "setup_compositor")
        col = layout.column(align=True)
        col.enabled = connected
        if settings.render_mode != "EEVEE":
            col.operator("headsplat.render_shot", icon="RENDER_ANIMATION").mode = "SERVER"
        col.operator("headsplat.preview_frame", icon="RENDER_STILL")
        layout.operator("headsplat.setup_compositor", icon="NODE_COMPOSITING")


CLASSES = (HEADSPLAT_UL_avatars, VIEW3D_PT_headsplat, VIEW3D_PT_headsplat_create, VIEW3D_PT_headsplat_jobs,
           VIEW3D_PT_headsplat_avatars, VIEW3D_PT_headsplat_animate, VIEW3D_PT_headsplat_motion,
           VIEW3D_PT_headsplat_render)

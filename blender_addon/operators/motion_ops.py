"""Import a motion (.npz, or a video tracked on the server) as keys on a rig; export the
rig's animation as a motion .npz."""

from __future__ import annotations

import os

import bpy
from bpy.props import IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .. import connection, jobs, motion_io
from .._shared import VIDEO_SUFFIXES, curve_sampling, motion as motion_mod
from ..scene_import.rig import PROP_AVATAR_ID, find_rig_roots
from .common import conclude, report_failure, wait_property


def resolve_rig(context, target: str):
    """The rig root named ``target``, else the active object's rig, else the scene's only rig."""
    scene = context.scene
    if target:
        obj = scene.objects.get(target)
        if obj is None or not obj.get(PROP_AVATAR_ID):
            raise ValueError(f"'{target}' is not a HeadSplat rig in scene '{scene.name}'")
        return obj
    active = context.active_object
    while active is not None:
        if active.get(PROP_AVATAR_ID):
            return active
        active = active.parent
    rigs = find_rig_roots(scene)
    if len(rigs) == 1:
        return rigs[0]
    raise ValueError("select the avatar's rig (or pass target=<rig name>): the scene has "
                     f"{len(rigs)} HeadSplat rigs")


class HEADSPLAT_OT_import_motion(bpy.types.Operator, ImportHelper):
    """Key a motion on an avatar's rig: a motion .npz, or a driving video tracked on the server"""

    bl_idname = "headsplat.import_motion"
    bl_label = "Import Motion"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.npz;*" + ";*".join(VIDEO_SUFFIXES), options={"HIDDEN"})
    target: StringProperty(name="Rig", description="Rig root to key (default: the selected avatar)")
    first_frame: IntProperty(name="First Frame", default=-1,
                             description="Scene frame of the motion's first frame (-1: the scene's start)")
    max_frames: IntProperty(name="Max Frames", default=0, min=0,
                            description="Track at most this many video frames (0: the whole video)")
    wait: wait_property()

    def invoke(self, context, event):
        if self.filepath:  # the panel passes the chosen file: no browser needed
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        scene = context.scene
        path = bpy.path.abspath(self.filepath)
        try:
            rig_root = resolve_rig(context, self.target)
        except ValueError as exc:
            return report_failure(self, str(exc))
        if not os.path.isfile(path):
            return report_failure(self, f"the file {path} does not exist")
        first = scene.frame_start if self.first_frame < 0 else self.first_frame
        if path.lower().endswith(".npz"):
            try:
                motion = motion_mod.Motion.load(path)
            except motion_mod.MotionFormatError as exc:
                return report_failure(self, f"{os.path.basename(path)} is not a HeadSplat motion: {exc}")
            summary = motion_io.key_motion(scene, rig_root, motion, first_frame=first)
            self.report({"INFO"}, motion_io.summary_message(rig_root.name, summary))
            return {"FINISHED"}
        return self._track_video(context, path, rig_root, first)

    def _track_video(self, context, path: str, rig_root, first: int):
        try:
            connection.require_connected()
        except ValueError as exc:
            return report_failure(self, str(exc))
        if not connection.server_has("motion.track"):
            return report_failure(self, "this server cannot track videos yet (it does not offer motion.track); "
                                        "import a motion .npz instead or update the server")
        with open(path, "rb") as f:
            video = {"name": os.path.basename(path), "data": f.read()}
        params = {"video": video, "avatar": str(rig_root[PROP_AVATAR_ID])}
        if self.max_frames > 0:
            params["max_frames"] = int(self.max_frames)
        ticket = jobs.start_job(context.scene, "motion.track", params, label=f"Track {video['name']}",
                                context={"rig": rig_root.name, "first_frame": first})
        return conclude(self, ticket, started=f"Tracking {video['name']} on the server...")


class HEADSPLAT_OT_export_motion(bpy.types.Operator, ExportHelper):
    """Save the rig's animation over the scene's frame range as a motion .npz"""

    bl_idname = "headsplat.export_motion"
    bl_label = "Export Motion"

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    target: StringProperty(name="Rig", description="Rig root to export (default: the selected avatar)")

    def execute(self, context):
        scene = context.scene
        try:
            rig_root = resolve_rig(context, self.target)
            frames = curve_sampling.frame_numbers(scene.frame_start, scene.frame_end)
            motion = motion_io.motion_from_rig(scene, rig_root, frames)
        except ValueError as exc:
            return report_failure(self, str(exc))
        path = bpy.path.abspath(self.filepath)
        motion.save(path)
        self.report({"INFO"}, f"Saved {motion.n_frames} frames at {motion.fps:g} fps to {path}")
        return {"FINISHED"}


CLASSES = (HEADSPLAT_OT_import_motion, HEADSPLAT_OT_export_motion)

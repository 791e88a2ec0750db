"""Rendering a shot on the server: sample the rigs and camera, send one ``render.frames``
job per avatar, write frames as they stream in, fetch any that were missed, then set up
the compositor (or, for "preview this frame", show the frame in an Image Editor)."""

from __future__ import annotations

import json
import os
import secrets

import bpy
import numpy as np

from . import anim_sampling, compositor, connection, jobs, shot
from .connection import Ticket
from .scene_import.rig import PROP_AVATAR_ID, PROP_AVATAR_NAME, PROP_ROLE
from .session import Failure

PREVIEW_IMAGE = "HeadSplat Preview"


def write_depth_exr(path: str, depth: np.ndarray) -> None:
    """(H, W) depth in Blender units -> a float EXR (value in R, G and B)."""
    height, width = depth.shape
    image = bpy.data.images.new("HeadSplat depth (temporary)", width, height, alpha=True, float_buffer=True)
    try:
        pixels = np.ones((height, width, 4), np.float32)
        pixels[..., :3] = depth[::-1, :, None]  # Blender stores rows bottom-up
        image.pixels.foreach_set(pixels.ravel())
        image.filepath_raw = path
        image.file_format = "OPEN_EXR"
        image.save()
    finally:
        bpy.data.images.remove(image)


def _splat_modifiers(scene):
    for obj in scene.objects:
        if obj.get(PROP_ROLE) == "splats":
            for modifier in obj.modifiers:
                if modifier.type == "NODES" and modifier.show_viewport:
                    yield modifier


def sample_shot(scene, rig_root, frames) -> shot.ShotSamples:
    """Sample with the splat previews switched off (they do not affect the parameters
    and would be re-posed on every frame)."""
    muted = list(_splat_modifiers(scene))
    for modifier in muted:
        modifier.show_viewport = False
    try:
        return anim_sampling.sample_rig(scene, rig_root, frames)
    finally:
        for modifier in muted:
            modifier.show_viewport = True


def render_targets(scene, target: str = "") -> list:
    """Rig roots to render: ``target`` by name, else every HeadSplat rig whose root is
    enabled for rendering (the camera icon of the rig root in the outliner)."""
    if target:
        obj = scene.objects.get(target)
        if obj is None or not obj.get(PROP_AVATAR_ID):
            raise ValueError(f"'{target}' is not a HeadSplat rig in scene '{scene.name}'")
        return [obj]
    rigs = [obj for obj in scene.objects if obj.get(PROP_AVATAR_ID) and obj.type == "ARMATURE" and not obj.hide_render]
    if not rigs:
        raise ValueError("the scene has no HeadSplat avatar to render; import one first")
    return rigs


def start_render(scene, rig_root, frames, *, fmt: str, depth: bool, composite: bool, preview: bool,
                 shot_id: str) -> Ticket:
    """Sample, submit and follow one avatar's render; -> its ticket."""
    samples = sample_shot(scene, rig_root, frames)
    problem = shot.check_frame_count(len(frames), connection.state().info.get("limits") or {})
    if problem:
        raise ValueError(problem)
    name = str(rig_root.get(PROP_AVATAR_NAME) or rig_root.name)
    folder = shot.output_dir(bpy.path.abspath(scene.render.filepath), name, bpy.app.tempdir or os.getcwd())
    os.makedirs(folder, exist_ok=True)
    plan = shot.ShotPlan(name, folder, shot.FORMATS[fmt][1], list(frames), depth, "preview" if preview else "frame")
    for frame in plan.frames:  # frames of an older shot must not pass for this one's
        for path in (plan.frame_path(frame), plan.depth_path(frame)):
            if os.path.exists(path):
                os.remove(path)
    request = shot.render_request(str(rig_root[PROP_AVATAR_ID]), samples, fmt=fmt, depth=depth)
    context = {"avatar_id": str(rig_root[PROP_AVATAR_ID]), "avatar_name": name, "rig": rig_root.name,
               "output_dir": folder, "extension": shot.FORMATS[fmt][1], "frames": [int(f) for f in frames],
               "depth": depth, "metres_per_unit": samples.metres_per_unit, "composite": composite,
               "preview": preview, "shot": shot_id}
    label = f"Preview of {name}" if preview else f"Render {name} ({len(frames)} frames)"
    return jobs.start_job(scene, "render.frames", request, label=label, context=context)


def new_shot_id() -> str:
    return secrets.token_hex(4)


@jobs.controller_for("render.frames")
class RenderFramesController(jobs.JobController):
    """render.frames: write each streamed frame; at the end fetch missing ones, then
    composite (shot) or show (preview)."""

    def _plan(self) -> shot.ShotPlan:
        ctx = self.context
        return shot.ShotPlan(ctx.get("avatar_name", ""), ctx.get("output_dir", ""), ctx.get("extension", "png"),
                             list(ctx.get("frames", [])), bool(ctx.get("depth")),
                             "preview" if ctx.get("preview") else "frame")

    def _write(self, plan: shot.ShotPlan, index: int, frame: dict, depth) -> None:
        if not 0 <= index < len(plan.frames) or not isinstance(frame, dict):
            return
        number = plan.frames[index]
        with open(plan.frame_path(number), "wb") as f:
            f.write(bytes(frame["data"]))
        if plan.depth and depth is not None:
            write_depth_exr(plan.depth_path(number),
                            shot.depth_to_blender_units(np.asarray(depth), float(self.context.get("metres_per_unit", 1.0))))

    def progress(self, params: dict) -> None:
        if "frame" in params and "frame_index" in params:
            self._write(self._plan(), int(params["frame_index"]), params["frame"], params.get("depth"))

    def done(self, result: dict) -> None:
        plan = self._plan()
        missing = plan.missing_frames()  # start_render removed older files: missing = not streamed
        if not missing:
            self._complete(plan)
            return
        ranges = shot.result_ranges(missing)
        remaining = {"count": len(ranges)}
        session = connection.require_connected()
        job_id = self.entry.job_id if self.entry is not None else ""

        def fetched(reply: dict) -> None:
            for item in (reply.get("result") or {}).get("frame_data") or []:
                index = int(item.get("frame_index", int(item["frame_number"]) - plan.frames[0]))
                self._write(plan, index, item.get("frame"), item.get("depth"))
            remaining["count"] -= 1
            if remaining["count"] == 0:
                self._complete(plan)

        for start, stop in ranges:
            session.request("job.result", {"job": job_id, "frames": [start, stop]}, on_result=fetched,
                            on_error=lambda failure: self.fail(Failure(failure.code,
                                                                       f"fetching missed frames: {failure.message}")))

    def _complete(self, plan: shot.ShotPlan) -> None:
        if self.entry is not None and self.entry.finished:
            return
        missing = [plan.frames[i] for i in plan.missing_frames()]
        if missing:
            self.fail(Failure("internal", f"the server did not deliver frame(s) {missing[:5]}"))
            return
        ctx = self.context
        if ctx.get("preview"):
            image = show_preview(plan.frame_path(plan.frames[0]))
            self.finish(f"Preview of frame {plan.frames[0]} is in the image '{image.name}'")
            return
        if ctx.get("composite") and self.scene is not None:
            setup_shot_compositor(self.scene, ctx.get("shot", ""))
        self.finish(f"Rendered {len(plan.frames)} frame(s) of {plan.avatar_name} into {plan.output_dir}")


def setup_shot_compositor(scene, shot_id: str) -> None:
    """Composite every avatar render of the shot ``shot_id`` that has frames on disk (one
    layer each; the last job of the shot to finish leaves all of them in place)."""
    layers = []
    for entry in scene.headsplat.jobs:
        if entry.kind != "render.frames" or entry.state not in ("done", "running", "queued", "fetching"):
            continue
        ctx = json.loads(entry.context or "{}")
        if ctx.get("shot") != shot_id or ctx.get("preview"):
            continue
        frames = ctx.get("frames") or []
        folder, ext = ctx.get("output_dir", ""), ctx.get("extension", "png")
        first = os.path.join(folder, shot.frame_file_name(frames[0], ext)) if frames else ""
        if not first or not os.path.exists(first):
            continue
        depth_first = os.path.join(folder, shot.frame_file_name(frames[0], "exr", prefix="depth"))
        span = int(frames[-1]) - int(frames[0]) + 1  # a Frame Step leaves gaps that Blender never renders
        layers.append(compositor.FrameLayer(ctx.get("avatar_name", entry.label), first, int(frames[0]), span,
                                            depth_first if ctx.get("depth") and os.path.exists(depth_first) else ""))
    if layers:
        compositor.setup_compositor(scene, layers)


def show_preview(path: str):
    """Load ``path`` as the "HeadSplat Preview" image and show it in an Image Editor."""
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        image = bpy.data.images.load(path)
        image.name = PREVIEW_IMAGE
    else:
        image.filepath = path
        image.source = "FILE"
        image.reload()
    if not bpy.app.background:
        _show_in_image_editor(image)
    return image


def _show_in_image_editor(image) -> None:
    wm = bpy.context.window_manager
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                area.tag_redraw()
                return
    if wm.windows:  # no Image Editor open: show it in a new window
        with bpy.context.temp_override(window=wm.windows[0]):
            bpy.ops.wm.window_new()
        window = wm.windows[-1]
        area = window.screen.areas[0]
        area.type = "IMAGE_EDITOR"
        area.spaces.active.image = image

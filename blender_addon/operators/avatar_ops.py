"""Create, import, list and delete avatars on the server."""

from __future__ import annotations

import os

import bpy
from bpy.props import CollectionProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import connection, import_flow, jobs
from .._shared import VIDEO_SUFFIXES, preset_choice
from ..connection import Ticket
from ..properties import PRESETS
from .common import conclude, report_failure, wait_property

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MAX_IMAGES = 8


def source_files(filepath: str, directory: str, names: list[str]) -> list[str]:
    """The files the user picked: several from the file browser, else ``filepath``."""
    if directory and names:
        return [os.path.join(bpy.path.abspath(directory), name) for name in names if name]
    return [bpy.path.abspath(filepath)] if filepath else []


def create_params(paths: list[str], *, preset: str, name: str, seed: int, diffusion: str,
                  max_message_bytes: int, iterations: int = 0, holdout: float = 0.0) -> dict:
    """The avatar.create params for image files or one video (ValueError with a sentence)."""
    if not paths:
        raise ValueError("choose a portrait image (or a short selfie video) to create the avatar from")
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"the file {path} does not exist")
    videos = [p for p in paths if p.lower().endswith(VIDEO_SUFFIXES)]
    if videos and len(paths) > 1:
        raise ValueError("give either one video or up to 8 photos, not both")
    if not videos and len(paths) > MAX_IMAGES:
        raise ValueError(f"{len(paths)} photos were chosen; an avatar is made from at most {MAX_IMAGES}")
    total = sum(os.path.getsize(p) for p in paths)
    if max_message_bytes and total > max_message_bytes:
        raise ValueError(f"the files add up to {total / 2**20:.1f} MiB but the server accepts at most "
                         f"{max_message_bytes / 2**20:.0f} MiB per request")
    items = []
    for path in paths:
        with open(path, "rb") as f:
            items.append({"name": os.path.basename(path), "data": f.read()})
    params = {"preset": preset.lower(), "seed": int(seed)}
    if videos:
        params["video"] = items[0]
    else:
        params["images"] = items
    if name:
        params["name"] = name
    if diffusion and diffusion != "none":
        params["diffusion"] = diffusion
    options = {}
    if iterations:
        options["iterations"] = int(iterations)
    if videos and holdout > 0:
        options["holdout"] = float(holdout)
    if options:
        params["options"] = options
    return params


def resolve_preset(preset: str, device: str):
    """The add-on's preset item ("AUTO", "DRAFT", ...) -> shared.preset_choice.PresetChoice:
    AUTO follows the server's device (draft on a CPU, standard on CUDA); any other item is
    the user's choice and wins."""
    return preset_choice.choose_preset(None if preset == "AUTO" else preset, device)


def auto_preset_text(state) -> str:
    """The panel's line under an AUTO preset: what it resolves to on this server, and why."""
    if state.status != connection.CONNECTED or not state.info:
        return "Auto: Draft on a CPU server, Standard on a CUDA GPU server (decided once connected)"
    choice = resolve_preset("AUTO", str(state.info.get("device", "")))
    return f"Auto: {choice.name.title()}, because {choice.reason}"


class HEADSPLAT_OT_create_avatar(bpy.types.Operator, ImportHelper):
    """Create an avatar on the server from a portrait (or a few photos, or a short video) and import it"""

    bl_idname = "headsplat.create_avatar"
    bl_label = "Create Avatar"
    bl_options = {"REGISTER"}

    filter_glob: StringProperty(default="*" + ";*".join(IMAGE_EXTENSIONS + VIDEO_SUFFIXES), options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    preset: EnumProperty(name="Preset", items=PRESETS, default="AUTO")
    name: StringProperty(name="Name", description="Display name of the avatar (default: the file name)")
    seed: IntProperty(name="Seed", default=0, min=0)
    diffusion: StringProperty(name="Diffusion", default="none",
                              description="View synthesis model from the server's list ('none' for no model)")
    iterations: IntProperty(name="Iterations", default=0, min=0, max=100_000,
                            description="Optimization iterations; 0 uses the preset's (a quick look: a few hundred)")
    holdout: FloatProperty(name="Held-out Check", default=0.0, min=0.0, max=0.5, subtype="FACTOR",
                           description="Video only: keep this last fraction of the clip out of training; the "
                                       "progress preview shows one of those frames beside the avatar's render "
                                       "of it, and the result reports how well the avatar matches them")
    wait: wait_property()

    def invoke(self, context, event):
        if self.filepath:
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        scene = context.scene
        paths = source_files(self.filepath, self.directory, [f.name for f in self.files])
        try:
            connection.require_connected()
            limits = connection.state().info.get("limits") or {}
            choice = resolve_preset(self.preset, str(connection.state().info.get("device", "")))
            params = create_params(paths, preset=choice.name, name=self.name, seed=self.seed,
                                   diffusion=self.diffusion, max_message_bytes=int(limits.get("max_message_bytes", 0)),
                                   iterations=self.iterations, holdout=self.holdout)
        except (ValueError, OSError) as exc:
            return report_failure(self, str(exc))
        if not connection.server_has("avatar.create"):
            return report_failure(self, "this server cannot create avatars yet (it does not offer avatar.create); "
                                        "update the server")
        name = self.name or os.path.splitext(os.path.basename(paths[0]))[0]
        ticket = jobs.start_job(scene, "avatar.create", params, label=f"Create '{name}' ({choice.name})",
                                context={"name": name, "sources": [os.path.basename(p) for p in paths]})
        return conclude(self, ticket, started=f"Creating avatar '{name}' with preset {choice.name} ({choice.reason}); "
                                              "progress in the HeadSplat panel")


class HEADSPLAT_OT_import_avatar(bpy.types.Operator):
    """Import an avatar from the server: rig, expression shape keys and splat preview"""

    bl_idname = "headsplat.import_avatar"
    bl_label = "Import Avatar"
    bl_options = {"REGISTER"}  # the objects are built when the reply arrives, after the operator returned

    avatar_id: StringProperty(name="Avatar", description="Avatar id (default: the one selected in the list)")
    wait: wait_property()

    def execute(self, context):
        avatar_id = self.avatar_id or _selected_avatar(context)
        if not avatar_id:
            return report_failure(self, "choose an avatar in the HeadSplat panel's list (or pass avatar_id=...)")
        try:
            ticket = import_flow.fetch_and_import(context.scene.name, avatar_id)
        except ValueError as exc:
            return report_failure(self, str(exc))
        return conclude(self, ticket, started=f"Importing avatar {avatar_id}...")


class HEADSPLAT_OT_delete_avatar(bpy.types.Operator):
    """Delete an avatar from the server (rigs already imported stay in your scenes)"""

    bl_idname = "headsplat.delete_avatar"
    bl_label = "Delete Avatar from Server"

    avatar_id: StringProperty(name="Avatar")
    wait: wait_property()

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        avatar_id = self.avatar_id or _selected_avatar(context)
        if not avatar_id:
            return report_failure(self, "choose an avatar to delete")
        try:
            session = connection.require_connected()
        except ValueError as exc:
            return report_failure(self, str(exc))
        ticket = Ticket()

        def deleted(_result):
            ticket.succeed(f"Deleted avatar {avatar_id} from the server")
            refresh_avatar_list()

        session.request("avatar.delete", {"avatar": avatar_id}, on_result=deleted,
                        on_error=connection.failing(ticket))
        connection.ensure_timer()
        return conclude(self, ticket, started=f"Deleting avatar {avatar_id}...")


class HEADSPLAT_OT_refresh_avatars(bpy.types.Operator):
    """Fetch the server's avatar list"""

    bl_idname = "headsplat.refresh_avatars"
    bl_label = "Refresh Avatars"

    wait: wait_property()

    def execute(self, context):
        try:
            ticket = refresh_avatar_list()
        except ValueError as exc:
            return report_failure(self, str(exc))
        return conclude(self, ticket, started="Fetching the avatar list...")


def _selected_avatar(context) -> str:
    session_props = context.window_manager.headsplat
    if 0 <= session_props.avatar_index < len(session_props.avatars):
        return session_props.avatars[session_props.avatar_index].avatar_id
    return ""


def refresh_avatar_list() -> Ticket:
    """Ask for avatar.list and fill the window manager's list when it arrives."""
    ticket = Ticket()
    session = connection.require_connected()

    def fill(result: dict) -> None:
        wm = bpy.context.window_manager
        if wm is None:
            ticket.succeed("no window manager")
            return
        items = wm.headsplat.avatars
        items.clear()
        for avatar in result.get("avatars") or []:
            item = items.add()
            meta = avatar.get("metadata") or {}
            item.avatar_id = str(avatar.get("avatar", ""))
            item.display_name = str(avatar.get("name") or item.avatar_id)
            item.created_at = float(avatar.get("created_at") or 0.0)
            item.size_bytes = float(avatar.get("size_bytes") or 0)
            item.splats = int((meta.get("counts") or {}).get("splats") or 0)
            item.head_model = str((meta.get("head_model") or {}).get("name", ""))
        wm.headsplat.avatar_index = min(wm.headsplat.avatar_index, max(0, len(items) - 1))
        ticket.succeed(f"{len(items)} avatar(s) on the server")
        connection.redraw()

    session.request("avatar.list", on_result=fill, on_error=connection.failing(ticket))
    connection.ensure_timer()
    return ticket


CLASSES = (HEADSPLAT_OT_create_avatar, HEADSPLAT_OT_import_avatar, HEADSPLAT_OT_delete_avatar,
           HEADSPLAT_OT_refresh_avatars)

"""Fetch an avatar from the server and build it in a scene (import_avatar and the end of
create_avatar). The fetch is a non-blocking ``avatar.get``; the build runs on Blender's
main thread when the reply arrives (bpy is not thread-safe)."""

from __future__ import annotations

import bpy

from . import connection, jobs
from .connection import Ticket
from .scene_import import build
from .scene_import.avatar_data import REQUIRED_FILES, AvatarDataError, avatar_from_reply
from .session import Failure


def build_from_reply(scene, reply: dict, *, endpoint: str = "") -> build.ImportedAvatar:
    """Build an ``avatar.get`` reply in ``scene`` (raises AvatarDataError on a bad avatar)."""
    avatar = avatar_from_reply(reply)
    return build.import_avatar(scene, avatar, endpoint=endpoint)


def fetch_and_import(scene_name: str, avatar_id: str, *, on_success=None, on_failure=None) -> Ticket:
    """Request the avatar; build it when it arrives. The ticket's value is the rig root's
    name; ``on_success(ticket)`` / ``on_failure(failure)`` run after it ends (to chain steps)."""
    ticket = Ticket()
    session = connection.require_connected()

    def on_reply(reply: dict) -> None:
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            ticket.fail(Failure("not_found", f"the scene '{scene_name}' is gone; avatar {avatar_id} was not imported"))
            return
        try:
            imported = build_from_reply(scene, reply, endpoint=session.endpoint)
        except AvatarDataError as exc:
            message = f"avatar {avatar_id} cannot be imported: {exc}"
            _failed(Failure("bad_file", message))
            return
        count = len(reply["arrays"]["splats"]["binding"])
        message = f"Imported '{imported.rig_root.get('headsplat_avatar_name')}' ({count:,} splats)"
        ticket.succeed(message, imported.rig_root.name)
        if on_success is not None:
            on_success(ticket)
        else:
            jobs.notify(scene, message)

    def _failed(failure: Failure) -> None:
        ticket.fail(failure)
        if on_failure is not None:
            on_failure(failure)
        else:
            jobs.notify(bpy.data.scenes.get(scene_name), failure.message, "ERROR")

    def on_error(failure: Failure) -> None:
        message = f"could not fetch avatar {avatar_id}: {connection.describe_failure(failure, session.endpoint)}"
        _failed(Failure(failure.code, message))

    session.request("avatar.get", {"avatar": avatar_id, "include": list(REQUIRED_FILES)},
                    on_result=on_reply, on_error=on_error)
    connection.ensure_timer()
    return ticket


@jobs.controller_for("avatar.create")
class AvatarCreateController(jobs.JobController):
    """avatar.create: when the avatar is made, import it into the scene."""

    def done(self, result: dict) -> None:
        avatar_id = result.get("avatar")
        if not isinstance(avatar_id, str):
            self.fail(Failure("internal", "the server's avatar.create result has no avatar id"))
            return
        entry = self.entry
        if entry is not None:
            entry.stage, entry.message = "import", f"importing avatar {avatar_id}"

        def imported(step: Ticket) -> None:
            warnings = result.get("warnings") or []
            note = f" ({'; '.join(map(str, warnings))})" if warnings else ""
            if result.get("train_frames"):  # made from a video: say how much of it was learned from
                note = f", learned from {result['train_frames']} frames of the clip{note}"
            heldout = (result.get("clip") or {}).get("heldout") or {}
            if heldout.get("psnr_db") is not None:
                note += (f"; on {len(heldout.get('frames') or [])} held-out frames PSNR {float(heldout['psnr_db']):.1f} dB, "
                         f"SSIM {float(heldout.get('ssim', 0.0)):.3f} (preview: real above, render below)")
            strip = result.get("heldout_strip_png")
            if isinstance(strip, (bytes, bytearray, memoryview)):
                jobs.show_progress_preview(bytes(strip), "png")
            self.finish(f"{step.message}{note}", step.value)

        fetch_and_import(self.scene_name, avatar_id, on_success=imported, on_failure=self.fail)

"""Server jobs a scene started: their entries in ``scene.headsplat.jobs`` (saved in the
.blend, so a reopened file can reattach) and the controllers that finish them.

A controller follows one job: progress goes into the scene entry (stage, fraction, ETA,
the server's preview image); completion depends on the job kind (``avatar.create``
imports the avatar, ``render.frames`` writes frames and sets up the compositor,
``motion.track`` keys the rig). Controllers find their scene and entry by name on every
call, so they survive file reloads and deleted scenes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import time

import bpy

from . import connection
from .connection import Ticket
from .session import Failure, JobHandlers

log = logging.getLogger(__name__)

PROGRESS_IMAGE = "HeadSplat Progress"
_CONTROLLERS: dict[str, type] = {}


def controller_for(kind: str):
    """Decorator: the JobController subclass that finishes jobs of ``kind``."""

    def register(cls):
        _CONTROLLERS[kind] = cls
        return cls
    return register


def notify(scene, message: str, level: str = "INFO") -> None:
    """Show what happened: the scene's status line, and a popup for errors in the UI
    (operators have returned by the time a job ends, so they cannot report it)."""
    if scene is not None:
        scene.headsplat.status = message
    (log.error if level == "ERROR" else log.info)("HeadSplat: %s", message)
    if bpy.app.background or level != "ERROR":
        connection.redraw()
        return
    wm = bpy.context.window_manager
    if wm is not None and wm.windows:
        def draw(menu, _context):
            menu.layout.label(text=message)
        with bpy.context.temp_override(window=wm.windows[0]):
            wm.popup_menu(draw, title="HeadSplat", icon="ERROR")
    connection.redraw()


class JobController:
    """Follows one job of one scene (see the module docstring). Subclasses override
    ``progress``/``done``; ``done`` ends by calling ``finish`` or ``fail``."""

    def __init__(self, scene_name: str, entry_name: str, ticket: Ticket | None = None):
        self.scene_name = scene_name
        self.entry_name = entry_name
        self.ticket = ticket or Ticket()

    # ---- lookups ------------------------------------------------------------------------
    @property
    def scene(self):
        return bpy.data.scenes.get(self.scene_name)

    @property
    def entry(self):
        scene = self.scene
        return scene.headsplat.jobs.get(self.entry_name) if scene is not None else None

    @property
    def context(self) -> dict:
        entry = self.entry
        try:
            return json.loads(entry.context) if entry is not None else {}
        except ValueError:
            return {}

    def handlers(self) -> JobHandlers:
        return JobHandlers(on_progress=self._on_progress, on_done=self.done, on_failed=self.fail,
                           on_state=self._on_state)

    # ---- events ---------------------------------------------------------------------------
    def queued(self, job_id: str) -> None:
        entry = self.entry
        if entry is not None:
            entry.job_id, entry.state = job_id, "queued"
            if entry.cancel_requested:  # cancel was pressed before the server named the job
                cancel_entry(entry)
        connection.redraw()

    def _on_state(self, state: str) -> None:
        entry = self.entry
        if entry is not None and not entry.finished:
            entry.state = state

    def _on_progress(self, params: dict) -> None:
        entry = self.entry
        if entry is None:
            return
        entry.state = "running"
        entry.stage = str(params.get("stage", ""))
        entry.fraction = min(1.0, max(0.0, float(params.get("fraction") or 0.0)))
        entry.message = str(params.get("message", ""))[:500]
        entry.eta_s = float(params["eta_s"]) if params.get("eta_s") is not None else -1.0
        preview = params.get("preview")
        if isinstance(preview, dict) and isinstance(preview.get("data"), (bytes, bytearray, memoryview)):
            show_progress_preview(bytes(preview["data"]), str(preview.get("format", "png")))
        self.progress(params)
        connection.redraw()

    def progress(self, params: dict) -> None:
        """Kind-specific progress (e.g. frames of render.frames)."""

    def done(self, result: dict) -> None:
        self.finish(f"{self.entry.label if self.entry else 'job'} finished")

    # ---- endings --------------------------------------------------------------------------
    def finish(self, message: str, value=None) -> None:
        entry = self.entry
        if entry is not None:
            entry.state, entry.fraction, entry.result = "done", 1.0, message[:500]
        notify(self.scene, message)
        self.ticket.succeed(message, value)

    def fail(self, failure: Failure) -> None:
        entry = self.entry
        state = {"cancelled": "cancelled", "lost": "lost"}.get(failure.code, "failed")
        if entry is not None:
            entry.state, entry.message = state, failure.message[:500]
        label = entry.label if entry is not None and entry.label else "the job"
        message = f"{label} was cancelled" if state == "cancelled" else f"{label} failed: {failure.message}"
        notify(self.scene, message, "INFO" if state == "cancelled" else "ERROR")
        self.ticket.fail(Failure(failure.code, message))


def show_progress_preview(data: bytes, fmt: str) -> None:
    """Put the server's preview (PNG/JPEG bytes) into the image the panel shows."""
    path = os.path.join(tempfile.gettempdir(), f"headsplat-progress-{os.getpid()}.{'jpg' if fmt == 'jpeg' else 'png'}")
    with open(path, "wb") as f:
        f.write(data)
    image = bpy.data.images.get(PROGRESS_IMAGE)
    if image is None:
        image = bpy.data.images.load(path)
        image.name = PROGRESS_IMAGE
    else:
        image.filepath = path
        image.reload()
    if not bpy.app.background:
        image.preview_ensure()
        image.preview.reload()


def start_job(scene, kind: str, params: dict, *, label: str, context: dict | None = None,
              ticket: Ticket | None = None) -> Ticket:
    """Submit a job for ``scene`` and follow it; -> the ticket that ends with it."""
    ticket = ticket or Ticket()
    session = connection.require_connected()
    entry = scene.headsplat.jobs.add()
    entry.name = f"hs-{secrets.token_hex(6)}"
    entry.kind, entry.label, entry.state, entry.created = kind, label, "submitting", time.time()
    entry.context = json.dumps(context or {})
    controller = _CONTROLLERS.get(kind, JobController)(scene.name, entry.name, ticket)
    session.submit(kind, params, controller.handlers(), on_queued=controller.queued)
    connection.ensure_timer()
    return ticket


def cancel_entry(entry) -> None:
    """Ask the server to cancel the entry's job (or remember to, once it has an id)."""
    entry.cancel_requested = True
    if entry.job_id:
        session = connection.require_connected()
        scene_name = entry.id_data.name
        entry_name = entry.name

        def refused(failure: Failure) -> None:
            scene = bpy.data.scenes.get(scene_name)
            current = scene.headsplat.jobs.get(entry_name) if scene is not None else None
            if current is not None and failure.code != "not_found":
                notify(scene, f"cancelling {current.label} failed: {failure.message}", "ERROR")

        session.cancel(entry.job_id, on_error=refused)
        connection.ensure_timer()


def active_entries(scene) -> list:
    return [entry for entry in scene.headsplat.jobs if not entry.finished]


def reattach_scene(scene, session) -> int:
    """Follow the scene's unfinished jobs again (after reopening the .blend or
    reconnecting); -> how many."""
    count = 0
    watched = set(session.watched_jobs())
    for entry in scene.headsplat.jobs:
        if entry.finished and entry.state != "lost":  # a lost job may have finished meanwhile
            continue
        if not entry.job_id:
            entry.state, entry.message = "lost", "the job was still being submitted when the file was saved"
            continue
        if entry.job_id in watched:
            continue
        controller = _CONTROLLERS.get(entry.kind, JobController)(scene.name, entry.name)
        entry.state, entry.message = "reattaching", f"asking the server about job {entry.job_id}"
        session.watch(entry.job_id, controller.handlers())
        count += 1
    if count:
        connection.ensure_timer()
    return count


def reattach_all(quiet: bool = False) -> int:
    """Reattach the unfinished jobs of every scene (connect and file load call this)."""
    try:
        session = connection.require_connected()
    except ValueError:
        return 0
    count = sum(reattach_scene(scene, session) for scene in bpy.data.scenes)
    if count and not quiet:
        log.info("HeadSplat: reattached %d job(s)", count)
    return count


@bpy.app.handlers.persistent
def on_load_post(*_args) -> None:
    """A .blend was opened: follow its scenes' unfinished jobs if we are connected."""
    reattach_all()


def on_connected(_info: dict) -> None:
    """The add-on (re)connected: follow every scene's unfinished jobs again."""
    reattach_all(quiet=True)


def register() -> None:
    """Reattach jobs when a .blend is opened and whenever the add-on connects."""
    if on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load_post)
    connection.add_connected_hook(on_connected)


def unregister() -> None:
    connection.remove_connected_hook(on_connected)
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)

"""Cancel, reattach and clear the scene's server jobs."""

from __future__ import annotations

import bpy
from bpy.props import StringProperty

from .. import connection, jobs
from .common import report_failure, should_wait, wait_property


def _wait_for_entries(scene, names: list[str]) -> list:
    """Block until the named entries are finished; -> the entries."""
    def all_finished() -> bool:
        entries = [scene.headsplat.jobs.get(n) for n in names]
        return all(e is None or e.finished for e in entries)
    connection.block_until(all_finished)
    return [e for e in (scene.headsplat.jobs.get(n) for n in names) if e is not None]


class HEADSPLAT_OT_cancel_job(bpy.types.Operator):
    """Cancel the scene's running HeadSplat jobs on the server"""

    bl_idname = "headsplat.cancel_job"
    bl_label = "Cancel"

    job_id: StringProperty(name="Job", description="Job id to cancel (default: every running job of the scene)")
    wait: wait_property()

    def execute(self, context):
        scene = context.scene
        try:
            session = connection.require_connected()
        except ValueError as exc:
            return report_failure(self, str(exc))
        jobs.reattach_scene(scene, session)
        entries = [e for e in jobs.active_entries(scene) if not self.job_id or e.job_id == self.job_id]
        if not entries:
            return report_failure(self, f"no running job {self.job_id}" if self.job_id else
                                  "there is no running HeadSplat job to cancel")
        for entry in entries:
            jobs.cancel_entry(entry)
        names = [e.name for e in entries]
        if not should_wait(self):
            self.report({"INFO"}, f"Cancelling {len(names)} job(s)...")
            return {"FINISHED"}
        finished = _wait_for_entries(scene, names)
        states = sorted({e.state for e in finished})
        self.report({"INFO"}, f"{len(finished)} job(s) now {', '.join(states)}")
        return {"FINISHED"}


class HEADSPLAT_OT_reattach_jobs(bpy.types.Operator):
    """Follow this file's unfinished jobs again (e.g. after reopening the .blend)"""

    bl_idname = "headsplat.reattach_jobs"
    bl_label = "Reattach"

    wait: wait_property()

    def execute(self, context):
        scene = context.scene
        try:
            session = connection.require_connected()
        except ValueError as exc:
            return report_failure(self, str(exc))
        count = jobs.reattach_scene(scene, session)
        names = [e.name for e in jobs.active_entries(scene)]
        if not names:
            self.report({"INFO"}, "No unfinished jobs to reattach")
            return {"FINISHED"}
        if not should_wait(self):
            self.report({"INFO"}, f"Reattached {count} job(s)")
            return {"FINISHED"}
        finished = _wait_for_entries(scene, names)
        failed = [e for e in finished if e.state != "done"]
        if failed:
            return report_failure(self, f"{failed[0].label} {failed[0].state}: {failed[0].message}")
        self.report({"INFO"}, "; ".join(e.result for e in finished if e.result) or f"{len(finished)} job(s) done")
        return {"FINISHED"}


class HEADSPLAT_OT_clear_jobs(bpy.types.Operator):
    """Remove finished jobs from the scene's list"""

    bl_idname = "headsplat.clear_jobs"
    bl_label = "Clear Finished Jobs"

    def execute(self, context):
        items = context.scene.headsplat.jobs
        for index in reversed(range(len(items))):
            if items[index].finished:
                items.remove(index)
        return {"FINISHED"}


CLASSES = (HEADSPLAT_OT_cancel_job, HEADSPLAT_OT_reattach_jobs, HEADSPLAT_OT_clear_jobs)

"""Register and unregister everything the add-on adds to Blender."""

from __future__ import annotations

import atexit

import bpy

from . import connection, import_flow, jobs, motion_io, panels, preferences, properties, render_flow  # noqa: F401
from .operators import avatar_ops, connection_ops, job_ops, motion_ops, render_ops

# import_flow, motion_io and render_flow register their job controllers when imported.
CLASSES = (*properties.CLASSES, *preferences.CLASSES, *connection_ops.CLASSES, *avatar_ops.CLASSES,
           *job_ops.CLASSES, *motion_ops.CLASSES, *render_ops.CLASSES, *panels.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    jobs.register()
    atexit.register(connection.shutdown)


def unregister() -> None:
    atexit.unregister(connection.shutdown)
    connection.shutdown()
    jobs.unregister()
    properties.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

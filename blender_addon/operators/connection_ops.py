"""Connect to the server, and start or stop the local server."""

from __future__ import annotations

import bpy

from .. import connection
from ..local_server import LocalServerError
from .common import conclude, report_failure, wait_property


class HEADSPLAT_OT_connect(bpy.types.Operator):
    """Connect to the HeadSplat server in the preferences (starting the local server if enabled)"""

    bl_idname = "headsplat.connect"
    bl_label = "Connect"
    bl_options = {"REGISTER"}

    wait: wait_property()

    def execute(self, context):
        ticket = connection.connect()
        return conclude(self, ticket, started=f"Connecting to {connection.state().endpoint or 'the server'}...")


class HEADSPLAT_OT_disconnect(bpy.types.Operator):
    """Close the connection (jobs keep running on the server and can be reattached)"""

    bl_idname = "headsplat.disconnect"
    bl_label = "Disconnect"

    def execute(self, context):
        connection.close_session()
        connection.redraw()
        return {"FINISHED"}


class HEADSPLAT_OT_start_local_server(bpy.types.Operator):
    """Start the local server command from the preferences"""

    bl_idname = "headsplat.start_local_server"
    bl_label = "Start Local Server"

    def execute(self, context):
        try:
            connection.start_local_server()
        except LocalServerError as exc:
            return report_failure(self, str(exc))
        self.report({"INFO"}, connection.local_server_status_line() or "Local server started")
        return {"FINISHED"}


class HEADSPLAT_OT_stop_local_server(bpy.types.Operator):
    """Stop the server this Blender started"""

    bl_idname = "headsplat.stop_local_server"
    bl_label = "Stop Local Server"

    def execute(self, context):
        if not connection.local_server().running:
            self.report({"INFO"}, "No local server is running")
            return {"CANCELLED"}
        connection.stop_local_server()
        if connection.is_blocking():
            connection.local_server().stop_and_wait()
        self.report({"INFO"}, "Local server stopping")
        return {"FINISHED"}


CLASSES = (HEADSPLAT_OT_connect, HEADSPLAT_OT_disconnect, HEADSPLAT_OT_start_local_server,
           HEADSPLAT_OT_stop_local_server)

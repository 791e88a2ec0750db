"""Add-on preferences: where the server is, its CURVE keys, the local server command and
timeouts. Stored with Blender's preferences (not in .blend files)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

from ._shared import __version__ as SHARED_VERSION

ADDON_ID = __package__  # "blender_addon" in a checkout, "bl_ext.<repo>.headsplat" as an extension
DEFAULT_ENDPOINT = "tcp://127.0.0.1:7788"
DEFAULT_LOCAL_COMMAND = "headsplat serve --bind {endpoint}"


class HeadSplatPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    endpoint: StringProperty(
        name="Server", default=DEFAULT_ENDPOINT,
        description="ZeroMQ endpoint of the HeadSplat server, e.g. tcp://127.0.0.1:7788 or tcp://gpu-box:7788")
    server_key_file: StringProperty(
        name="Server Key", subtype="FILE_PATH", default="",
        description="The server's public key file (server.key from 'headsplat keys'); only for servers using CURVE")
    client_key_file: StringProperty(
        name="Client Key", subtype="FILE_PATH", default="",
        description="This computer's secret key file (client.key_secret); its public half must be in the "
                    "server's authorized_clients folder")
    request_timeout_s: FloatProperty(
        name="Request Timeout", default=15.0, min=1.0, max=600.0, unit="TIME_ABSOLUTE",
        description="Seconds to wait for the server's answer to a request before reporting it unreachable")
    lost_contact_s: FloatProperty(
        name="Job Contact Timeout", default=60.0, min=3.0, max=3600.0, unit="TIME_ABSOLUTE",
        description="Seconds a running job's server may stay silent before the job is reported lost "
                    "(it can be reattached later)")
    start_local_server: BoolProperty(
        name="Start a Local Server", default=False,
        description="Start the command below when connecting to a server on this computer, and stop it with "
                    "Blender")
    local_server_command: StringProperty(
        name="Command", default=DEFAULT_LOCAL_COMMAND,
        description="Command line that runs the server; {endpoint} is replaced by the server endpoint. Give "
                    "the full path when the server lives in a virtual environment, e.g. "
                    "/home/me/headsplat/.venv/bin/headsplat serve --bind {endpoint}")

    def draw(self, context):
        from . import connection

        layout = self.layout
        col = layout.column()
        col.prop(self, "endpoint")
        box = col.box()
        box.label(text="CURVE keys (servers reachable from other computers)")
        box.prop(self, "server_key_file")
        box.prop(self, "client_key_file")
        col.prop(self, "request_timeout_s")
        col.prop(self, "lost_contact_s")
        box = col.box()
        box.prop(self, "start_local_server")
        sub = box.column()
        sub.active = self.start_local_server
        sub.prop(self, "local_server_command")
        row = sub.row()
        row.operator("headsplat.start_local_server", icon="PLAY")
        row.operator("headsplat.stop_local_server", icon="PAUSE")
        status = connection.local_server_status_line()
        if status:
            sub.label(text=status)
        col.label(text=f"Add-on protocol version 1, shared library {SHARED_VERSION}")


def get_prefs(context=None) -> HeadSplatPreferences:
    """The add-on's preferences (raises a clear error if the add-on is not enabled)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is None or addon.preferences is None:
        raise RuntimeError(f"the HeadSplat add-on ({ADDON_ID}) is not enabled in the preferences")
    return addon.preferences


CLASSES = (HeadSplatPreferences,)

"""Make pyzmq and msgpack importable inside Blender, without pip.

The extension zip lists platform wheels in its manifest and Blender installs them itself.
The legacy add-on zip cannot, so build_addon.py unpacks the wheels into
``_vendor/<tag>/`` (one folder per Python version and platform); ``ensure()`` puts the
folder matching this Blender on ``sys.path`` when the modules are not importable already.
"""

from __future__ import annotations

import os
import platform
import sys

VENDOR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_vendor")


def vendor_tag(version=None, system: str | None = None, machine: str | None = None) -> str:
    """The folder name for a Python version and platform, e.g. ``cp311-linux-x64``
    (platform names as in Blender's manifest: linux-x64, linux-arm64, macos-arm64,
    macos-x64, windows-x64)."""
    major, minor = (version or sys.version_info)[:2]
    system = (system or sys.platform).lower()
    machine = (machine or platform.machine()).lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    if system.startswith("linux"):
        os_name = "linux"
    elif system.startswith("darwin"):
        os_name = "macos"
    elif system.startswith("win"):
        os_name = "windows"
    else:
        os_name = system
    return f"cp{major}{minor}-{os_name}-{arch}"


def missing_modules() -> list[str]:
    """Names of the required modules that cannot be imported."""
    missing = []
    for name in ("zmq", "msgpack"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def ensure() -> list[str]:
    """Add the vendored wheels for this platform if needed; -> modules still missing."""
    missing = missing_modules()
    if not missing:
        return []
    folder = os.path.join(VENDOR_DIR, vendor_tag())
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.insert(0, folder)
    return missing_modules()


def missing_message(missing: list[str]) -> str:
    return (f"HeadSplat needs the Python modules {', '.join(missing)}, which this installation lacks "
            f"(platform {vendor_tag()}). Install the HeadSplat extension zip built for your platform "
            "(Edit > Preferences > Get Extensions > Install from Disk).")

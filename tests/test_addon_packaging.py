"""The built add-on: the extension zip installs and enables in real bpy (and Blender's
own validator accepts it), the legacy zip installs as a legacy add-on, the vendored
wheels import on this platform, and the full build covers every platform and Python."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import build_addon
from tests import blender_helpers as bh

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender


def test_extension_zip_has_a_valid_manifest_and_this_platforms_wheels():
    extension, _ = bh.built_zips()
    with zipfile.ZipFile(extension) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert build_addon.check_manifest(manifest, names) == []
    assert manifest["version"] == build_addon.addon_version() and manifest["blender_version_min"] == "4.2.0"
    assert manifest["permissions"]["network"]
    assert {"__init__.py", "registration.py", "shared/client.py", "shared/rig_math.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    platform = build_addon.current_platform()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheels = [Path(w).name for w in manifest["wheels"]]
    for project in ("pyzmq", "msgpack"):
        assert any(w.startswith(project) and build_addon.wheel_runs_on(w, platform, python) for w in wheels)
    assert build_addon.blender_validate(extension) is None  # Blender's own validator agrees


def test_extension_installs_and_enables_in_bpy():
    package = bh.installed_addon()
    assert bpy.context.preferences.addons.get(package) is not None
    for op in ("connect", "create_avatar", "import_avatar", "import_motion", "render_shot", "cancel_job"):
        assert hasattr(bpy.ops.headsplat, op)
    shared = bh.addon_module("_shared")
    assert shared.PACKAGE_NAME == f"{package}.shared"  # the copy vendored in the zip, not the checkout
    # the preference's default is the protocol's default endpoint (the value itself may have
    # been changed by tests that ran before in this process, so read the RNA default)
    protocol = importlib.import_module(f"{shared.PACKAGE_NAME}.protocol")
    assert type(bh.addon_prefs()).bl_rna.properties["endpoint"].default == protocol.DEFAULT_ENDPOINT


def test_legacy_zip_installs_as_a_legacy_addon(tmp_path):
    _, legacy = bh.built_zips()
    script = (
        "import bpy, sys\n"
        f"bpy.ops.preferences.addon_install(filepath={str(legacy)!r})\n"
        "bpy.ops.preferences.addon_enable(module='headsplat')\n"
        "assert 'headsplat' in bpy.context.preferences.addons, 'not enabled'\n"
        "assert hasattr(bpy.ops.headsplat, 'render_shot')\n"
        "print('LEGACY-OK', sys.modules['headsplat._shared'].PACKAGE_NAME)\n")
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "LEGACY-OK headsplat.shared" in result.stdout, result.stdout + result.stderr


def test_legacy_zip_vendors_wheels_that_import_on_this_platform(tmp_path):
    _, legacy = bh.built_zips()
    with zipfile.ZipFile(legacy) as archive:
        archive.extractall(tmp_path)
    sys.path.insert(0, str(bh.REPO_ROOT))
    from blender_addon._deps import vendor_tag

    vendor = tmp_path / "headsplat" / "_vendor" / vendor_tag()
    assert (vendor / "zmq").is_dir() and (vendor / "msgpack").is_dir()
    # -S: no site-packages, so only the vendored copies can satisfy the imports
    code = (f"import sys; sys.path.insert(0, {str(vendor)!r}); import zmq, msgpack; "
            "assert zmq.__file__.startswith(sys.path[0]), zmq.__file__; "
            "s = zmq.Context().socket(zmq.DEALER); s.close(); print('VENDORED', zmq.zmq_version())")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("VENDORED"), result.stderr


@pytest.mark.slow
def test_full_build_covers_every_platform_and_python(tmp_path):
    """Downloads the wheels of every platform into the checkout's wheel cache (once)."""
    extension, legacy = build_addon.build(tmp_path, bh.REPO_ROOT / ".cache" / "wheels", list(build_addon.PLATFORMS),
                                          list(build_addon.PYTHON_VERSIONS))
    with zipfile.ZipFile(extension) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    wheels = [Path(w).name for w in manifest["wheels"]]
    assert manifest["platforms"] == list(build_addon.PLATFORMS)
    for platform in build_addon.PLATFORMS:
        for python in build_addon.PYTHON_VERSIONS:
            for project in ("pyzmq", "msgpack"):
                assert any(w.startswith(project) and build_addon.wheel_runs_on(w, platform, python) for w in wheels), \
                    (platform, python, project)
    with zipfile.ZipFile(legacy) as archive:
        folders = {n.split("/")[2] for n in archive.namelist() if n.startswith("headsplat/_vendor/")}
    assert folders == {f"cp{p.replace('.', '')}-{plat}" for plat in build_addon.PLATFORMS
                       for p in build_addon.PYTHON_VERSIONS}

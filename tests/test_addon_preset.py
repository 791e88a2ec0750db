"""The add-on's preset default follows the connected server's device (draft on a CPU,
standard on a CUDA GPU), the Create panel says what Auto chose and why, and a preset the
user picks always wins. Real bpy, the add-on installed from its zip, a real server."""

from __future__ import annotations

import pytest

from tests import blender_helpers as bh
from tests.test_addon_panels import draw_all

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender


@pytest.fixture
def scene():
    bh.installed_addon()
    return bh.new_scene()


def _panel_text(context) -> str:
    return " ".join(draw_all(context)["labels"])


def test_auto_is_the_default_and_the_panel_says_what_it_chose(scene):
    assert scene.headsplat.preset == "AUTO"
    bh.addon_module("connection").close_session()
    assert "Auto: Draft on a CPU server, Standard on a CUDA GPU server (decided once connected)" in \
        _panel_text(bpy.context)
    bh.connect(bh.shared_server().endpoint)
    text = _panel_text(bpy.context)
    assert "Auto: Draft, because the server computes on the CPU (cpu (" in text
    assert "where standard takes about an hour" in text
    scene.headsplat.preset = "HIGH"
    assert "Auto:" not in _panel_text(bpy.context)


def test_an_explicit_preset_wins_and_auto_follows_the_device():
    ops = bh.addon_module("operators.avatar_ops")
    gpu, cpu = "cuda:0 NVIDIA H100 80GB HBM3 (79.2 GiB)", "cpu (2 threads)"
    assert ops.resolve_preset("AUTO", gpu).name == "standard" and ops.resolve_preset("AUTO", cpu).name == "draft"
    for item in ("DRAFT", "STANDARD", "HIGH"):
        for device in (gpu, cpu):
            choice = ops.resolve_preset(item, device)
            assert choice.name == item.lower() and choice.chosen_by_user


def test_create_with_auto_on_a_cpu_server_submits_draft(scene, tmp_path):
    """The operator resolves Auto from server.info before submitting (the file is no photo,
    so the server refuses the job at submission and nothing is computed)."""
    bh.connect(bh.shared_server().endpoint)
    not_a_photo = tmp_path / "not-a-photo.png"
    not_a_photo.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(RuntimeError, match=r"Create 'Auto' \(draft\) failed: .*not a PNG, JPEG"):
        bpy.ops.headsplat.create_avatar(filepath=str(not_a_photo), name="Auto", wait="WAIT")
    assert scene.headsplat.jobs[-1].label == "Create 'Auto' (draft)"


def test_files_saved_before_auto_keep_their_preset(scene):
    """A .blend stores the enum's number; Draft/Standard/High kept theirs (0, 1, 2) when
    Auto was added, so an older file's Standard still reads as Standard."""
    scene.headsplat["preset"] = 1   # what a file saved with Standard before Auto holds
    assert scene.headsplat.preset == "STANDARD"
    scene.headsplat["preset"] = 0
    assert scene.headsplat.preset == "DRAFT"

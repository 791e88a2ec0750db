"""The sidebar panels draw in every state (disconnected, connected, job running, rig
selected) without errors, and every property they show exists on its data.

Headless Blender has no window to draw into, so ``draw`` gets a layout recorder that
checks each ``prop`` against the real RNA of the data it names and each ``operator``
against the registered operators; the data and the context are real."""

from __future__ import annotations

import pytest

from tests import blender_helpers as bh

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender


class LayoutRecorder:
    """Stands in for bpy.types.UILayout; records labels, props and operators."""

    def __init__(self, log=None):
        self.log = log if log is not None else {"labels": [], "props": [], "operators": []}
        self.enabled = self.active = True

    def _child(self, *args, **kwargs):
        return LayoutRecorder(self.log)

    row = column = box = split = _child

    def label(self, text="", icon="NONE", **kwargs):
        self.log["labels"].append(text)

    def prop(self, data, prop, text=None, **kwargs):
        name = prop[2:-2] if prop.startswith('["') else prop
        if prop.startswith('["'):
            assert name in data.keys(), f"{data} has no custom property {name}"
        else:
            assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name}"
        self.log["props"].append(name)

    def operator(self, idname, **kwargs):
        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), f"no operator {idname}"
        self.log["operators"].append(idname)
        return type("OperatorProperties", (), {})()

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, **kwargs):
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.log["props"].append(prop)

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.log["labels"].append(text)

    def template_icon(self, icon_value=0, scale=1.0):
        self.log["labels"].append(f"icon {icon_value}")


def draw_all(context) -> dict:
    panels = bh.addon_module("panels")
    log = {"labels": [], "props": [], "operators": []}
    for cls in panels.CLASSES:
        if not issubclass(cls, bpy.types.Panel):
            continue
        if hasattr(cls, "poll") and not cls.poll(context):
            continue
        panel = type("P", (), {"layout": LayoutRecorder(log)})()
        cls.draw(panel, context)
    return log


@pytest.fixture
def scene():
    bh.installed_addon()
    return bh.new_scene()


def test_panels_draw_when_disconnected(scene):
    bh.addon_module("connection").close_session()
    log = draw_all(bpy.context)
    assert "Disconnected" in log["labels"] and "headsplat.connect" in log["operators"]
    assert any("HeadSplat rigs" in text or "select" in text for text in log["labels"])


def test_panels_draw_connected_with_a_job_and_a_rig(scene):
    server = bh.shared_server()
    avatar_id = bh.write_avatar(server.data_dir, bh.synthetic_rig(), n_splats=100, name="Panel")
    bh.connect(server.endpoint)
    rig_root = bh.import_avatar(avatar_id)
    bpy.context.view_layer.objects.active = rig_root
    bpy.ops.headsplat.refresh_avatars(wait="WAIT")
    jobs = bh.addon_module("jobs")
    jobs.start_job(scene, "test.count", {"steps": 100, "step_s": 0.02}, label="Count")
    bh.tick_until(lambda: scene.headsplat.jobs[-1].state == "running")
    log = draw_all(bpy.context)
    assert "Connected" in log["labels"] and any(text.startswith("HeadSplat server") for text in log["labels"])
    assert any("%" in text for text in log["labels"])  # the progress bar with stage and percent
    assert {"key_blocks", "avatars", "rotation_quaternion", "source_path", "render_format"} <= set(log["props"])
    assert {"headsplat.cancel_job", "headsplat.render_shot", "headsplat.import_avatar",
            "headsplat.create_avatar"} <= set(log["operators"])
    bpy.ops.headsplat.cancel_job(wait="WAIT")

"""Create Avatar from a selfie clip in real bpy (issue 12): the server tracks the clip, the
job's progress shows tracking and training, and the result says how many frames it
learned from. The add-on installed from its zip, a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import blender_helpers as bh

bpy = pytest.importorskip("bpy")
pytestmark = pytest.mark.blender
DRIVING = Path(__file__).resolve().parents[2] / "shared" / "data" / "driving" / "liveportrait_d0.mp4"


@pytest.mark.slow
@pytest.mark.skipif(not DRIVING.exists(), reason="needs ../shared/data/driving/liveportrait_d0.mp4")
def test_create_avatar_from_a_clip_learns_from_its_frames(tmp_path):
    import av

    bh.installed_addon()
    scene = bh.new_scene()
    bh.connect(bh.shared_server().endpoint, request_timeout_s=60.0, lost_contact_s=600.0)
    clip = tmp_path / "selfie.mp4"
    with av.open(str(DRIVING)) as src, av.open(str(clip), "w") as dst:  # a 16-frame take, small
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 160, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == 16:
                break
            for packet in stream.encode(frame.reformat(width=160, height=160, format="yuv420p")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    bpy.ops.headsplat.create_avatar(filepath=str(clip), preset="DRAFT", name="Selfie", iterations=10, holdout=0.25,
                                    wait="WAIT")
    entry = scene.headsplat.jobs[-1]
    assert entry.state == "done", entry.message
    assert "learned from 12 frames of the clip" in entry.result    # the last quarter is held out
    assert "on 4 held-out frames PSNR" in entry.result
    assert any(o.get("headsplat_avatar_name") == "Selfie" for o in scene.objects)
    preview = bpy.data.images[bh.addon_module("jobs").PROGRESS_IMAGE]   # the held-out strip: real over render
    assert tuple(preview.size) == (4 * preview.size[1] // 2, preview.size[1])

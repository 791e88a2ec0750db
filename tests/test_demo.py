"""The README's main command, at a size a test can afford: the demo folder, its index page
and every step (the Blender step included) must come out of one run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from compute_server.demo.motion import demo_motion


def test_demo_motion_moves_named_components_and_the_jaw():
    names = ["blink_left", "blink_right", "smile_left", "smile_right", "brow_raise_inner", "expr_unknown"]
    motion = demo_motion(names, fps=24, seconds=4)
    assert motion.n_frames == 96 and motion.fps == 24
    assert motion.expr[:, names.index("smile_left")].max() > 0.8
    assert motion.expr[:, names.index("blink_left")].max() > 0.9
    assert np.all(motion.expr[:, names.index("expr_unknown")] == 0)
    assert motion.jaw_pose[:, 0].max() > 0.3 and abs(motion.jaw_pose[0, 0]) < 1e-6
    assert np.abs(np.diff(motion.rotation[:, 1])).max() < 0.05        # smooth, no jumps


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "compute_server.cli.main", "demo", "--out", str(out),
                          "--iterations", "30", "--device", "cpu"], capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"Open {out / 'index.html'}" in run.stdout
    html = (out / "index.html").read_text()
    for name in ("avatar.ply", "motion.npz", "turntable.gif", "expressions.gif", "blender_shot.gif",
                 "contact_sheet.png", "demo.blend"):
        assert name in html, name
    assert len(list((out / "turntable").glob("frame_*.png"))) == 36
    assert len(list((out / "blender").glob("shot_*.png"))) == 24
    assert (out / "blender" / "demo.blend").stat().st_size > 100_000
    meta = json.loads((out / "avatar.json").read_text())
    assert meta["preset"] == "draft"

"""The README's main command, at a size a test can afford: the demo folder, its index page
and every step (the Blender step included) must come out of one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compute_server.demo.motion import demo_motion
from tests.import_closure import (distributions_of_module, extras_of_install_line, installed_distributions,
                                  third_party_imports)


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


REPO_ROOT = Path(__file__).resolve().parents[1]


def test_every_module_the_demo_imports_comes_with_dev_sh_demo():
    """`./dev.sh demo` on a fresh machine must install everything `headsplat demo` can import
    (every CLI module, the demo, the add-on it installs into Blender, build_addon.py it runs).
    It once installed the bare package while the Blender step needed bpy from the test extra."""
    extras = extras_of_install_line(REPO_ROOT / "dev.sh", "DEMO_EXTRAS")
    assert 'install "$DEMO_EXTRAS"' in (REPO_ROOT / "dev.sh").read_text(), "dev.sh demo must install DEMO_EXTRAS"
    installed = installed_distributions(REPO_ROOT / "pyproject.toml", extras)
    cli = sorted(p.stem for p in (REPO_ROOT / "compute_server" / "cli").glob("*.py"))
    demo = sorted(p.stem for p in (REPO_ROOT / "compute_server" / "demo").glob("*.py"))
    entries = [f"compute_server.cli.{m}" for m in cli] + [f"compute_server.demo.{m}" for m in demo]
    entries += ["blender_addon"]
    imports = third_party_imports(REPO_ROOT, entries, files=[REPO_ROOT / "build_addon.py"])
    assert any(i.module == "bpy" for i in imports), "the closure walk lost the Blender step"
    missing = []
    for imp in imports:
        provided_by = distributions_of_module(imp.module)
        if not provided_by & installed:
            missing.append(f"{imp.module} (imported at {imp.where}; provided by "
                           f"{sorted(provided_by) or 'nothing installed here'})")
    assert not missing, f"./dev.sh demo (extras {extras}) does not install: " + "; ".join(missing)


def test_install_closure_sees_a_module_outside_the_installed_extras():
    """The guard above can fail: with no extras, bpy (only in the blender extra) is missing."""
    installed = installed_distributions(REPO_ROOT / "pyproject.toml", [])
    assert "bpy" not in installed and "torch" in installed and "numpy" in installed
    assert "bpy" in installed_distributions(REPO_ROOT / "pyproject.toml", ["test"])
    assert distributions_of_module("bpy") == {"bpy"}


@pytest.mark.slow
def test_demo_without_blender_still_writes_its_page(tmp_path):
    """Where bpy cannot be imported, `headsplat demo` skips the Blender step with one line
    saying what to install and still writes index.html and the contact sheet; no traceback."""
    blocker = tmp_path / "no_bpy"
    blocker.mkdir()
    (blocker / "bpy.py").write_text("raise ImportError(\"No module named 'bpy' (hidden by the test)\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO_ROOT)])}
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "compute_server.cli.main", "demo", "--out", str(out),
                          "--iterations", "5", "--device", "cpu"], capture_output=True, text=True,
                         timeout=1200, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    assert "skipped the Blender step" in run.stdout and "pip install 'headsplat[blender]'" in run.stdout
    assert f"Open {out / 'index.html'}" in run.stdout
    html = (out / "index.html").read_text()
    assert "contact_sheet.png" in html and "turntable.gif" in html and "not made" in html
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert not (out / "blender" / "demo.blend").exists()

"""CI must run the real-footage tests: a missing ../shared/data is an error there, not a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.shared_data import REQUIRED_FILES, missing_shared_files, shared_data_required

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_required_files_are_named_and_found(tmp_path):
    assert missing_shared_files(tmp_path) == list(REQUIRED_FILES)
    for name in REQUIRED_FILES[1:]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert missing_shared_files(tmp_path) == [REQUIRED_FILES[0]]


def test_ci_and_the_explicit_switch_require_the_data():
    assert shared_data_required({"HEADSPLAT_REQUIRE_SHARED_DATA": "1"})
    assert shared_data_required({"CI": "true"})
    assert not shared_data_required({})
    assert "HEADSPLAT_REQUIRE_SHARED_DATA=1" in (REPO_ROOT / ".ci" / "run").read_text()


def test_a_ci_run_without_the_data_stops_before_any_test(tmp_path):
    """A copy of the test scaffolding in a folder with no ../shared beside it, run as CI runs it."""
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    for name in ("__init__.py", "conftest.py", "shared_data.py", "server_harness.py"):
        (checkout / "tests" / name).write_text((REPO_ROOT / "tests" / name).read_text())
    (checkout / "tests" / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    env = {**os.environ, "HEADSPLAT_REQUIRE_SHARED_DATA": "1", "PYTHONPATH": str(checkout)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=checkout,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 4, run.stdout + run.stderr
    assert "liveportrait_d0.mp4" in run.stdout + run.stderr
    env.pop("HEADSPLAT_REQUIRE_SHARED_DATA")
    env["CI"] = ""
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=checkout,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr

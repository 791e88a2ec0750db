"""The suite runner (bench/suite.py): which command each section runs, and how a section's
output, log and exit status are handled (real subprocesses, no benchmarks)."""

from __future__ import annotations

import sys

import pytest

from bench import suite


def test_reduced_full_and_gpu_commands():
    reduced, full, gpu = suite.sections("cpu", False), suite.sections("cpu", True), suite.sections("cuda", False)
    assert set(reduced) == set(suite.ALL_SECTIONS)
    assert reduced["protocol"].argv[-4:] == ["--splats", "50000", "--reps", "5"] and full["protocol"].argv == [
        "bench/protocol.py"]
    assert "--full" not in reduced["raster"].argv and "--full" in full["raster"].argv
    assert gpu["raster"].argv[-3:] == ["--device", "cuda", "--full"]
    assert "--quick" in reduced["blender"].argv and "--quick" not in gpu["blender"].argv
    assert reduced["e2e"].argv[-2:] == ["--iterations", "300"] and "--iterations" not in full["e2e"].argv
    assert gpu["e2e"].argv[gpu["e2e"].argv.index("--preset") + 1] == "standard"
    assert gpu["render"].argv[-4:] == ["--preset", "standard", "--iterations", "0"]
    assert reduced["render"].argv[-2:] == ["--iterations", "300"]
    assert "quality" not in suite.DEFAULT_SECTIONS
    for table in (reduced, full, gpu):  # every command names a module or script that exists
        for section in table.values():
            target = section.argv[1] if section.argv[0] == "-m" else section.argv[0]
            path = suite.ROOT / (target.replace(".", "/") + ".py" if section.argv[0] == "-m" else target)
            assert path.exists(), section


def test_run_section_streams_logs_and_reports_failure(tmp_path, capsys):
    ok = suite.Section("ok", ["-c", "print('| a | b |'); print('Fra:1 Mem:10M | Rendering')"], "test")
    bad = suite.Section("bad", ["-c", "import sys; print('half a table'); sys.exit(3)"], "test")
    assert suite.run_section(ok, tmp_path)[0] == 0
    assert suite.run_section(bad, tmp_path)[0] == 3
    out = capsys.readouterr().out
    assert "| a | b |" in out and "half a table" in out
    assert not any(line.startswith("Fra:") for line in out.splitlines())  # Blender's chatter is dropped
    assert (tmp_path / "ok.log").read_text() == "| a | b |\n"
    assert "half a table" in (tmp_path / "bad.log").read_text()


def test_list_and_unknown_sections(capsys):
    assert suite.main(["--list", "--only", "raster,presets"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("raster") and sys.executable in out[0]
    with pytest.raises(SystemExit):
        suite.main(["--only", "raster,nonsense"])


def test_steady_iteration_rate_skips_warm_up_and_other_messages():
    stamps = [(0.0, "fitting: landmarks"), (1.0, "iteration 1/30, 16000 Gaussians, 0.5 it/s"),
              (9.0, "iteration 11/30, 16000 Gaussians, 1.2 it/s"), (11.0, "building training views"),
              (14.0, "iteration 21/30, 16100 Gaussians, 1.5 it/s"), (18.5, "iteration 30/30, 16100 Gaussians")]
    assert suite.steady_iteration_rate(stamps) == pytest.approx((30 - 11) / (18.5 - 9.0))
    assert suite.steady_iteration_rate(stamps[:3]) is None  # one report past the warm-up is not a rate

"""`headsplat doctor` on this (CPU) machine: the report says plainly that CUDA is absent
and which checks that skipped; the failure lines name the problem and its fix (an
unwritable data directory, a missing model folder in the diffusion config, a corrupt
FLAME file) and make the command exit 1; the CUDA checks' logic runs through the torch
reference path; ``server.info`` carries the cached summary; and the end-to-end check
makes a real (very short) avatar and frame."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from compute_server.cli.info import format_info
from compute_server.cli.main import main
from compute_server.doctor import FAIL, OK, SKIPPED, DoctorSettings, run_cheap
from compute_server.doctor import diffusion_checks, gsplat_checks, head_checks, storage_checks
from compute_server.doctor.end_to_end import run_end_to_end
from compute_server.doctor.summary import DoctorSummary
from tests.server_harness import free_tcp_port, inprocess_server
from tests.test_diffusion_support import models_config, tiny  # noqa: F401

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without CUDA")


def _doctor(capsys, *args) -> tuple[int, str]:
    code = main(["doctor", "--quick", "--bind", f"tcp://127.0.0.1:{free_tcp_port()}", *map(str, args)])
    return code, capsys.readouterr().out


@no_cuda
def test_report_on_cpu_says_cuda_is_absent_and_what_it_skipped(tmp_path, capsys):
    code, out = _doctor(capsys, "--data", tmp_path / "data")
    assert code == 0, out
    assert "WARN  CUDA: CUDA is absent" in out and "fix: install the NVIDIA driver" in out
    assert "CUDA is absent on this machine, so these were skipped: gsplat kernels, gsplat agrees with torch, " \
           "gsplat training step." in out
    assert "skip  portrait to avatar to frame: not run (--quick)" in out
    assert "ok    mediapipe models" in out and "ok    built-in head" in out
    assert "ok    data directory writable" in out and "Nothing a job needs is broken." in out
    code = main(["doctor", "--quick", "--json", "--data", str(tmp_path / "data"),
                 "--bind", f"tcp://127.0.0.1:{free_tcp_port()}"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and not report["failed"] and report["counts"]["fail"] == 0
    verdicts = {c["name"]: c["verdict"] for c in report["checks"]}
    assert verdicts["CUDA"] == "warn" and verdicts["gsplat kernels"] == SKIPPED and verdicts["python"] == OK


def test_unwritable_data_dir_fails_with_the_fix(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out = _doctor(capsys, "--data", blocker / "data")
    assert code == 1
    assert f"FAIL  data directory writable: cannot create the data directory {blocker / 'data'}" in out
    assert "fix: choose a writable folder with --data DIR" in out
    assert "FAILED: data directory writable" in out


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_data_dir_fails(tmp_path):
    root = tmp_path / "data"
    storage_checks.writable_check(root)
    os.chmod(root / "jobs", 0o555)
    try:
        check, _ = storage_checks.writable_check(root)
    finally:
        os.chmod(root / "jobs", 0o755)
    assert check.verdict == FAIL and "cannot write in" in check.detail


def test_missing_model_folder_in_the_diffusion_config_fails(tmp_path, capsys):
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"models": [{"name": "sd15", "backend": "controlnet-normal",
                                              "base": str(tmp_path / "no-such-sd"),
                                              "controlnet": str(tmp_path / "no-such-controlnet")}]}))
    code, out = _doctor(capsys, "--data", tmp_path / "data", "--models-config", config)
    assert code == 1
    assert f"FAIL  diffusion sd15: the Stable Diffusion folder {tmp_path / 'no-such-sd'} does not exist" in out
    assert "fix: fix the folders named for 'sd15'" in out and "headsplat models check DIR" in out


def test_corrupt_flame_file_fails(tmp_path, capsys):
    flame = tmp_path / "generic_model.pkl"
    flame.write_bytes(b"\x80\x04this is not a pickle at all" * 10)
    check = head_checks.head_check(str(flame))
    assert check.verdict == FAIL and str(flame) in check.detail
    assert "flame.is.tue.mpg.de" in check.fix
    code, out = _doctor(capsys, "--data", tmp_path / "data", "--head-model", flame)
    assert code == 1 and f"FAIL  head model {flame}:" in out and "ok    built-in head" in out


def test_cuda_check_logic_through_the_torch_reference_path():
    """What the GPU branch runs, with our torch rasterizer standing in for gsplat's kernels
    (no GPU here): the render, the agreement measure and a falling training loss."""
    cpu = torch.device("cpu")
    assert gsplat_checks.compile_check(cpu, backend="torch").verdict == OK
    agree = gsplat_checks.agreement_check(cpu, backend="torch")
    assert agree.verdict == OK and "100.00%" in agree.detail
    step = gsplat_checks.training_step_check(cpu, steps=2, backend="torch")
    assert step.verdict == OK, step.detail


def test_one_step_denoise_check_runs_a_tiny_model(tmp_path, tiny):  # noqa: F811
    """The GPU branch's denoise check on the CPU (float32) with a tiny random-weight model."""
    from compute_server.diffusion.registry import DiffusionModels

    models = DiffusionModels.from_config(models_config(tmp_path, tiny))
    check = diffusion_checks.denoise_check(models, "tiny-sd", torch.device("cpu"))
    assert check.verdict == OK and "64 px on cpu in float32" in check.detail, check.detail
    found = diffusion_checks.checks(DoctorSettings(data_dir=tmp_path, models_config=models.source),
                                    torch.device("cpu"))
    skipped = [c for c in found if c.verdict == SKIPPED]
    assert skipped and all("CUDA is absent" in c.detail for c in skipped)


def test_server_info_carries_the_cached_summary(tmp_path):
    with inprocess_server(tmp_path) as server:
        from shared.client import Client

        with Client(server.endpoint, timeout_s=10.0) as client:
            info = client.info()
            first, second = info["doctor"], client.info()["doctor"]
    assert first == second  # cached: computed once, not per request
    assert first["cuda"] is torch.cuda.is_available() and not first["failed"]
    assert first["counts"]["ok"] >= 4 and "headsplat doctor" in first["full_check"]
    if not torch.cuda.is_available():
        assert any(p["name"] == "CUDA" and "CUDA is absent" in p["detail"] for p in first["problems"])
        assert "  doctor:           WARN CUDA: CUDA is absent" in format_info(info)


def test_summary_is_cheap_and_refreshes():
    settings = DoctorSettings(data_dir=Path("/nonexistent-unused"), end_to_end=False)
    names = [c.name for c in run_cheap(settings).checks]
    assert "mediapipe models" in names and "portrait to avatar to frame" not in names
    summary = DoctorSummary(settings, refresh_s=0.0)
    first = summary()                       # nothing cached: computed now
    assert summary() is first               # stale: returned as is while a thread refreshes
    deadline = time.monotonic() + 30
    while summary() is first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert summary()["checked_at"] >= first["checked_at"] and summary() is not first


def test_end_to_end_makes_an_avatar_and_a_frame(tmp_path):
    """The one-minute check with 5 iterations instead of 100 (about 40 s on 2 CPU cores)."""
    check = run_end_to_end(DoctorSettings(data_dir=tmp_path, device="cpu", end_to_end_iterations=5))
    assert check.verdict == OK, check.detail
    assert "5-iteration draft avatar" in check.detail and "256x256 frame" in check.detail
    assert "fit" in check.detail and check.seconds > 0

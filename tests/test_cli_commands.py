"""The `headsplat` command line: subcommands, output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from compute_server.cli.main import build_parser, main
from tests.server_harness import REPO_ROOT, free_tcp_port, running_server


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "info", "jobs", "keys", "demo"):
        assert command in out
    args = build_parser().parse_args(["serve"])
    assert args.bind == "tcp://127.0.0.1:7788" and args.device == "auto" and not args.insecure


def test_info_prints_the_server_and_json_on_request(session_server, capsys):
    assert main(["info", "--server", session_server.endpoint]) == 0
    out = capsys.readouterr().out
    assert "HeadSplat compute server" in out and "device:" in out and "builtin (default)" in out
    assert "100 frames per render" in out
    assert main(["info", "--server", session_server.endpoint, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["protocol"] == 1 and info["limits"]["max_queued_jobs"] == 3


def test_jobs_lists_jobs(session_server, capsys):
    with session_server.client() as client:
        job = client.submit("test.count", {"steps": 2, "step_s": 0.0})
        client.wait_job(job, timeout_s=20)
    assert main(["jobs", "--server", session_server.endpoint]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(job))
    assert "test.count" in line and "done" in line and "100%" in line
    assert main(["jobs", "--server", session_server.endpoint, "--json", "--state", "done", "--limit", "500"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert job in [j["job"] for j in jobs] and all(j["state"] == "done" for j in jobs)


def test_info_says_why_a_configured_diffusion_model_is_not_usable():
    from compute_server.cli.info import format_info

    info = {"name": "HeadSplat compute server", "version": "x", "protocol": 1, "device": "cpu",
            "head_models": [{"name": "builtin", "default": True}],
            "diffusion_models": [{"name": "sd", "backend": "controlnet-normal", "usable": True, "problem": None},
                                 {"name": "mv", "backend": "multiview", "usable": False,
                                  "problem": "no weights in unet/"}]}
    line = next(x for x in format_info(info).splitlines() if "diffusion models" in x)
    assert "sd (controlnet-normal); mv (multiview) NOT USABLE: no weights in unet/" in line


def test_client_commands_without_a_server_exit_3_with_advice(capsys):
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    for command in ("info", "jobs"):
        assert main([command, "--server", endpoint, "--timeout", "0.3"]) == 3
        err = capsys.readouterr().err
        assert f"no HeadSplat server answered at {endpoint} within 0.3 s; start one with `headsplat serve`" in err


def test_serve_writes_json_logs_on_request(tmp_path):
    with running_server(tmp_path, extra_args=["--log-format", "json"]) as server:
        with server.client() as client:
            client.wait_job(client.submit("test.count", {"steps": 1, "step_s": 0}), timeout_s=20)
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert any(e["msg"].startswith("listening on tcp://127.0.0.1:") for e in entries)
    job_entries = [e for e in entries if e.get("job")]
    assert job_entries and all(e["method"] == "test.count" for e in job_entries if "method" in e)
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])

"""The default preset follows the server's device (draft on a CPU, standard on CUDA) and
an explicit preset always wins: the shared rule, and `headsplat create` against a real
server saying which preset it chose and why."""

from __future__ import annotations

import argparse

import pytest

from compute_server.cli.create import announce_preset
from compute_server.cli.main import main
from shared.preset_choice import choose_preset, device_is_cuda

CPU = "cpu (2 threads)"
GPU = "cuda:0 NVIDIA H100 80GB HBM3 (79.2 GiB)"


def test_device_picks_the_preset_and_an_explicit_one_wins():
    assert choose_preset(None, CPU).name == "draft" and "CPU" in choose_preset(None, CPU).reason
    assert "about an hour" in choose_preset(None, CPU).reason
    assert choose_preset(None, GPU).name == "standard" and "NVIDIA H100" in choose_preset(None, GPU).reason
    assert choose_preset(None, "").name == "draft"   # an old server that names no device: the safe choice
    for device in (CPU, GPU):
        for name in ("draft", "standard", "high"):
            choice = choose_preset(name.upper(), device)
            assert choice.name == name and choice.chosen_by_user
    assert device_is_cuda("CUDA:1 x") and not device_is_cuda(CPU)
    with pytest.raises(ValueError):
        choose_preset("ultra", CPU)


def test_create_announces_the_choice(capsys):
    assert announce_preset(argparse.Namespace(preset=None), {"device": GPU}) == "standard"
    err = capsys.readouterr().err
    assert "preset standard: the server computes on a CUDA GPU (cuda:0 NVIDIA H100" in err and "--preset" in err
    assert announce_preset(argparse.Namespace(preset="high"), {"device": CPU}) == "high"
    assert "preset high: chosen by you" in capsys.readouterr().err


def test_create_without_preset_on_a_cpu_server_uses_draft(session_server, tmp_path, capsys):
    """The real path: server.info's device decides before the job is submitted (the photo
    is refused at submission, so no avatar is made)."""
    photo = tmp_path / "not-a-photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = main(["create", str(photo), "--server", session_server.endpoint])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "headsplat: preset draft: the server computes on the CPU (cpu (" in err
    assert "where standard takes about an hour; pass --preset to choose another" in err

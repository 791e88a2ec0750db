"""`headsplat create / track / render` as a user runs them: a subprocess that starts its
own embedded server (nothing listens on the address) on a data folder shared between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.motion import Motion
from tests.pipeline_helpers import astronaut_jpeg, decode_png
from tests.server_harness import free_tcp_port

DRIVING = Path(__file__).resolve().parents[2] / "shared" / "data" / "driving" / "liveportrait_d0.mp4"


def headsplat(*args, data: Path, port: int, timeout=600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "compute_server.cli.main", *args, "--data", str(data), "--device", "cpu",
           "--server", f"tcp://127.0.0.1:{port}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    photo = root / "astronaut.jpg"
    photo.write_bytes(astronaut_jpeg())
    return {"root": root, "data": root / "data", "photo": photo, "port": free_tcp_port()}


@pytest.fixture(scope="module")
def created(workspace):
    out = workspace["root"] / "avatar"
    run = headsplat("create", str(workspace["photo"]), "--preset", "draft", "--iterations", "30", "--size", "96",
                    "--out", str(out), data=workspace["data"], port=workspace["port"])
    assert run.returncode == 0, run.stderr[-2000:]
    avatar_id = run.stdout.strip().splitlines()[-1]
    return {"id": avatar_id, "out": out, "run": run}


def test_create_writes_ply_metadata_and_previews(created):
    from compute_server.splats.ply import read_ply_columns

    out = created["out"]
    assert created["id"].startswith("av_")
    meta = json.loads((out / "avatar.json").read_text())
    columns = read_ply_columns((out / "avatar.ply").read_bytes())
    assert len(columns["x"]) == meta["counts"]["splats"]
    assert {"f_dc_0", "opacity", "scale_0", "rot_0", "nx"} <= set(columns)
    assert decode_png((out / "turntable.png").read_bytes()).shape[2] == 4
    assert "starting one in this process" in created["run"].stdout


def test_render_a_turntable_into_a_folder(workspace, created):
    out = workspace["root"] / "turntable"
    run = headsplat("render", created["id"], "--camera", "turntable", "--frames", "3", "--size", "64", "64",
                    "--out", str(out), data=workspace["data"], port=workspace["port"])
    assert run.returncode == 0, run.stderr[-2000:]
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == 3 and decode_png(frames[0].read_bytes()).shape == (64, 64, 4)


@pytest.mark.skipif(not DRIVING.exists(), reason="needs ../shared/data/driving/liveportrait_d0.mp4")
def test_track_then_render_the_motion_as_animated_ply(workspace, created):
    motion_path = workspace["root"] / "m.npz"
    run = headsplat("track", str(DRIVING), "--max-frames", "12", "--out", str(motion_path),
                    data=workspace["data"], port=workspace["port"])
    assert run.returncode == 0, run.stderr[-2000:]
    motion = Motion.load(motion_path)
    assert motion.n_frames == 12
    out = workspace["root"] / "anim"
    run = headsplat("render", created["id"], "--motion", str(motion_path), "--format", "ply", "--out", str(out),
                    data=workspace["data"], port=workspace["port"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list(out.glob("frame_*.ply"))) == 12


def test_missing_photo_is_a_usage_error(workspace):
    run = headsplat("create", str(workspace["root"] / "nope.jpg"), data=workspace["data"], port=workspace["port"])
    assert run.returncode == 2 and "no such file" in run.stderr


@pytest.mark.slow
@pytest.mark.skipif(not DRIVING.exists(), reason="needs ../shared/data/driving/liveportrait_d0.mp4")
def test_create_from_a_clip_says_how_many_frames_it_learned_from(workspace):
    """`headsplat create clip.mp4`: the clip is tracked and its frames train (issue 12)."""
    import av

    clip = workspace["root"] / "selfie.mp4"
    with av.open(str(DRIVING)) as src, av.open(str(clip), "w") as dst:  # the first 20 frames: a short take
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 192, 192, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == 20:
                break
            for packet in stream.encode(frame.reformat(width=192, height=192, format="yuv420p")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    run = headsplat("create", str(clip), "--preset", "draft", "--iterations", "12", "--size", "64",
                    "--train-frames", "5", "--holdout", "0.2", data=workspace["data"], port=workspace["port"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "learned from 5 of 20 frames" in run.stdout + run.stderr
    assert "track" in run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("av_")

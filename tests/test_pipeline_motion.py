"""motion.track through a real server, on a real driving video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.client import Client, JobFailed, ServerError
from shared.motion import Motion
from tests.server_harness import inprocess_server

DRIVING = Path(__file__).resolve().parents[2] / "shared" / "data" / "driving" / "liveportrait_d0.mp4"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with inprocess_server(tmp_path_factory.mktemp("motion")) as srv, Client(srv.endpoint, timeout_s=30) as c:
        yield c


@pytest.mark.skipif(not DRIVING.exists(), reason="needs ../shared/data/driving/liveportrait_d0.mp4")
def test_track_a_driving_video_into_a_motion(client):
    events = []
    job = client.submit("motion.track", {"video": {"name": DRIVING.name, "data": DRIVING.read_bytes()},
                                          "max_frames": 40})
    result = client.wait_job(job, on_progress=events.append, timeout_s=600)
    motion = Motion.from_npz(bytes(result["motion"]))
    assert motion.n_frames == result["frames"] == 40 and motion.fps == pytest.approx(25.0)
    assert motion.expr.shape[1] == len(motion.expr_names) and motion.head_model == "builtin"
    assert result["missing_frames"] == [] and result["median_error_px"] < 4.0
    # d0 opens its mouth within the first 40 frames: the jaw must follow
    assert motion.jaw_pose[:, 0].max() - motion.jaw_pose[:, 0].min() > 0.05
    assert {e.get("stage") for e in events} >= {"landmarks", "tracking"}


def test_a_file_that_is_not_a_video_fails_clearly(client):
    job = client.submit("motion.track", {"video": {"name": "clip.mp4", "data": b"\x00" * 2048}})
    with pytest.raises(JobFailed) as info:
        client.wait_job(job, timeout_s=60)
    assert info.value.code == "bad_file" and "clip.mp4" in info.value.message
    assert client.info()["protocol"] == 1


def test_track_refuses_missing_video_at_submission(client):
    with pytest.raises(ServerError) as info:
        client.submit("motion.track", {"video": {"name": "x.mp4"}})
    assert info.value.code == "bad_request"


def test_an_empty_video_file_is_refused_at_submission_by_name(client):
    with pytest.raises(ServerError) as info:
        client.submit("motion.track", {"video": {"name": "take3.mov", "data": b""}})
    assert info.value.code == "bad_file" and "take3.mov" in info.value.message and "empty" in info.value.message

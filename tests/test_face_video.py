"""Video probing/decoding (PyAV) and per-frame landmarks on the driving videos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from compute_server.errors import JobCancelled, UserError
from compute_server.face import fill_missing, iter_video_frames, probe_video, track_video_landmarks
from compute_server.face.video_landmarks import missing_ranges

DRIVING = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "driving"
D0 = DRIVING / "liveportrait_d0.mp4"
D18 = DRIVING / "liveportrait_d18.mp4"
needs_data = pytest.mark.skipif(not D0.is_file(), reason="shared test data not found")


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, rotation: int | None = None) -> Path:
    """Encode RGB frames (H, W, 3) uint8 as H.264 MP4, optionally with a display rotation."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@needs_data
def test_probe_driving_videos():
    info = probe_video(str(D0))
    assert (info.fps, info.n_frames, info.width, info.height) == (25.0, 78, 512, 512)
    assert info.duration_s == pytest.approx(78 / 25, abs=0.05) and info.rotation_deg == 0 and info.n_frames_exact
    info18 = probe_video(str(D18))
    assert (info18.fps, info18.width, info18.height) == (30.0, 480, 480)
    assert info18.duration_s == pytest.approx(7.2, abs=0.1) and info18.n_frames == pytest.approx(216, abs=2)


@needs_data
def test_iterate_frames_in_order_with_times():
    frames = list(iter_video_frames(str(D0), max_frames=30))
    assert [f.index for f in frames] == list(range(30))
    assert all(f.image.shape == (512, 512, 3) and f.image.dtype == np.uint8 for f in frames)
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(30) / 25.0, atol=1e-6)
    assert np.abs(frames[0].image.astype(int) - frames[29].image.astype(int)).mean() > 1  # real, changing frames
    small = next(iter_video_frames(str(D0), max_side=200))
    assert small.image.shape == (200, 200, 3)
    assert abs(float(small.image.mean()) - float(frames[0].image.mean())) < 3


@pytest.mark.parametrize("rotation,marker_corner", [(-90, "top_right"), (90, "bottom_left"), (180, "bottom_right")])
def test_display_rotation_is_applied(tmp_path, rotation, marker_corner):
    image = np.full((48, 64, 3), 30, np.uint8)
    image[:12, :12] = 255  # bright marker at the top-left of the stored frame
    path = write_video(tmp_path / "rotated.mp4", [image] * 3, rotation=rotation)
    info = probe_video(str(path))
    turned = rotation % 180 != 0
    assert (info.width, info.height) == ((48, 64) if turned else (64, 48))
    frame = next(iter_video_frames(str(path))).image
    assert frame.shape == (info.height, info.width, 3)
    corners = {"top_left": frame[:8, :8], "top_right": frame[:8, -8:], "bottom_left": frame[-8:, :8],
               "bottom_right": frame[-8:, -8:]}
    brightest = max(corners, key=lambda k: corners[k].mean())
    assert brightest == marker_corner


def test_bad_files_raise_bad_file(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mov"
    text.write_text("this is not a video\n" * 100)
    for path in (garbage, text, tmp_path / "missing.mp4"):
        with pytest.raises(UserError) as info:
            probe_video(str(path))
        assert info.value.code == "bad_file" and path.name in info.value.message
    audio_only = tmp_path / "voice.m4a"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for _ in range(5):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(UserError) as info:
        list(iter_video_frames(str(audio_only)))
    assert info.value.code == "bad_file" and "no video stream" in info.value.message


@needs_data
def test_truncated_video_is_reported(tmp_path):
    data = D0.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])  # the index (moov) of this file is at the end
    with pytest.raises(UserError) as info:
        list(iter_video_frames(str(cut)))
    assert info.value.code == "bad_file" and "cut.mp4" in info.value.message


@needs_data
def test_corrupt_video_data_names_the_frame(tmp_path):
    data = D18.read_bytes()  # its index (moov) comes first, so the damage is met while decoding
    third = len(data) // 3
    noise = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data[:third] + noise + data[2 * third:])
    with pytest.raises(UserError) as info:
        list(iter_video_frames(str(damaged)))
    assert info.value.code == "bad_file" and "damaged.mp4" in info.value.message
    assert "corrupt at frame" in info.value.message and str(tmp_path) not in info.value.message


@needs_data
def test_landmarks_on_the_driving_video():
    reports: list[tuple[float, str]] = []
    tracked = track_video_landmarks(str(D0), max_frames=30, progress=lambda f, m: reports.append((f, m)))
    assert tracked.n_frames == 30 and tracked.fps == 25.0 and tracked.frame_size == (512, 512)
    assert tracked.landmarks.shape == (30, 478, 3) and tracked.visibility.shape == (30, 478)
    assert tracked.found.mean() >= 0.9 and tracked.warnings == []
    eyes_y = tracked.landmarks[:, 33, 1]
    mouth_y = tracked.landmarks[:, 13, 1]
    assert np.all(eyes_y[tracked.found] < mouth_y[tracked.found])
    # Frame-to-frame motion of a talking head is small: no jumps between faces.
    centres = tracked.landmarks[tracked.found, :468, :2].mean(axis=1)
    assert np.abs(np.diff(centres, axis=0)).max() < 15
    assert reports[-1][0] == 1.0 and all(0.0 <= f <= 1.0 for f, _ in reports)


@needs_data
def test_frames_without_a_face_are_marked_and_reported(tmp_path):
    frames = [f.image for f in iter_video_frames(str(D0), max_frames=24)]
    for i in (8, 9, 10, 17):
        frames[i] = np.full_like(frames[i], 127)
    path = write_video(tmp_path / "gaps.mp4", frames)
    tracked = track_video_landmarks(str(path), max_side=256)  # tracked small, reported full size
    assert list(np.flatnonzero(~tracked.found)) == [8, 9, 10, 17]
    assert tracked.missing_ranges() == [(8, 10), (17, 17)]
    assert np.isnan(tracked.landmarks[9]).all() and tracked.scores[9] == 0
    assert len(tracked.warnings) == 1 and "4 of 24" in tracked.warnings[0] and "8-10, 17" in tracked.warnings[0]
    direct = track_video_landmarks(str(D0), max_frames=8)
    assert np.median(np.abs(tracked.landmarks[:8, :, :2] - direct.landmarks[:8, :, :2])) < 3.0
    filled = tracked.filled()
    assert np.isfinite(filled).all()
    between = (filled[9] - tracked.landmarks[7]) / (tracked.landmarks[11] - tracked.landmarks[7] + 1e-9)
    assert np.median(between[:, :2]) == pytest.approx(0.5, abs=0.01)


def test_no_face_anywhere_and_cancellation(tmp_path):
    grey = [np.full((96, 128, 3), v, np.uint8) for v in range(60, 80)]
    path = write_video(tmp_path / "wall.mp4", grey)
    with pytest.raises(UserError) as info:
        track_video_landmarks(str(path))
    assert info.value.code == "no_face" and "wall.mp4" in info.value.message

    calls = []

    def check_cancel():
        calls.append(1)
        if len(calls) > 5:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        track_video_landmarks(str(path), check_cancel=check_cancel)
    assert len(calls) == 6


def test_fill_missing_interpolates_in_time_and_holds_the_ends():
    landmarks = np.zeros((6, 2, 3), np.float32)
    landmarks[1] = 10.0
    landmarks[4] = 40.0
    landmarks[[0, 2, 3, 5]] = np.nan
    found = np.array([False, True, False, False, True, False])
    filled = fill_missing(landmarks, found)
    np.testing.assert_allclose(filled[:, 0, 0], [10, 10, 20, 30, 40, 40])
    timed = fill_missing(landmarks, found, times_s=np.array([0.0, 1.0, 1.5, 3.0, 4.0, 5.0]))
    np.testing.assert_allclose(timed[:, 0, 0], [10, 10, 15, 40 - 10, 40, 40])
    assert missing_ranges(found) == [(0, 0), (2, 3), (5, 5)]
    with pytest.raises(ValueError):
        fill_missing(landmarks, np.zeros(6, bool))

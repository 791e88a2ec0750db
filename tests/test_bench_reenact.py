"""The self-reenactment benchmark (bench/reenact*.py): its pure parts on numbers, our SSIM
against scikit-image's on real images, unreadable clips, and one tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.reenact_avatar import driven_params, training_frames
from bench.reenact_clip import crop_camera, crop_matrix, relative_camera
from bench.reenact_protocol import (BIN_KEYS, MOUTH_OPEN_JAW_RAD, FrameScore, bins_of, choose_source, clip_record,
                                    evaluation_frames, head_crop_box, off_axis_deg, run_record, source_cost,
                                    strip_frames, training_stop, yaw_deg)
from bench.reenact_score import head_pair
from shared.camera import Camera, look_at
from shared.motion import Motion

DRIVING = Path(__file__).resolve().parents[2] / "shared" / "data" / "driving"
CLIP = DRIVING / "liveportrait_d0.mp4"


def yaw_rotation(deg: float) -> np.ndarray:
    return np.array([0.0, np.radians(deg), 0.0])


def score(frame=0, yaw=0.0, jaw=0.0, psnr=20.0, ssim=0.8, identity=0.4) -> FrameScore:
    return FrameScore(frame, yaw, jaw, psnr, psnr + 2, ssim, None, 3.0, identity)


# ----------------------------------------------------------------------------- frames

def test_evaluation_frames_stride_source_missing_and_holdout():
    found = np.ones(20, bool)
    found[8] = False
    assert evaluation_frames(found, 4, exclude=0).tolist() == [4, 12, 16]          # 0 is the source, 8 has no face
    assert evaluation_frames(found, 4, exclude=5).tolist() == [0, 4, 12, 16]
    assert evaluation_frames(found, 4, exclude=[0, 12, 13]).tolist() == [4, 16]   # every training frame is left out
    assert training_stop(20, 0.0) == 20 and training_stop(20, 0.2) == 16 and training_stop(3, 0.9) == 1
    assert evaluation_frames(found, 2, exclude=0, holdout=0.2).tolist() == [16, 18]  # only the last 20 %
    with pytest.raises(ValueError):
        training_stop(10, 1.0)


def test_source_choice_first_face_and_best():
    found = np.array([False, True, True, True, True])
    rotation = np.stack([yaw_rotation(y) for y in (0, 30, 4, 2, 1)])
    jaw = np.zeros((5, 3))
    jaw[3, 0] = 0.3                                   # frame 3 opens its mouth (17 degrees)
    expr = np.zeros((5, 4))
    error = np.array([np.nan, 1.0, 1.0, 1.0, 9.0])    # frame 4 tracked badly
    cost = source_cost(rotation, jaw, expr)
    np.testing.assert_allclose(off_axis_deg(rotation), [0, 30, 4, 2, 1], atol=1e-9)
    assert choose_source("0", found, error, cost) == 1          # frame 0 has no face: the next one
    assert choose_source("best", found, error, cost) == 2       # frontal-ish, closed mouth, well tracked
    assert choose_source("best", found, error, cost, stop=2) == 1
    with pytest.raises(ValueError):
        choose_source("4", found, error, cost, stop=3)


def test_training_frames_source_first_and_inside_the_training_part():
    found = np.ones(100, bool)
    found[50:60] = False
    assert training_frames("frame", 7, found, 80) == [7]
    frames = training_frames("frames4", 7, found, 80)
    assert frames[0] == 7 and len(frames) == 4 and len(set(frames)) == 4
    assert all(f < 80 and found[f] for f in frames)
    assert training_frames("frames4", 0, found, 80) == [0, 23, 46, 79]     # spread, not the source's neighbour
    assert training_frames("video", 7, found, 80) == [7]  # the server picks; the avatar's frames replace it
    with pytest.raises(ValueError, match="unknown"):
        training_frames("frames8", 7, found, 80)


def test_a_video_avatars_source_is_its_photo_0():
    from types import SimpleNamespace

    from bench.reenact_avatar import video_source_frame

    avatar = SimpleNamespace(metadata={"sources": [{"name": "my clip.mp4 frame 42"}, {"name": "my clip.mp4 frame 3"}]})
    assert video_source_frame(avatar) == 42


def test_strip_frames_hold_the_largest_yaw_and_widest_mouth():
    frames = np.arange(0, 80, 8)
    yaw = np.zeros(10)
    yaw[3] = -40.0
    jaw = np.zeros(10)
    jaw[7] = 0.4
    chosen = strip_frames(frames, yaw, jaw, count=4)
    assert 24 in chosen and 56 in chosen and len(chosen) == 4 and chosen == sorted(chosen)


# ----------------------------------------------------------------------------- angles and bins

def test_yaw_and_bins():
    rotation = np.stack([yaw_rotation(d) for d in (0, 15, -25, 45)])
    np.testing.assert_allclose(yaw_deg(rotation), [0, 15, -25, 45], atol=1e-9)
    assert bins_of(score(yaw=5)) == ["yaw_0_10", "mouth_closed"]
    assert bins_of(score(yaw=-10)) == ["yaw_10_20", "mouth_closed"]
    assert bins_of(score(yaw=25, jaw=MOUTH_OPEN_JAW_RAD + 0.01)) == ["yaw_20_30", "yaw_over_20", "mouth_open"]
    assert bins_of(score(yaw=-31)) == ["yaw_over_30", "yaw_over_20", "mouth_closed"]


def test_json_layout_and_pooling():
    a = [score(0, 5, 0.0, 20.0, 0.8, 0.4), score(8, 25, 0.3, 16.0, 0.7, None)]
    b = [score(0, 2, 0.0, 24.0, 0.9, 0.6)]
    clips = [clip_record("a", a, create_s=10.0), clip_record("b", b)]
    record = json.loads(json.dumps(run_record(clips, {"a": a, "b": b}, preset="draft")))
    keys = {"frames", "psnr", "ssim", "akd_px", "identity_distance_median", "identity_under_0_5", "bins"}
    assert keys <= set(record["overall"]) and all(keys <= set(c) for c in record["clips"])
    assert set(record["overall"]["bins"]) == set(BIN_KEYS)
    assert all(set(v) == {"frames", "psnr", "ssim"} for v in record["overall"]["bins"].values())
    assert record["clips"][0]["clip"] == "a" and record["clips"][0]["create_s"] == 10.0
    overall = record["overall"]
    assert overall["frames"] == 3 and overall["psnr"] == pytest.approx(20.0)
    assert overall["identity_distance_median"] == pytest.approx(0.5)
    assert overall["identity_under_0_5"] == pytest.approx(1 / 3)   # no face in the render counts as not under
    assert overall["bins"]["yaw_0_10"] == {"frames": 2, "psnr": 22.0, "ssim": pytest.approx(0.85)}
    assert overall["bins"]["yaw_over_20"]["frames"] == 1 and overall["bins"]["yaw_over_30"]["psnr"] is None
    assert overall["bins"]["mouth_open"]["frames"] == 1 and record["preset"] == "draft"


# ----------------------------------------------------------------------------- geometry

def video_camera() -> Camera:
    return Camera(look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0)), 800.0, 800.0, 256.0, 240.0, 512, 480)


def test_crop_box_matrix_and_camera_agree():
    x0, y0, side = head_crop_box(np.array([[100.0, 50.0], [300.0, 350.0]]), scale=1.5)
    assert (x0 + side / 2, y0 + side / 2, side) == (200.0, 200.0, 450.0)
    cam = video_camera()
    matrix = crop_matrix(x0, y0, side, 512)
    cropped = crop_camera(cam, matrix, 512)
    points = np.array([[0.05, -0.02, 0.1], [-0.08, 0.1, 0.0]])
    in_frame = cam.project(points)[:, :2]
    in_crop = cropped.project(points)[:, :2]
    back = (matrix @ np.c_[in_crop, np.ones(2)].T).T[:, :2]
    np.testing.assert_allclose(back, in_frame, atol=1e-9)
    assert (cropped.width, cropped.height) == (512, 512)


def test_relative_camera_follows_the_head_motion():
    """An avatar fitted at the source frame, seen through the relative camera, lands where
    the tracked head lands in the video."""
    from shared.rotations import axis_angle_to_matrix

    def rigid(aa, t):
        h = np.eye(4)
        h[:3, :3], h[:3, 3] = axis_angle_to_matrix(np.asarray(aa, float)), t
        return h

    video = video_camera()
    h_source, h_frame = rigid([0.0, 0.2, 0.0], [0.01, 0.0, 0.0]), rigid([0.1, -0.3, 0.05], [-0.02, 0.01, 0.03])
    avatar_source = Camera(video.world_to_camera @ h_source, 800.0, 800.0, 256.0, 240.0, 512, 480)
    assert np.allclose(relative_camera(avatar_source, h_source, h_source).world_to_camera,
                       avatar_source.world_to_camera)
    points = np.array([[0.05, 0.02, 0.08], [-0.07, -0.1, 0.0]])
    expected = video.project((h_frame[:3, :3] @ points.T).T + h_frame[:3, 3])
    np.testing.assert_allclose(relative_camera(avatar_source, h_source, h_frame).project(points), expected, atol=1e-9)


def test_driven_params_reproduce_the_source_and_add_the_tracked_change():
    motion = Motion.neutral(5, 3)
    motion.expr[2] = [0.5, 0.0, -0.2]
    motion.jaw_pose[2, 0] = 0.2
    fit = {"expr": np.array([[0.1, 0.1, 0.1, 0.1]]), "jaw_pose": np.array([[0.05, 0, 0]]),
           "eyes_pose": np.zeros((1, 6)), "neck_pose": np.array([[0.0, 0.1, 0.0]])}
    params = driven_params(fit, motion, [0, 2], source=0)
    np.testing.assert_allclose(params["expr"][0], fit["expr"][0])               # the source frame: the photo's own
    np.testing.assert_allclose(params["expr"][1], [0.6, 0.1, -0.1, 0.1], atol=1e-6)  # width of the avatar's model
    np.testing.assert_allclose(params["jaw_pose"][1], [0.25, 0, 0], atol=1e-6)
    np.testing.assert_allclose(params["neck_pose"], [[0, 0.1, 0]] * 2)


# ----------------------------------------------------------------------------- masks and metrics

def test_head_pair_union_and_interior():
    crop = np.full((32, 32, 3), 100, np.uint8)
    matte = np.zeros((32, 32))
    matte[4:20, 4:20] = 1.0
    valid = np.ones((32, 32))
    valid[:, 28:] = 0.0                       # outside the frame: neither image counts there
    region = np.ones((32, 32))
    region[18:] = 0.0                         # below the neck cut
    render = np.zeros((32, 32, 4))
    render[10:30, 10:30] = (0.2, 0.4, 0.6, 1.0)
    pair = head_pair(crop, matte, valid, region, render)
    assert pair.real_alpha[4:18, 4:20].all() and not pair.real_alpha[18:].any()
    assert pair.render_alpha[10:18, 10:28].all() and not pair.render_alpha[:, 28:].any()
    union = pair.union
    assert union.sum() == 14 * 16 + 8 * 18 - 8 * 10
    assert pair.interior.sum() == (8 - 4) * (10 - 4)            # the shared square eroded by 2
    np.testing.assert_allclose(pair.real[0, 0], 1.0)           # background is white
    np.testing.assert_allclose(pair.render[12, 12], (0.2, 0.4, 0.6))


def _ssim_pairs():
    import skimage.data
    from scipy import ndimage

    from bench.reenact_clip import read_frames

    astronaut = skimage.data.astronaut()[:256, 128:384].astype(np.float64) / 255.0
    blurred = ndimage.gaussian_filter(astronaut, sigma=(1.2, 1.2, 0))
    frames, _ = read_frames(str(CLIP), [0, 30], {})
    return [(astronaut, blurred), (frames[0][128:384, 128:384] / 255.0, frames[30][128:384, 128:384] / 255.0)]


def test_our_ssim_agrees_with_scikit_image_on_real_images():
    from skimage.metrics import structural_similarity

    from bench.metrics import masked_ssim

    for a, b in _ssim_pairs():
        theirs = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0)
        inside = np.zeros(a.shape[:2], bool)
        inside[5:-5, 5:-5] = True            # scikit-image leaves out the window's half-width at the borders
        ours = masked_ssim(a, b, inside)
        assert abs(ours - theirs) < 1e-3 and theirs < 0.99


# ----------------------------------------------------------------------------- end to end

def test_unreadable_clips_are_reported_and_skipped(tmp_path):
    from bench.reenact import main

    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "notes.txt").write_text("ignored")
    out = tmp_path / "r.json"
    result = main([str(tmp_path), str(tmp_path / "missing.mp4"), "--json", str(out), "--no-cache"])
    assert result["clips"] == [] and [s["clip"] for s in result["skipped"]] == ["broken.mp4"]
    assert "broken.mp4" in result["skipped"][0]["reason"]
    assert json.loads(out.read_text())["overall"]["frames"] == 0


@pytest.mark.slow
def test_tiny_real_run(tmp_path):
    from bench.reenact import main

    result = main([str(CLIP), "--max-frames", "13", "--stride", "6", "--iterations", "4", "--no-cache",
                   "--json", str(tmp_path / "r.json"), "--images", str(tmp_path / "strips")])
    clip = result["clips"][0]
    assert clip["clip"] == "liveportrait_d0" and clip["frames"] == 2 and clip["source_frame"] == 0
    assert 5.0 < clip["psnr"] < 60.0 and 0.0 < clip["ssim"] <= 1.0
    assert (tmp_path / "strips" / "liveportrait_d0.png").exists()

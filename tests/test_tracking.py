"""Portrait fitting and video tracking on real and synthetic landmarks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compute_server.head.model import HeadParams, load_head_model
from compute_server.tracking.portrait_fit import (FitSettings, LandmarkObservations, fit_landmarks,
                                                  fitting_camera_extrinsics)
from compute_server.tracking.video_track import TrackSettings, track_landmarks
from shared.camera import Camera


@pytest.fixture(scope="module")
def model():
    return load_head_model()


def _synthetic_landmarks(model, params: HeadParams, focal=1400.0, size=512) -> np.ndarray:
    """Project the model's landmarks with the fitting camera: (B, 478, 2) pixels."""
    from compute_server.camera_torch import project_points

    with torch.no_grad():
        lm = model(params).landmarks
    b = lm.shape[0]
    w2c = torch.as_tensor(fitting_camera_extrinsics(), dtype=torch.float32).expand(b, 4, 4)
    K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]]).expand(b, 3, 3)
    px, _ = project_points(lm, w2c, K)
    out = np.zeros((b, 478, 2), np.float32)
    out[:, model.landmark_mp_index.numpy()] = px.numpy()
    return out


def test_fit_recovers_pose_jaw_and_expression_from_synthetic_landmarks(model):
    truth = HeadParams.zeros(model, 1)
    truth.rotation = torch.tensor([[0.1, 0.35, -0.05]])
    truth.jaw_pose = torch.tensor([[0.25, 0.0, 0.0]])
    truth.translation = torch.tensor([[0.01, -0.02, 0.1]])
    expr = torch.zeros(1, model.n_expr)
    expr[0, model.expression_names.index("smile_left")] = 0.8
    expr[0, model.expression_names.index("blink_right")] = 1.0
    truth.expr = expr
    lms = _synthetic_landmarks(model, truth)
    obs = LandmarkObservations(lms, np.ones((1, 478), np.float32), np.array([[512, 512]], np.float32), ["synthetic"])
    fit = fit_landmarks(model, obs, settings=FitSettings(rigid_iterations=150, full_iterations=400))
    image = fit.images[0]
    assert image.median_error_px < 0.6
    assert abs(image.jaw_pose[0] - 0.25) < 0.06
    assert image.expr[model.expression_names.index("blink_right")] > 0.7
    assert image.expr[model.expression_names.index("smile_left")] > 0.5
    # the canonical camera sees the head turned by the true rotation: compare view directions
    from shared.rotations import axis_angle_to_matrix

    cam_dir_head = image.camera.camera_to_world[:3, 2]                       # camera forward, head space
    expected = axis_angle_to_matrix(truth.rotation[0].numpy().astype(np.float64)).T @ np.array([0, 0, -1.0])
    assert np.degrees(np.arccos(np.clip(cam_dir_head @ expected, -1, 1))) < 4.0


def test_astronaut_fit_median_error_is_under_3_px_at_512(model):
    import io

    import skimage.data
    from PIL import Image

    from compute_server.face import prepare_portrait
    from compute_server.tracking.portrait_fit import fit_portraits

    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, "PNG")
    portrait = prepare_portrait(buf.getvalue(), "astronaut.png", size=512)
    fit = fit_portraits(model, [portrait])
    assert fit.images[0].median_error_px < 3.0
    errors = fit.images[0].landmark_error_px
    assert np.isfinite(errors[:468]).sum() > 400  # landmarks MediaPipe marks occluded are left out
    # the fitted camera reprojects the fitted mesh onto the photo: the nose tip lands on it
    from compute_server.pipeline.previews import posed_vertices

    v = posed_vertices(model, fit.head_params(0)).numpy()
    nose = fit.images[0].camera.project(v[[1]])[0, :2]
    assert np.linalg.norm(nose - portrait.landmarks[1, :2]) < 6.0


def test_several_photos_share_one_identity(model):
    truth = HeadParams.zeros(model, 3)
    shape = torch.zeros(1, model.n_shape)
    shape[0, :3] = torch.tensor([1.2, -0.8, 0.6])
    truth.shape = shape.expand(3, -1)
    truth.rotation = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, -0.4, 0.1]])
    lms = _synthetic_landmarks(model, truth)
    obs = LandmarkObservations(lms, np.ones((3, 478), np.float32), np.full((3, 2), 512, np.float32), ["a", "b", "c"])
    fit = fit_landmarks(model, obs, settings=FitSettings(rigid_iterations=120, full_iterations=300))
    assert fit.shape.shape == (model.n_shape,)
    assert all(img.median_error_px < 1.0 for img in fit.images)
    assert np.corrcoef(fit.shape[:3], [1.2, -0.8, 0.6])[0, 1] > 0.9


def test_video_tracking_follows_the_jaw_and_fills_missing_frames(model):
    n = 30
    truth = HeadParams.zeros(model, n)
    jaw = 0.3 * np.clip(np.sin(np.linspace(0, np.pi, n)), 0, None)
    truth.jaw_pose = torch.tensor(np.stack([jaw, np.zeros(n), np.zeros(n)], 1), dtype=torch.float32)
    truth.rotation = torch.tensor(np.stack([np.zeros(n), np.linspace(-0.2, 0.2, n), np.zeros(n)], 1), dtype=torch.float32)
    lms = _synthetic_landmarks(model, truth)
    found = np.ones(n, bool)
    found[12:15] = False
    lms[~found] = np.nan
    settings = TrackSettings(keyframes=5, rigid_iterations=40, full_iterations=150)
    result = track_landmarks(model, lms, found, (512, 512), 25.0, settings=settings)
    motion = result.motion
    assert motion.n_frames == n and result.missing_frames == [12, 13, 14]
    assert not motion.frame_valid[13] and motion.frame_valid[0]
    assert np.corrcoef(motion.jaw_pose[:, 0], jaw)[0, 1] > 0.95
    assert abs(motion.jaw_pose[13, 0] - jaw[13]) < 0.08          # interpolated through the gap
    assert np.corrcoef(motion.rotation[:, 1], np.linspace(-0.2, 0.2, n))[0, 1] > 0.98
    assert np.nanmedian(result.frame_error_px) < 1.0
    assert motion.fps == 25.0 and motion.expr_names == model.expression_names


def test_tracking_a_video_without_faces_is_a_clear_error(model):
    from compute_server.errors import UserError

    with pytest.raises(UserError) as info:
        track_landmarks(model, np.full((5, 478, 2), np.nan, np.float32), np.zeros(5, bool), (64, 64), 25.0)
    assert info.value.code == "no_face"


def test_pose_landmarks_equals_the_full_forward(model):
    g = torch.Generator().manual_seed(0)
    params = HeadParams.zeros(model, 4)
    for key in ("shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation"):
        setattr(params, key, torch.randn(getattr(params, key).shape, generator=g) * 0.3)
    full = model(params)
    landmarks, joints = model.pose_landmarks(params)
    torch.testing.assert_close(landmarks, full.landmarks, atol=1e-6, rtol=0)
    torch.testing.assert_close(joints, full.joints, atol=1e-6, rtol=0)

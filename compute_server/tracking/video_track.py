"""Track a video: per-frame head parameters from per-frame landmarks (VHAP-style).

Stages, after GAF appendix B.1 / VHAP, adapted to a landmark-only energy:
1. identity: one shape and one focal length fitted jointly on keyframes spread over the
   clip (the same code as multi-photo portrait fitting);
2. per-frame pose: a closed-form PnP start for every frame with the fixed identity;
3. joint refinement: all frames of a window optimized together, landmark energy plus
   VHAP's temporal smoothness terms (weights from GAF B.1), so jaw and expression follow
   the mouth while pose does not jitter. Long clips go window by window with overlap.

Frames where no face was found contribute no data term; the smoothness terms carry
their values across the gap (interpolation), and they are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from shared.camera import Camera
from shared.motion import Motion

from ..errors import UserError
from ..head.model import HeadModel, HeadParams
from .energies import l2_prior, range_penalty, robust_pixel_error, temporal_smoothness
from .landmark_sets import rigid_landmark_indices
from .portrait_fit import (FitSettings, LandmarkObservations, _intrinsics, _observations, fit_landmarks,
                           fitting_camera_extrinsics)
from .pose_init import solve_pnp_pose


@dataclass
class TrackSettings:
    """Schedule and weights of the tracker; saved in the motion's report."""

    keyframes: int = 10
    identity: FitSettings = field(default_factory=lambda: FitSettings(rigid_iterations=80, full_iterations=200))
    rigid_iterations: int = 60
    full_iterations: int = 200
    lr: float = 0.01
    window: int = 200
    overlap: int = 20
    # VHAP temporal weights as revised in GAF appendix B.1
    smooth_translation: float = 3e4
    smooth_rotation: float = 3e3
    smooth_jaw: float = 4.0
    smooth_eyes: float = 1.0
    smooth_expr: float = 0.5


@dataclass
class TrackResult:
    motion: Motion
    camera: Camera                  # the video camera (canonical fitting camera, shared focal)
    missing_frames: list[int]       # frames where no face was found (values interpolated)
    frame_error_px: np.ndarray      # (T,) median landmark error per frame (NaN for missing frames)
    translation_offset: np.ndarray  # (3,) removed from every frame so the motion plays in place


def _keyframe_indices(found: np.ndarray, count: int) -> np.ndarray:
    valid = np.flatnonzero(found)
    if valid.size == 0:
        raise UserError("no_face", "no face was found in any frame of the video")
    picks = np.linspace(0, valid.size - 1, num=min(count, valid.size)).round().astype(int)
    return valid[np.unique(picks)]


def _interpolate_rows(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Linear interpolation over time of (T, D) rows where ``known`` is False (edges hold)."""
    out = values.copy()
    t_known = np.flatnonzero(known)
    if t_known.size == 0 or t_known.size == len(values):
        return out
    t_all = np.arange(len(values))
    for d in range(values.shape[1]):
        out[:, d] = np.interp(t_all, t_known, values[t_known, d])
    return out


def track_landmarks(model: HeadModel, landmarks_px: np.ndarray, found: np.ndarray, image_size: tuple[int, int],
                    fps: float, *, settings: TrackSettings | None = None,
                    progress: Callable[[float, str], None] | None = None) -> TrackResult:
    """Head parameters for every frame.

    landmarks_px: (T, 478, 2) per-frame MediaPipe landmarks in frame pixels (any values
    where ``found`` is False); found: (T,) bool; image_size: (width, height); fps of the clip.
    progress(fraction, message) may raise to cancel.
    """
    settings = settings or TrackSettings()
    landmarks_px = np.asarray(landmarks_px, dtype=np.float32)[..., :2]
    found = np.asarray(found, dtype=bool)
    n_frames = landmarks_px.shape[0]
    if n_frames == 0:
        raise UserError("bad_file", "the video has no frames")
    report = progress or (lambda f, m: None)
    width, height = image_size

    # 1. identity and focal from keyframes
    keys = _keyframe_indices(found, settings.keyframes)
    key_obs = LandmarkObservations(landmarks_px[keys], np.ones((len(keys), landmarks_px.shape[1]), np.float32),
                                   np.tile(np.array([[width, height]], np.float32), (len(keys), 1)),
                                   [f"frame {k}" for k in keys])
    identity = fit_landmarks(model, key_obs, settings=settings.identity, shared_focal=True,
                             progress=lambda f, m: report(0.25 * f, f"identity: {m}"))
    focal = identity.images[0].camera.fx
    shape = identity.shape

    # 2. + 3. windows over the clip
    filled = _interpolate_rows(landmarks_px.reshape(n_frames, -1), found).reshape(landmarks_px.shape)
    results = {k: np.zeros((n_frames, w), np.float32) for k, w in
               (("expr", model.n_expr), ("rotation", 3), ("jaw_pose", 3), ("eyes_pose", 6), ("translation", 3))}
    frame_error = np.full(n_frames, np.nan, np.float32)
    step = max(1, settings.window - settings.overlap)
    starts = list(range(0, max(1, n_frames - settings.overlap), step))
    weights_total = np.zeros(n_frames, np.float32)
    for wi, start in enumerate(starts):
        stop = min(n_frames, start + settings.window)
        window = _track_window(model, filled[start:stop], found[start:stop], (width, height), focal, shape, settings,
                               lambda f, m, wi=wi: report(0.25 + 0.75 * (wi + f) / len(starts), m))
        # linear cross-fade over the overlap so windows join without a step
        ramp = np.ones(stop - start, np.float32)
        if start > 0:
            n_in = min(settings.overlap, stop - start)
            ramp[:n_in] = np.linspace(0, 1, n_in + 2)[1:-1]
        for key in results:
            results[key][start:stop] += ramp[:, None] * window[key]
        weights_total[start:stop] += ramp
        err = window["error"]
        frame_error[start:stop] = np.where(np.isnan(frame_error[start:stop]), err, frame_error[start:stop])
        if stop >= n_frames:
            break
    for key in results:
        results[key] /= np.maximum(weights_total, 1e-6)[:, None]
    frame_error[~found] = np.nan

    offset = np.median(results["translation"][found], axis=0)
    motion = Motion(fps=fps, expr=results["expr"], rotation=results["rotation"],
                    neck_pose=np.zeros((n_frames, 3), np.float32), jaw_pose=results["jaw_pose"],
                    eyes_pose=results["eyes_pose"], translation=results["translation"] - offset,
                    shape=shape, frame_valid=found, expr_names=list(model.expression_names), head_model=model.name)
    camera = Camera(fitting_camera_extrinsics(), focal, focal, width / 2, height / 2, int(width), int(height))
    report(1.0, "tracking done")
    return TrackResult(motion=motion, camera=camera, missing_frames=np.flatnonzero(~found).tolist(),
                       frame_error_px=frame_error, translation_offset=offset.astype(np.float32))


def _track_window(model, landmarks_px, found, image_size, focal, shape, settings: TrackSettings, report) -> dict:
    """Optimize all frames of one window together; returns per-frame arrays and errors."""
    from ..camera_torch import project_points

    device = model.faces.device
    n = landmarks_px.shape[0]
    width, height = image_size
    obs = LandmarkObservations(landmarks_px, found[:, None].astype(np.float32) * np.ones(landmarks_px.shape[1], np.float32),
                               np.tile(np.array([[width, height]], np.float32), (n, 1)), [""] * n)
    obs_px, w_mesh, w_iris = _observations(model, obs, device)
    sizes = torch.as_tensor(obs.image_sizes, device=device)
    K = _intrinsics(torch.full((n,), float(np.log(focal)), device=device), sizes)
    w2c = torch.as_tensor(fitting_camera_extrinsics(), dtype=torch.float32, device=device).expand(n, 4, 4)
    delta_px = settings.identity.huber_delta_px_at_512 * max(width, height) / 512.0
    shape_t = torch.as_tensor(shape, dtype=torch.float32, device=device)[None].expand(n, -1)

    with torch.no_grad():
        rest = model(HeadParams(**{**HeadParams.zeros(model, 1, device=device).__dict__, "shape": shape_t[:1]}))
    rigid = np.isin(model.landmark_mp_index.cpu().numpy(), rigid_landmark_indices())
    rest_lmk = rest.landmarks[0].cpu().numpy()
    rot0 = np.zeros((n, 3))
    trans0 = np.zeros((n, 3))
    for t in range(n):
        r, tr, _ = solve_pnp_pose(rest_lmk[rigid], obs_px[t, rigid].cpu().numpy(), width=width, height=height,
                                  camera_world_to_camera=fitting_camera_extrinsics(),
                                  root_joint=rest.joints[0, 0].cpu().numpy(), focal=focal)
        rot0[t], trans0[t] = r, tr
    P = lambda a: torch.nn.Parameter(torch.as_tensor(a, dtype=torch.float32, device=device))  # noqa: E731
    rotation, translation = P(rot0), P(trans0)
    expr, jaw, eyes = P(np.zeros((n, model.n_expr))), P(np.zeros((n, 3))), P(np.zeros((n, 6)))
    named = bool(model.n_expr) and not model.expression_names[0].startswith("expr_")
    fs = settings.identity
    rigid_w = w_mesh * torch.as_tensor(rigid, dtype=torch.float32, device=device)
    total = settings.rigid_iterations + settings.full_iterations

    def energy(full: bool):
        params = HeadParams(shape=shape_t, expr=expr, rotation=rotation, neck_pose=torch.zeros_like(rotation),
                            jaw_pose=jaw, eyes_pose=eyes, translation=translation)
        px, _ = project_points(model.pose_landmarks(params)[0], w2c, K)
        e = robust_pixel_error(px, obs_px, w_mesh if full else rigid_w, delta_px)
        e = e + settings.smooth_translation * temporal_smoothness(translation)
        e = e + settings.smooth_rotation * temporal_smoothness(rotation)
        if full:
            e = e + fs.iris_weight * robust_pixel_error(px, obs_px, w_iris, delta_px)
            e = e + fs.expr_prior * l2_prior(expr) + fs.jaw_prior * l2_prior(jaw[:, 1:]) + fs.eyes_prior * l2_prior(eyes)
            if named:
                e = e + range_penalty(expr, *fs.expr_range)
            e = e + range_penalty(jaw[:, :1], *fs.jaw_open_range_rad)
            e = e + settings.smooth_jaw * temporal_smoothness(jaw) + settings.smooth_eyes * temporal_smoothness(eyes)
            e = e + settings.smooth_expr * temporal_smoothness(expr)
        return e, px

    opt = torch.optim.Adam([rotation, translation], lr=settings.lr)
    for it in range(settings.rigid_iterations):
        opt.zero_grad(set_to_none=True)
        energy(False)[0].backward()
        opt.step()
        if it % 20 == 0:
            report(it / total, "head pose")
    opt = torch.optim.Adam([rotation, translation, expr, jaw, eyes], lr=settings.lr)
    for it in range(settings.full_iterations):
        opt.zero_grad(set_to_none=True)
        energy(True)[0].backward()
        opt.step()
        if it % 20 == 0:
            report((settings.rigid_iterations + it) / total, "expression")
    with torch.no_grad():
        _, px = energy(True)
        err = torch.linalg.norm(px - obs_px, dim=-1)
        err = torch.where(w_mesh > 0, err, torch.full_like(err, float("nan")))
        frame_err = torch.nanmedian(err, dim=1).values.cpu().numpy()
    grab = lambda p: p.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    return {"expr": grab(expr), "rotation": grab(rotation), "jaw_pose": grab(jaw), "eyes_pose": grab(eyes),
            "translation": grab(translation), "error": frame_err}

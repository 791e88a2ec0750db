"""Fit the head model to one or more portraits of the same person from their landmarks.

Differentiable projection of the model's landmarks, compared with MediaPipe's 2-D
landmarks in the aligned crop, with priors on every coefficient. Several photos share
one identity (``shape``); each photo has its own expression, jaw, eyes, head pose and
focal length.

The result is canonical: the head stays at the origin in its rest orientation and each
photo's head pose is folded into its camera (``ImageFit.camera``). That is what the
avatar optimizer and Blender want: the avatar sits still at the origin and the portrait
camera is a camera preset like any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from shared.camera import Camera, look_at

from ..errors import UserError
from ..head.model import HeadModel, HeadParams
from .energies import l2_prior, range_penalty, robust_pixel_error
from .landmark_sets import mediapipe_landmark_weights, rigid_landmark_indices
from .pose_init import solve_pnp_pose

if TYPE_CHECKING:  # the face package's record; only its image/landmarks/name are read here
    from ..face import PreparedPortrait

CAMERA_DISTANCE_M = 1.0  # where the fitting camera starts; translation and focal adapt


@dataclass
class FitSettings:
    """Optimization schedule and prior weights. Saved with every avatar."""

    rigid_iterations: int = 120
    full_iterations: int = 300
    lr_rigid: float = 0.02
    lr_full: float = 0.01
    huber_delta_px_at_512: float = 2.0
    shape_prior: float = 2e-3
    expr_prior: float = 5e-4
    jaw_prior: float = 1e-2
    eyes_prior: float = 1e-2
    neck_prior: float = 1e-1
    iris_weight: float = 0.5
    focal_prior: float = 1e-2          # on log(focal / initial focal)
    expr_range: tuple[float, float] = (-0.5, 1.5)   # only for named (built-in) components
    jaw_open_range_rad: tuple[float, float] = (-0.05, 0.6)


@dataclass
class ImageFit:
    """One portrait's fitted non-identity parameters and camera (canonical head)."""

    name: str
    camera: Camera
    expr: np.ndarray          # (E,)
    jaw_pose: np.ndarray      # (3,)
    neck_pose: np.ndarray     # (3,)
    eyes_pose: np.ndarray     # (6,)
    landmark_error_px: np.ndarray   # (L,) per model landmark, NaN where the landmark was not used
    landmark_mp_index: np.ndarray   # (L,) which MediaPipe landmark each entry is

    @property
    def median_error_px(self) -> float:
        used = self.landmark_error_px[np.isfinite(self.landmark_error_px)]
        return float(np.median(used)) if used.size else float("nan")


@dataclass
class PortraitFit:
    """Shared identity plus one ImageFit per input photo."""

    head_model: dict
    shape: np.ndarray         # (S,)
    images: list[ImageFit]
    settings: FitSettings = field(default_factory=FitSettings)

    def head_params(self, index: int = 0) -> dict[str, np.ndarray]:
        """Canonical head parameters of photo ``index`` (rotation and translation are zero)."""
        img = self.images[index]
        return {"shape": self.shape, "expr": img.expr, "rotation": np.zeros(3, np.float32),
                "neck_pose": img.neck_pose, "jaw_pose": img.jaw_pose, "eyes_pose": img.eyes_pose,
                "translation": np.zeros(3, np.float32)}

    def summary(self) -> dict:
        return {"head_model": self.head_model.get("name", ""),
                "median_landmark_error_px": [round(i.median_error_px, 3) for i in self.images],
                "focal_px": [round(i.camera.fx, 2) for i in self.images]}


def fitting_camera_extrinsics() -> np.ndarray:
    """The fixed camera the fit starts from: on +Z at CAMERA_DISTANCE_M, looking at the origin."""
    return look_at((0.0, 0.0, CAMERA_DISTANCE_M), (0.0, 0.0, 0.0))


@dataclass
class LandmarkObservations:
    """2-D MediaPipe landmarks of B images, the input of every fit.

    landmarks_px: (B, 478, 2) pixels (pixel centres at +0.5); visible: (B, 478) weights in
    [0, 1] (0 = missing); image_sizes: (B, 2) width, height; names: for messages.
    """

    landmarks_px: np.ndarray
    visible: np.ndarray
    image_sizes: np.ndarray
    names: list[str]

    @classmethod
    def from_portraits(cls, portraits: Sequence[PreparedPortrait]) -> "LandmarkObservations":
        lms = np.stack([np.asarray(p.landmarks, dtype=np.float32)[:, :2] for p in portraits])
        vis = np.stack([np.asarray(getattr(p, "landmarks_visible", np.ones(len(p.landmarks))), dtype=np.float32)
                        for p in portraits])
        sizes = np.array([[p.image.shape[1], p.image.shape[0]] for p in portraits], dtype=np.float32)
        return cls(lms, vis, sizes, [p.name for p in portraits])

    def __len__(self) -> int:
        return int(self.landmarks_px.shape[0])


def _observations(model: HeadModel, observations: LandmarkObservations, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Observed landmarks per model landmark: pixels (B, L, 2), mesh weights (B, L), iris weights (B, L)."""
    mp_index = model.landmark_mp_index.cpu().numpy()
    if mp_index.size == 0:
        raise UserError("bad_model", f"head model '{model.name}' has no MediaPipe landmark embedding, so it cannot be "
                        "fitted to photos; configure its mediapipe_landmark_embedding.npz")
    base_weights = mediapipe_landmark_weights()[mp_index]
    vis = observations.visible[:, mp_index]
    obs = observations.landmarks_px[:, mp_index]
    to_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    return to_t(obs), to_t(base_weights[None] * vis), to_t((mp_index >= 468)[None].astype(np.float32) * vis)


class _FitVariables(torch.nn.Module):
    """Everything the fit optimizes, batched over B photos with one shared shape."""

    def __init__(self, model: HeadModel, batch: int, focal_init: torch.Tensor, rot_init: torch.Tensor,
                 trans_init: torch.Tensor):
        super().__init__()
        dev = focal_init.device
        z = lambda *s: torch.nn.Parameter(torch.zeros(*s, device=dev))  # noqa: E731
        self.shape = z(1, model.n_shape)
        self.expr = z(batch, model.n_expr)
        self.jaw_pose = z(batch, 3)
        self.neck_pose = z(batch, 3)
        self.eyes_pose = z(batch, 6)
        self.rotation = torch.nn.Parameter(rot_init.clone())
        self.translation = torch.nn.Parameter(trans_init.clone())
        self.log_focal = torch.nn.Parameter(torch.log(focal_init.clone()))
        self.register_buffer("log_focal_init", torch.log(focal_init.clone()))

    def head_params(self) -> HeadParams:
        b = self.expr.shape[0]
        return HeadParams(shape=self.shape.expand(b, -1), expr=self.expr, rotation=self.rotation,
                          neck_pose=self.neck_pose, jaw_pose=self.jaw_pose, eyes_pose=self.eyes_pose,
                          translation=self.translation)


def _intrinsics(log_focal: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(B,) log focal, (B, 2) image sizes -> (B, 3, 3) K with the principal point at the centre."""
    f = torch.exp(log_focal)
    K = torch.zeros(log_focal.shape[0], 3, 3, device=log_focal.device)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = sizes[:, 0] / 2
    K[:, 1, 2] = sizes[:, 1] / 2
    K[:, 2, 2] = 1.0
    return K


def fit_portraits(model: HeadModel, portraits: Sequence[PreparedPortrait], *, settings: FitSettings | None = None,
                  progress: Callable[[float, str], None] | None = None) -> PortraitFit:
    """Fit ``model`` to one or more prepared portraits of one person.

    progress(fraction, message) is called every few iterations (it may raise to cancel).
    """
    if not portraits:
        raise UserError("bad_request", "fitting needs at least one portrait")
    return fit_landmarks(model, LandmarkObservations.from_portraits(portraits), settings=settings, progress=progress)


def fit_landmarks(model: HeadModel, observations: LandmarkObservations, *, settings: FitSettings | None = None,
                  progress: Callable[[float, str], None] | None = None, shared_focal: bool = False) -> PortraitFit:
    """Fit one shared identity and per-image expression, pose and focal to B images' landmarks.

    shared_focal: one focal length for all images (frames of one video).
    """
    from ..camera_torch import project_points

    settings = settings or FitSettings()
    device = model.faces.device
    batch = len(observations)
    obs_px, w_mesh, w_iris = _observations(model, observations, device)
    sizes = torch.as_tensor(observations.image_sizes, dtype=torch.float32, device=device)
    delta_px = settings.huber_delta_px_at_512 * float(sizes.max()) / 512.0

    w2c0 = torch.as_tensor(fitting_camera_extrinsics(), dtype=torch.float32, device=device)
    viewmats = w2c0.expand(batch, 4, 4)

    # Initial pose and focal from PnP on the rest-pose model's rigid landmarks.
    with torch.no_grad():
        rest = model(HeadParams.zeros(model, 1, device=device))
        rest_lmk = rest.landmarks[0].cpu().numpy()
    rigid_mask = np.isin(model.landmark_mp_index.cpu().numpy(), rigid_landmark_indices())
    rot0, trans0, focal0 = [], [], []
    for i in range(batch):
        r, t, f = solve_pnp_pose(rest_lmk[rigid_mask], obs_px[i, rigid_mask].cpu().numpy(),
                                 width=int(sizes[i, 0]), height=int(sizes[i, 1]),
                                 camera_world_to_camera=fitting_camera_extrinsics(),
                                 root_joint=rest.joints[0, 0].cpu().numpy())
        rot0.append(r), trans0.append(t), focal0.append(f)
    if shared_focal:
        focal0 = [float(np.median(focal0))] * batch
    variables = _FitVariables(model, batch, torch.tensor(focal0, dtype=torch.float32, device=device),
                              torch.tensor(np.stack(rot0), dtype=torch.float32, device=device),
                              torch.tensor(np.stack(trans0), dtype=torch.float32, device=device))
    rigid_w = w_mesh * torch.as_tensor(rigid_mask, dtype=torch.float32, device=device)
    named = not model.expression_names[0].startswith("expr_") if model.n_expr else False
    total_iters = settings.rigid_iterations + settings.full_iterations

    def log_focal() -> torch.Tensor:
        return variables.log_focal.mean().expand(batch) if shared_focal else variables.log_focal

    def energy(stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        landmarks, _ = model.pose_landmarks(variables.head_params())
        K = _intrinsics(log_focal(), sizes)
        px, _ = project_points(landmarks, viewmats, K)
        if stage == "rigid":
            e = robust_pixel_error(px, obs_px, rigid_w, delta_px)
        else:
            e = robust_pixel_error(px, obs_px, w_mesh, delta_px)
            e = e + settings.iris_weight * robust_pixel_error(px, obs_px, w_iris, delta_px)
            e = e + settings.shape_prior * l2_prior(variables.shape)
            e = e + settings.expr_prior * l2_prior(variables.expr)
            if named:
                e = e + range_penalty(variables.expr, *settings.expr_range)
            e = e + settings.jaw_prior * l2_prior(variables.jaw_pose[:, 1:])
            e = e + range_penalty(variables.jaw_pose[:, :1], *settings.jaw_open_range_rad)
            e = e + settings.eyes_prior * l2_prior(variables.eyes_pose)
            e = e + settings.neck_prior * l2_prior(variables.neck_pose)
        e = e + settings.focal_prior * ((variables.log_focal - variables.log_focal_init) ** 2).mean()
        return e, px

    rigid_params = [variables.rotation, variables.translation, variables.log_focal]
    opt = torch.optim.Adam(rigid_params, lr=settings.lr_rigid)
    step = 0
    for it in range(settings.rigid_iterations):
        opt.zero_grad(set_to_none=True)
        e, _ = energy("rigid")
        e.backward()
        opt.step()
        step += 1
        if progress and it % 20 == 0:
            progress(step / total_iters, "head pose")
    opt = torch.optim.Adam(variables.parameters(), lr=settings.lr_full)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.full_iterations, eta_min=settings.lr_full * 0.05)
    for it in range(settings.full_iterations):
        opt.zero_grad(set_to_none=True)
        e, _ = energy("full")
        e.backward()
        opt.step()
        sched.step()
        step += 1
        if progress and it % 20 == 0:
            progress(step / total_iters, "shape and expression")
    if shared_focal:
        with torch.no_grad():
            variables.log_focal.copy_(log_focal())
    return _canonical_result(model, observations.names, variables, sizes, obs_px, w_mesh, w_iris, settings)


@torch.no_grad()
def _canonical_result(model, names, variables, sizes, obs_px, w_mesh, w_iris, settings) -> PortraitFit:
    from ..camera_torch import project_points
    from shared.rotations import axis_angle_to_matrix

    batch = len(names)
    device = obs_px.device
    w2c0 = fitting_camera_extrinsics()
    params = variables.head_params()
    landmarks, _ = model.pose_landmarks(params)
    K = _intrinsics(variables.log_focal, sizes)
    px, _ = project_points(landmarks, torch.as_tensor(w2c0, dtype=torch.float32, device=device).expand(batch, 4, 4), K)
    err = torch.linalg.norm(px - obs_px, dim=-1).cpu().numpy()
    used = ((w_mesh + w_iris) > 0).cpu().numpy()
    err = np.where(used, err, np.nan)

    canonical = HeadParams(**{**{k: getattr(params, k) for k in ("shape", "expr", "neck_pose", "jaw_pose", "eyes_pose")},
                              "rotation": torch.zeros_like(params.rotation),
                              "translation": torch.zeros_like(params.translation)})
    root = model(canonical).joints[:, 0].cpu().numpy().astype(np.float64)  # (B, 3), unmoved by its own rotation
    rot = axis_angle_to_matrix(variables.rotation.cpu().numpy().astype(np.float64))
    trans = variables.translation.cpu().numpy().astype(np.float64)
    images = []
    for i, name in enumerate(names):
        head_to_world = np.eye(4)
        head_to_world[:3, :3] = rot[i]
        head_to_world[:3, 3] = root[i] - rot[i] @ root[i] + trans[i]
        w2c = w2c0 @ head_to_world
        f = float(torch.exp(variables.log_focal[i]))
        cam = Camera(w2c, f, f, float(sizes[i, 0]) / 2, float(sizes[i, 1]) / 2, int(sizes[i, 0]), int(sizes[i, 1]),
                     near=0.01, far=100.0)
        images.append(ImageFit(
            name=name, camera=cam,
            expr=variables.expr[i].cpu().numpy().copy(), jaw_pose=variables.jaw_pose[i].cpu().numpy().copy(),
            neck_pose=variables.neck_pose[i].cpu().numpy().copy(), eyes_pose=variables.eyes_pose[i].cpu().numpy().copy(),
            landmark_error_px=err[i].astype(np.float32), landmark_mp_index=model.landmark_mp_index.cpu().numpy()))
    return PortraitFit(head_model=model.describe(), shape=variables.shape[0].cpu().numpy().copy(), images=images,
                       settings=settings)


def focal_to_fov_deg(focal_px: float, size_px: float) -> float:
    return math.degrees(2 * math.atan(0.5 * size_px / focal_px))

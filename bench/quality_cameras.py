"""Camera math of the ground-truth quality benchmark (pure numpy, no server, no bpy).

The avatar is made from one render of the head scan, seen by the input camera C0 (known,
in scan space: the glTF's own axes, which are head space's axes, in scan units). The
pipeline fits its own head model and returns, in the avatar's head space (metres), the
camera A0 of that same image. To compare a held-out ground-truth view Ck with the avatar,
the avatar must be rendered from the matching camera Ak. If the avatar were the scan
moved by a similarity T (x_avatar = s R x_scan + t), then

    Ak = [R_k R^T | s t_k - R_k R^T t]       (world_to_camera, avatar space)

sees the avatar exactly as Ck sees the scan (camera-space coordinates scaled by s, so
the same pixels). Two estimates of T are used (see ``bench/quality.py``):

- from the input cameras: T = A0^-1 (s C0), i.e. Ak = (Ck C0^-1, translation scaled by s)
  A0 -- the same relative camera motion expressed in avatar units, with s the ratio of
  the distances from each input camera to a corresponding landmark (the nose tip);
- from the geometry: the same T refined by ICP of the fitted mesh onto the scan
  (``bench/quality_align.py``).

Also here: the held-out view set, yaw buckets for the tables, and the planes and depth
back-projection that restrict the evaluation to the head above the neck cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shared.camera import Camera, orbit_camera

# |yaw| buckets of the tables, degrees (inclusive ranges).
YAW_BUCKETS = ((0.0, 0.0, "0"), (15.0, 30.0, "15-30"), (45.0, 60.0, "45-60"), (75.0, 90.0, "75-90"))


@dataclass(frozen=True)
class Similarity:
    """x_target = scale * rotation @ x_source + translation.

    scale: float > 0. rotation: (3, 3) proper rotation. translation: (3,).
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def __post_init__(self) -> None:
        rot = np.asarray(self.rotation, dtype=np.float64)
        if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6) or np.linalg.det(rot) < 0:
            raise ValueError("Similarity.rotation must be a proper 3x3 rotation")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"Similarity.scale must be positive, got {self.scale}")
        object.__setattr__(self, "rotation", rot)
        object.__setattr__(self, "translation", np.asarray(self.translation, dtype=np.float64).reshape(3))

    @classmethod
    def identity(cls) -> "Similarity":
        return cls(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) source points -> (N, 3) target points."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    def inverse(self) -> "Similarity":
        inv_rot = self.rotation.T
        return Similarity(1.0 / self.scale, inv_rot, -(inv_rot @ self.translation) / self.scale)

    def then(self, other: "Similarity") -> "Similarity":
        """The similarity that applies ``self`` first and ``other`` second."""
        return Similarity(other.scale * self.scale, other.rotation @ self.rotation,
                          other.scale * other.rotation @ self.translation + other.translation)

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m


def similarity_from_input_cameras(scan_input: Camera, avatar_input: Camera, scale: float) -> Similarity:
    """Scan -> avatar similarity under which ``avatar_input`` (A0) sees the avatar as
    ``scan_input`` (C0) sees the scan, with ``scale`` avatar units per scan unit:
    T = A0^-1 (s C0), so that A0 T(x) = s C0 x for every scan point x."""
    rot_a, t_a = avatar_input.world_to_camera[:3, :3], avatar_input.world_to_camera[:3, 3]
    rot_c, t_c = scan_input.world_to_camera[:3, :3], scan_input.world_to_camera[:3, 3]
    return Similarity(scale, rot_a.T @ rot_c, rot_a.T @ (scale * t_c - t_a))


def camera_through_similarity(scan_camera: Camera, scan_to_avatar: Similarity,
                              intrinsics: Camera | None = None) -> Camera:
    """The avatar-space camera that sees T(scan) exactly as ``scan_camera`` sees the scan.

    Camera-space coordinates come out multiplied by T's scale, so projections (pixels)
    are identical; near/far are scaled with them. ``intrinsics``: take fx, fy, cx, cy,
    width and height from this camera instead (e.g. the fitted input camera's focal length).
    """
    rot_k, t_k = scan_camera.world_to_camera[:3, :3], scan_camera.world_to_camera[:3, 3]
    s, rot, t = scan_to_avatar.scale, scan_to_avatar.rotation, scan_to_avatar.translation
    w2c = np.eye(4)
    w2c[:3, :3] = rot_k @ rot.T
    w2c[:3, 3] = s * t_k - rot_k @ rot.T @ t
    src = intrinsics or scan_camera
    return Camera(w2c, src.fx, src.fy, src.cx, src.cy, src.width, src.height, scan_camera.near * s,
                  scan_camera.far * s)


def relative_avatar_camera(scan_camera: Camera, scan_input: Camera, avatar_input: Camera, scale: float) -> Camera:
    """Ak = (Ck C0^-1 with its translation scaled by ``scale``) A0, with A0's intrinsics.

    The held-out camera moves relative to the input camera exactly as in the scan's
    world; only the length of that motion is converted to avatar units.
    """
    relative = scan_camera.world_to_camera @ np.linalg.inv(scan_input.world_to_camera)
    relative[:3, 3] *= scale
    return Camera(relative @ avatar_input.world_to_camera, avatar_input.fx, avatar_input.fy, avatar_input.cx,
                  avatar_input.cy, avatar_input.width, avatar_input.height, scan_camera.near * scale,
                  scan_camera.far * scale)


def distance_ratio_scale(scan_input: Camera, scan_landmark: np.ndarray, avatar_input: Camera,
                         avatar_landmark: np.ndarray) -> float:
    """Avatar units per scan unit from one corresponding landmark (3,) in each space:
    |A0 centre - landmark_avatar| / |C0 centre - landmark_scan|."""
    return float(np.linalg.norm(avatar_input.position - np.asarray(avatar_landmark))
                 / np.linalg.norm(scan_input.position - np.asarray(scan_landmark)))


@dataclass(frozen=True)
class HeldOutView:
    """One ground-truth view: yaw (+ = camera towards the subject's left) and pitch (+ = from
    above) in degrees around the scan's head centre, and its camera in scan space."""

    yaw_deg: float
    pitch_deg: float
    camera: Camera

    @property
    def name(self) -> str:
        return f"yaw{self.yaw_deg:+04.0f}_pitch{self.pitch_deg:+03.0f}"


def held_out_views(centre: np.ndarray, distance: float, *, yaws_deg=(0, -15, 15, -30, 30, -45, 45, -60, 60, -75, 75,
                                                                     -90, 90),
                   pitches_deg=(0, 20, -20), size: int = 512, fov_y_deg: float = 25.0) -> list[HeldOutView]:
    """Cameras on a sphere of ``distance`` around ``centre`` (3,), scan units; the first
    view (yaw 0, pitch 0) is the input camera C0."""
    views = []
    for pitch in pitches_deg:
        for yaw in yaws_deg:
            cam = orbit_camera(float(yaw), float(pitch), distance, target=centre, width=size, height=size,
                               fov_y_deg=fov_y_deg, near=0.05 * distance, far=10.0 * distance)
            views.append(HeldOutView(float(yaw), float(pitch), cam))
    return views


def yaw_bucket(yaw_deg: float) -> str:
    """The table row of a view's yaw: "0", "15-30", "45-60" or "75-90" (by |yaw|);
    ValueError for a yaw between buckets or beyond 90 degrees."""
    a = abs(float(yaw_deg))
    for lo, hi, label in YAW_BUCKETS:
        if lo - 1e-6 <= a <= hi + 1e-6:
            return label
    raise ValueError(f"yaw {yaw_deg} degrees is in no bucket of {[b[2] for b in YAW_BUCKETS]}")


# ----------------------------------------------------------------------------- planes

def transform_plane(normal: np.ndarray, offset: float, similarity: Similarity) -> tuple[np.ndarray, float]:
    """The half-space {x: normal . x >= offset} (unit normal (3,)) mapped through ``similarity``:
    -> (normal', offset') with {y: normal' . y >= offset'} = T({x: ...})."""
    n = similarity.rotation @ np.asarray(normal, dtype=np.float64)
    return n, float(similarity.scale * offset + n @ similarity.translation)


def plane_in_camera(normal: np.ndarray, offset: float, world_to_camera: np.ndarray) -> tuple[np.ndarray, float]:
    """A world half-space {normal . x >= offset} in the (rigid) camera's frame."""
    rot, t = world_to_camera[:3, :3], world_to_camera[:3, 3]
    n = rot @ np.asarray(normal, dtype=np.float64)
    return n, float(offset + n @ t)


def camera_points_from_depth(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W) depth along the optical axis (z, camera units; 0 = empty) -> (H, W, 3) points
    in the OpenCV camera frame, through the pixel centres (integer + 0.5)."""
    h, w = depth.shape
    u = (np.arange(w) + 0.5 - camera.cx) / camera.fx
    v = (np.arange(h) + 0.5 - camera.cy) / camera.fy
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((h, w))), axis=-1)
    return rays * np.asarray(depth, dtype=np.float64)[..., None]


def above_plane_mask(depth: np.ndarray, camera: Camera, normal_world: np.ndarray, offset_world: float) -> np.ndarray:
    """(H, W) bool: pixels whose depth point lies in {normal . x >= offset} (world frame of
    ``camera``); False where depth is 0 (nothing rendered)."""
    n_cam, d_cam = plane_in_camera(normal_world, offset_world, camera.world_to_camera)
    points = camera_points_from_depth(depth, camera)
    return (points @ n_cam >= d_cam) & (np.asarray(depth) > 0)

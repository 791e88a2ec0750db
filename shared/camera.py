"""Pinhole cameras in the one convention every HeadSplat component speaks.

Why one module: the server renders with OpenCV-style cameras (gsplat, our torch
rasterizers), the head model lives in FLAME's axes, and Blender has its own camera and
world conventions. Converting in one place, with round-trip tests, keeps the three from
drifting apart.

Conventions
- Head space (FLAME): metres, +Y up, +Z out of the face (the head looks along +Z),
  +X towards the subject's left (image right in a frontal view).
- Camera space (OpenCV): +X right, +Y down, +Z forward into the scene.
- ``world_to_camera`` is a 4x4 rigid transform from head space to camera space.
- Intrinsics in pixels; pixel centres at integer + 0.5 (the image spans [0, width]).
- Blender: Z-up world; a camera looks along its local -Z with +Y up. A HeadSplat rig
  root maps head space to Blender with ``HEAD_TO_BLENDER`` (Y-up to Z-up) followed by
  the root object's world matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Head space (Y-up, face towards +Z) -> Blender object space (Z-up, face towards -Y).
HEAD_TO_BLENDER = np.array(
    [[1.0, 0.0, 0.0, 0.0],
     [0.0, 0.0, -1.0, 0.0],
     [0.0, 1.0, 0.0, 0.0],
     [0.0, 0.0, 0.0, 1.0]])
BLENDER_TO_HEAD = HEAD_TO_BLENDER.T.copy()

# A Blender camera's local frame (-Z forward, +Y up) -> OpenCV camera frame.
_BLENDER_CAM_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
# Sides beyond this are nonsense on the wire whatever the server's limits (which are lower).
_MAX_WIRE_SIDE = 1 << 20


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: extrinsics from head space, intrinsics in pixels.

    world_to_camera: (4, 4) float64, head space -> OpenCV camera space.
    fx, fy, cx, cy: focal lengths and principal point in pixels.
    width, height: image size in pixels.
    near, far: clip distances in metres along the optical axis.
    """

    world_to_camera: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01
    far: float = 100.0

    def __post_init__(self) -> None:
        w2c = np.asarray(self.world_to_camera, dtype=np.float64)
        if w2c.shape != (4, 4) or not np.all(np.isfinite(w2c)):
            raise ValueError("world_to_camera must be a finite 4x4 matrix")
        object.__setattr__(self, "world_to_camera", w2c)
        if not (self.width > 0 and self.height > 0):
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0) or not all(map(math.isfinite, (self.fx, self.fy, self.cx, self.cy))):
            raise ValueError("camera focal lengths must be positive and finite")
        if not (0 < self.near < self.far):
            raise ValueError(f"camera clip range must satisfy 0 < near < far, got {self.near}, {self.far}")

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def camera_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_camera)

    @property
    def position(self) -> np.ndarray:
        """(3,) camera centre in head space."""
        return self.camera_to_world[:3, 3].copy()

    def resized(self, width: int, height: int) -> "Camera":
        """The same view at another resolution (intrinsics scaled with the image)."""
        sx, sy = width / self.width, height / self.height
        return Camera(self.world_to_camera, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy,
                      int(width), int(height), self.near, self.far)

    def reframed(self, width: int, height: int) -> "Camera":
        """The same view in a frame of another size and shape, with the pixel aspect kept:
        the vertical field of view stays, a wider frame shows more at the sides (a 16:9
        shot of a square portrait camera). For the same shape it equals ``resized``."""
        s = height / self.height
        return Camera(self.world_to_camera, self.fx * s, self.fy * s, width / 2.0 + (self.cx - self.width / 2.0) * s,
                      height / 2.0 + (self.cy - self.height / 2.0) * s, int(width), int(height), self.near, self.far)

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) head-space points -> (N, 3): pixel x, pixel y, camera depth z."""
        p = np.asarray(points_world, dtype=np.float64)
        cam = p @ self.world_to_camera[:3, :3].T + self.world_to_camera[:3, 3]
        z = cam[:, 2:3]
        uv = cam[:, :2] / np.where(np.abs(z) < 1e-12, 1e-12, z)
        return np.concatenate([uv[:, :1] * self.fx + self.cx, uv[:, 1:] * self.fy + self.cy, z], axis=1)

    def to_wire(self) -> dict:
        return {
            "world_to_camera": [float(x) for x in self.world_to_camera.reshape(-1)],
            "fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy),
            "width": int(self.width), "height": int(self.height),
            "near": float(self.near), "far": float(self.far),
        }

    @classmethod
    def from_wire(cls, data: dict) -> "Camera":
        """Build from the protocol's camera map; raises ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("camera must be a map")
        if "world_to_camera" not in data:
            raise ValueError("camera.world_to_camera is missing")
        raw = data["world_to_camera"]
        numbers = (isinstance(raw, np.ndarray) and raw.dtype.kind in "iuf") or (isinstance(raw, (list, tuple)) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw))
        if not numbers:
            raise ValueError("camera.world_to_camera must be 16 numbers (row-major 4x4)")
        w2c = np.asarray(raw, dtype=np.float64)
        if w2c.size != 16:
            raise ValueError("camera.world_to_camera must be 16 numbers (row-major 4x4)")
        values = {}
        for key in ("fx", "fy", "cx", "cy", "width", "height", "near", "far"):
            if key not in data or data[key] is None:
                if key in ("near", "far"):
                    continue
                raise ValueError(f"camera.{key} is missing")
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"camera.{key} must be a finite number, got {type(value).__name__}")
            values[key] = value
        for key in ("width", "height"):
            if values[key] != int(values[key]) or not 1 <= values[key] <= _MAX_WIRE_SIDE:
                raise ValueError(f"camera.{key} must be a whole number of pixels from 1 to {_MAX_WIRE_SIDE}, "
                                 f"got {values[key]}")
        return cls(w2c.reshape(4, 4), float(values["fx"]), float(values["fy"]), float(values["cx"]),
                   float(values["cy"]), int(values["width"]), int(values["height"]),
                   float(values.get("near", 0.01)), float(values.get("far", 100.0)))


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """(4, 4) OpenCV world_to_camera for a camera at ``eye`` looking at ``target``.

    ``up`` is the head-space direction that should appear upwards in the image.
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(forward)
    if norm < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    forward /= norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("look_at: up is parallel to the viewing direction")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye
    return w2c


def focal_from_fov(fov_rad: float, size_px: float) -> float:
    """Focal length in pixels for a full field of view across ``size_px`` pixels."""
    return 0.5 * size_px / math.tan(0.5 * fov_rad)


def orbit_camera(azimuth_deg: float, elevation_deg: float, distance: float, *,
                 target=(0.0, 0.0, 0.0), width: int = 512, height: int = 512,
                 fov_y_deg: float = 20.0, near: float = 0.01, far: float = 100.0) -> Camera:
    """A camera on a sphere around ``target``.

    Azimuth 0 / elevation 0 is straight in front of the face (on +Z). Positive azimuth
    moves the camera towards the subject's left (+X), so the render shows the subject's
    left cheek; positive elevation moves it up.
    """
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    target = np.asarray(target, dtype=np.float64)
    offset = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)]) * distance
    f = focal_from_fov(math.radians(fov_y_deg), height)
    return Camera(look_at(target + offset, target), f, f, width / 2.0, height / 2.0, width, height, near, far)


def turntable(n_frames: int, *, distance: float, elevation_deg: float = 0.0, target=(0.0, 0.0, 0.0),
              width: int = 512, height: int = 512, fov_y_deg: float = 20.0,
              start_azimuth_deg: float = 0.0) -> list[Camera]:
    """``n_frames`` cameras orbiting once around the target, starting at the front."""
    if n_frames < 1:
        raise ValueError("turntable needs at least one frame")
    return [orbit_camera(start_azimuth_deg + 360.0 * i / n_frames, elevation_deg, distance, target=target,
                         width=width, height=height, fov_y_deg=fov_y_deg) for i in range(n_frames)]


@dataclass(frozen=True)
class BlenderCameraData:
    """What Blender's camera and render settings say, in Blender's own units.

    matrix_world: (4, 4) camera object's world matrix (Blender world, Z-up).
    lens_mm, sensor_width_mm, sensor_height_mm, sensor_fit ('AUTO', 'HORIZONTAL', 'VERTICAL'),
    shift_x, shift_y (fractions of the fitted sensor dimension), resolution in pixels after the
    render percentage, pixel aspect ratio, clip range in Blender units.
    """

    matrix_world: np.ndarray
    lens_mm: float
    sensor_width_mm: float = 36.0
    sensor_height_mm: float = 24.0
    sensor_fit: str = "AUTO"
    shift_x: float = 0.0
    shift_y: float = 0.0
    resolution_x: int = 1920
    resolution_y: int = 1080
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    clip_start: float = 0.1
    clip_end: float = 100.0
    extra: dict = field(default_factory=dict)


def _fitted_sensor(cam: BlenderCameraData) -> tuple[str, float, float]:
    """Which image axis the sensor spans, the sensor size along it (mm), and that axis' pixel size.

    Mirrors Blender's BKE_camera_sensor_fit: AUTO fits the larger (aspect-corrected) dimension.
    """
    w = cam.resolution_x * cam.pixel_aspect_x
    h = cam.resolution_y * cam.pixel_aspect_y
    fit = cam.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if w >= h else "VERTICAL"
        sensor = cam.sensor_width_mm
    elif fit == "HORIZONTAL":
        sensor = cam.sensor_width_mm
    elif fit == "VERTICAL":
        sensor = cam.sensor_height_mm
    else:
        raise ValueError(f"unknown sensor_fit {cam.sensor_fit!r}")
    return fit, sensor, (w if fit == "HORIZONTAL" else h)


def camera_from_blender(cam: BlenderCameraData, blender_to_head: np.ndarray | None = None) -> Camera:
    """Blender camera + render settings -> a HeadSplat ``Camera`` in head space.

    ``blender_to_head`` (4, 4) maps Blender world coordinates into the avatar's head space:
    ``BLENDER_TO_HEAD @ inverse(rig_root.matrix_world)``. It defaults to the identity rig
    placement (rig root at the origin, unscaled). A scaled rig root is allowed: the camera
    extrinsics then absorb the scale, so distances stay in head metres.
    """
    if blender_to_head is None:
        blender_to_head = BLENDER_TO_HEAD
    cam_to_blender = np.asarray(cam.matrix_world, dtype=np.float64)
    cam_to_head = np.asarray(blender_to_head, dtype=np.float64) @ cam_to_blender
    # Remove any scale (a scaled rig or camera) so world_to_camera stays rigid; keep the
    # scale factor to convert clip distances.
    rot_scaled = cam_to_head[:3, :3]
    col_norms = np.linalg.norm(rot_scaled, axis=0)
    if np.any(col_norms < 1e-12):
        raise ValueError("camera or rig matrix is degenerate (zero scale)")
    rot = rot_scaled / col_norms
    u, _, vt = np.linalg.svd(rot)
    rot = u @ vt
    cam_to_head_rigid = np.eye(4)
    cam_to_head_rigid[:3, :3] = rot
    cam_to_head_rigid[:3, 3] = cam_to_head[:3, 3]
    world_to_cv = _BLENDER_CAM_TO_CV @ np.linalg.inv(cam_to_head_rigid)

    fit, sensor_mm, fit_px = _fitted_sensor(cam)
    focal_px = cam.lens_mm / sensor_mm * fit_px  # in aspect-corrected pixels along the fitted axis
    fx = focal_px / cam.pixel_aspect_x
    fy = focal_px / cam.pixel_aspect_y
    cx = cam.resolution_x / 2.0 - cam.shift_x * fit_px / cam.pixel_aspect_x
    cy = cam.resolution_y / 2.0 + cam.shift_y * fit_px / cam.pixel_aspect_y
    scale = float(np.mean(col_norms))
    return Camera(world_to_cv, fx, fy, cx, cy, int(cam.resolution_x), int(cam.resolution_y),
                  near=max(cam.clip_start * scale, 1e-4), far=cam.clip_end * scale)


def camera_to_blender(camera: Camera, *, sensor_width_mm: float = 36.0,
                      head_to_blender: np.ndarray | None = None) -> BlenderCameraData:
    """A HeadSplat camera -> Blender camera settings (horizontal sensor fit).

    Used to place the fitted portrait camera into the scene. Non-square pixels are folded
    into the pixel aspect ratio.
    """
    if head_to_blender is None:
        head_to_blender = HEAD_TO_BLENDER
    cam_to_head = np.linalg.inv(camera.world_to_camera) @ _BLENDER_CAM_TO_CV  # Blender-cam -> head
    matrix_world = np.asarray(head_to_blender, dtype=np.float64) @ cam_to_head
    aspect_x, aspect_y = 1.0, camera.fx / camera.fy
    if aspect_y > 1.0:
        aspect_x, aspect_y = 1.0 / aspect_y, 1.0
    fit_px = camera.width * aspect_x
    focal_px = camera.fx * aspect_x
    return BlenderCameraData(
        matrix_world=matrix_world,
        lens_mm=focal_px / fit_px * sensor_width_mm,
        sensor_width_mm=sensor_width_mm,
        sensor_height_mm=sensor_width_mm * camera.height / camera.width,
        sensor_fit="HORIZONTAL",
        shift_x=(camera.width / 2.0 - camera.cx) * aspect_x / fit_px,
        shift_y=(camera.cy - camera.height / 2.0) * aspect_y / fit_px,
        resolution_x=camera.width,
        resolution_y=camera.height,
        pixel_aspect_x=aspect_x,
        pixel_aspect_y=aspect_y,
        clip_start=camera.near,
        clip_end=camera.far,
    )


def camera_for_source_image(crop_camera: Camera, crop_to_source: np.ndarray, source_width: int,
                            source_height: int) -> Camera:
    """The camera of the original photo, given the camera of an aligned crop of it.

    crop_to_source: (3, 3) similarity (scale s, in-plane rotation, translation) mapping crop
    pixel coordinates to source pixel coordinates. The scale goes into the focal length, the
    translation into the principal point, and the in-plane rotation (crops are rotated to
    level the eyes) into the extrinsics as a roll about the optical axis. Needs square
    pixels (fx == fy), which every crop camera here has.
    """
    a = np.asarray(crop_to_source, dtype=np.float64)
    scale = float(np.hypot(a[0, 0], a[1, 0]))
    cos, sin = a[0, 0] / scale, a[1, 0] / scale
    if abs(crop_camera.fx - crop_camera.fy) > 1e-6 * crop_camera.fx:
        raise ValueError("camera_for_source_image needs square pixels (fx == fy)")
    roll = np.eye(4)
    roll[:2, :2] = [[cos, -sin], [sin, cos]]
    cx, cy, _ = a @ np.array([crop_camera.cx, crop_camera.cy, 1.0])
    return Camera(roll @ crop_camera.world_to_camera, crop_camera.fx * scale, crop_camera.fy * scale, float(cx),
                  float(cy), int(source_width), int(source_height), crop_camera.near, crop_camera.far)

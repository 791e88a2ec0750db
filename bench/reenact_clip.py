"""A driving clip for the self-reenactment benchmark (``bench/reenact.py``): tracked once,
its head placed in every frame, and the frames cut into crops around the head.

Tracking is the ``motion.track`` machinery itself (``track_video_landmarks`` then
``track_landmarks``), called directly because the benchmark needs what the job does not
return: the video camera, the translation the job takes out so the motion plays in place,
and the per-frame landmark error. Results are cached under .cache/reenact/ by the file's
hash and the tracker's settings (tracking a 1000-frame clip costs minutes on a CPU).

Everything that decides *which pixels are compared* comes from the clip alone (the tracked
mesh), never from the avatar, so every way of making the avatar (``--train-on``) is
measured on the same crops and the same head region.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from shared.camera import Camera
from shared.motion import Motion

CACHE_VERSION = 1
CROP_SIZE = 512
REGION_WORK_PX = 128
NECK_MARGIN_FRACTION = 0.02   # of the image: how far below the chin the compared region leaves the neck


@dataclass
class TrackedClip:
    """One clip's tracking. motion: per-frame head parameters as ``motion.track`` returns
    them (translation with ``translation_offset`` removed); camera: the video camera (head
    space -> frame pixels, frame size); frame_error_px: (T,) median landmark error (NaN where
    no face); seconds: wall time of tracking (0 when read from the cache)."""

    name: str
    path: str
    motion: Motion
    camera: Camera
    translation_offset: np.ndarray
    frame_error_px: np.ndarray
    seconds: float
    cached: bool
    warnings: list[str]

    @property
    def n_frames(self) -> int:
        return self.motion.n_frames

    @property
    def found(self) -> np.ndarray:
        return np.asarray(self.motion.frame_valid, dtype=bool)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.camera.width, self.camera.height


def _cache_key(path: Path, head_model, max_frames: int | None) -> str:
    from compute_server.tracking.video_track import TrackSettings

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    settings = json.dumps(asdict(TrackSettings()), sort_keys=True, default=str)
    tag = f"{CACHE_VERSION}|{digest}|{head_model.name}|{head_model.source_sha256}|{max_frames}|{settings}"
    return hashlib.sha256(tag.encode()).hexdigest()[:20]


def track_clip(path: Path, head_model, *, cache_dir: Path | None, max_frames: int | None = None,
               log=print) -> TrackedClip:
    """Track ``path`` (every frame, or the first ``max_frames``) with the server's tracker.
    Raises UserError (bad_file, no_face) for clips that cannot be tracked."""
    from compute_server.face.video_landmarks import track_video_landmarks
    from compute_server.tracking.video_track import track_landmarks

    path = Path(path)
    cache = cache_dir / f"track-{_cache_key(path, head_model, max_frames)}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            return TrackedClip(path.stem, str(path), Motion.from_npz(bytes(data["motion"])),
                               Camera.from_wire(json.loads(str(data["camera"]))),
                               np.array(data["translation_offset"]), np.array(data["frame_error_px"]),
                               float(data["seconds"]), True, [str(w) for w in data["warnings"]])
    started = time.perf_counter()
    landmarks = track_video_landmarks(str(path), max_frames=max_frames)
    result = track_landmarks(head_model, landmarks.landmarks, landmarks.found, landmarks.frame_size, landmarks.fps)
    seconds = time.perf_counter() - started
    clip = TrackedClip(path.stem, str(path), result.motion, result.camera, result.translation_offset,
                       result.frame_error_px, seconds, False, list(landmarks.warnings))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, motion=np.frombuffer(result.motion.to_npz_bytes(), np.uint8),
                 camera=np.array(json.dumps(result.camera.to_wire())), translation_offset=result.translation_offset,
                 frame_error_px=result.frame_error_px, seconds=np.array(seconds),
                 warnings=np.array(clip.warnings, dtype=str))
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(cache)
    log(f"  tracked {clip.n_frames} frames in {seconds:.0f} s")
    return clip


# ----------------------------------------------------------------------------- head in each frame

@dataclass
class HeadPlacement:
    """The tracked head in frames ``frames`` (N,): head_to_world (N, 4, 4) the rigid head
    pose (tracker's head space -> the video camera's world, as ``portrait_fit`` folds a
    photo's pose into its camera); vertices_world (N, V, 3) the tracked mesh there."""

    frames: np.ndarray
    head_to_world: np.ndarray
    vertices_world: np.ndarray


@torch.no_grad()
def place_head(clip: TrackedClip, head_model, frames) -> HeadPlacement:
    """The tracked mesh and rigid head pose of ``frames`` (indices into the clip)."""
    from compute_server.head.model import HeadParams
    from shared.rotations import axis_angle_to_matrix

    frames = np.asarray(frames, dtype=int)
    m = clip.motion
    shape = np.zeros(head_model.n_shape, np.float32) if m.shape is None else m.shape
    arrays = {"shape": np.repeat(shape[None], len(frames), 0), "expr": m.expr[frames],
              "neck_pose": m.neck_pose[frames], "jaw_pose": m.jaw_pose[frames], "eyes_pose": m.eyes_pose[frames],
              "rotation": m.rotation[frames], "translation": m.translation[frames] + clip.translation_offset}
    posed = head_model(HeadParams.from_numpy(arrays, device=head_model.faces.device))
    canonical = head_model(HeadParams.from_numpy({**arrays, "rotation": np.zeros_like(arrays["rotation"]),
                                                  "translation": np.zeros_like(arrays["translation"])},
                                                 device=head_model.faces.device))
    root = canonical.joints[:, 0].cpu().numpy().astype(np.float64)
    rot = axis_angle_to_matrix(arrays["rotation"].astype(np.float64))
    head_to_world = np.tile(np.eye(4), (len(frames), 1, 1))
    head_to_world[:, :3, :3] = rot
    head_to_world[:, :3, 3] = root - np.einsum("nij,nj->ni", rot, root) + arrays["translation"]
    return HeadPlacement(frames, head_to_world, posed.vertices.cpu().numpy().astype(np.float64))


def crop_matrix(x0: float, y0: float, side: float, size: int = CROP_SIZE) -> np.ndarray:
    """(3, 3) crop pixels -> frame pixels for the square [x0, x0 + side) x [y0, y0 + side)
    resampled to size x size (``face.warp``'s crop_to_source convention)."""
    s = side / size
    return np.array([[s, 0.0, x0], [0.0, s, y0], [0.0, 0.0, 1.0]])


def crop_camera(camera: Camera, crop_to_frame: np.ndarray, size: int = CROP_SIZE) -> Camera:
    """The camera whose image is the crop ``crop_to_frame`` (axis-aligned, from
    ``crop_matrix``) of ``camera``'s image: same view, intrinsics moved and scaled."""
    s, x0, y0 = crop_to_frame[0, 0], crop_to_frame[0, 2], crop_to_frame[1, 2]
    return Camera(camera.world_to_camera, camera.fx / s, camera.fy / s, (camera.cx - x0) / s, (camera.cy - y0) / s,
                  size, size, camera.near, camera.far)


def relative_camera(source_camera: Camera, source_head_to_world: np.ndarray, head_to_world: np.ndarray) -> Camera:
    """The avatar's camera for a driven frame: the avatar was fitted to the source frame, so
    its source camera stands for (video camera x source head pose); the head's rigid motion
    from the source frame to this one (tracked) is applied on top of it:
    world_to_camera = source . inv(H_source) . H_frame. Intrinsics stay the source camera's
    (both are pixels of the same video)."""
    w2c = source_camera.world_to_camera @ np.linalg.inv(source_head_to_world) @ head_to_world
    return Camera(w2c, source_camera.fx, source_camera.fy, source_camera.cx, source_camera.cy,
                  source_camera.width, source_camera.height, source_camera.near, source_camera.far)


def head_region_mask(vertices_world: np.ndarray, camera: Camera, head_model, work_px: int = REGION_WORK_PX) -> np.ndarray:
    """(H, W) float in [0, 1]: where the head is compared in ``camera``'s image.

    Above the chin: the rule that makes the avatar's training targets
    (``views.masks.head_region``: the tracked mesh's silhouette grown by the hair margin).
    Below the chin: only the neck's own silhouette grown by NECK_MARGIN_FRACTION, down to the
    neck cut, because the hair margin there takes in collar, shirt and shoulders, which the
    head has no surface for (they would dominate the score; long hair beside the neck is left
    out with them). Computed at ``work_px`` (margins are fractions of the image, so the rule
    does not depend on the size; a 46 px dilation at 512 px costs seconds) and resized.
    """
    import cv2

    from compute_server.views.masks import head_region
    from compute_server.views.surface import render_surface

    faces = head_model.faces.cpu().numpy()
    face_region = head_model.face_region.cpu().numpy()
    names = list(head_model.region_names)
    small = camera.resized(work_px, round(work_px * camera.height / camera.width))
    surface = render_surface(vertices_world, faces, [small])[0]
    region = head_region(surface.mask, small, vertices_world, faces, face_region, names)
    if "face" in names:
        chin = np.unique(faces[face_region == names.index("face")])
        chin_row = int(np.clip(np.ceil(small.project(vertices_world[chin])[:, 1].max()), 0, small.height))
        radius = max(1, round(NECK_MARGIN_FRACTION * work_px))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        neck = cv2.dilate(surface.mask.astype(np.uint8), kernel) > 0
        region[chin_row:] *= neck[chin_row:]
    return cv2.resize(region, (camera.width, camera.height), interpolation=cv2.INTER_LINEAR)


# ----------------------------------------------------------------------------- frames

def read_frames(path: str, full_frames, crops: dict[int, np.ndarray],
                size: int = CROP_SIZE) -> tuple[dict[int, np.ndarray], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Decode a video once -> ({frame: full upright (H, W, 3) uint8 image} for ``full_frames``,
    {frame: ((size, size, 3) uint8 crop, (size, size) validity: the part inside the frame)}
    for the frames with a crop matrix in ``crops``), so only crops of the driven frames are
    held in memory."""
    from compute_server.face.video import iter_video_frames
    from compute_server.face.letterbox import picture_box
    from compute_server.face.warp import crop_validity, warp_to_crop

    full_wanted = set(int(f) for f in full_frames)
    full: dict[int, np.ndarray] = {}
    cropped: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    last = max(full_wanted | set(crops), default=-1)
    if last < 0:
        return full, cropped
    for frame in iter_video_frames(path, max_frames=last + 1):
        if frame.index in full_wanted:
            full[frame.index] = frame.image
        matrix = crops.get(frame.index)
        if matrix is not None:
            h, w = frame.image.shape[:2]
            cropped[frame.index] = (warp_to_crop(frame.image, matrix, size, border="replicate"),
                                    crop_validity((w, h), matrix, size, picture_box(frame.image)))
    return full, cropped

"""A shot to render on the server, as plain data (no bpy): the ``render.frames`` request
from sampled head parameters and cameras, where its frames go on disk, and which frames
are still missing after the job ends.

Frames are written to ``<scene output folder>/headsplat/<avatar name>/frame_####.<ext>``
(``####`` = scene frame number), next to Blender's own output, so the compositor's image
sequence node finds frame N at scene frame N.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ._shared import camera as camera_mod, curve_sampling

FORMATS = {"PNG": ("png", "png"), "PNG16": ("png16", "png"), "EXR": ("exr", "exr")}  # ui -> (wire, extension)
MAX_FRAMES_PER_RESULT_CALL = 64  # job.result returns at most this many frames per call


@dataclass
class ShotSamples:
    """What the rig and camera did over the shot.

    frames: (T,) scene frame numbers (consecutive). params: head parameters with T rows
    (expr (T, E), rotation, neck_pose, jaw_pose (T, 3), eyes_pose (T, 6), translation
    (T, 3)). cameras: T cameras in the avatar's head space. metres_per_unit: head metres
    per Blender unit along the camera axis (the rig root's scale), for depth.
    """

    frames: np.ndarray
    params: dict[str, np.ndarray]
    cameras: list[camera_mod.Camera]
    metres_per_unit: float = 1.0


@dataclass
class ShotPlan:
    """Where one render.frames job's frames are written: ``frames`` are the scene frame
    numbers of the request's rows (frame index i -> frames[i])."""

    avatar_name: str
    output_dir: str
    extension: str
    frames: list[int]
    depth: bool = False
    prefix: str = "frame"  # "preview" for single-frame previews, which must not overwrite a shot

    def frame_path(self, frame: int) -> str:
        return os.path.join(self.output_dir, frame_file_name(frame, self.extension, self.prefix))

    def depth_path(self, frame: int) -> str:
        return os.path.join(self.output_dir, frame_file_name(frame, "exr", prefix=f"{self.prefix}_depth"
                                                             if self.prefix != "frame" else "depth"))

    def missing_frames(self) -> list[int]:
        """Indices of the frames not on disk yet."""
        return [i for i, f in enumerate(self.frames) if not os.path.exists(self.frame_path(f))]


def frame_file_name(frame: int, extension: str, prefix: str = "frame") -> str:
    return f"{prefix}_{int(frame):04d}.{extension}"


def safe_folder_name(name: str) -> str:
    """A folder name that works on every OS for an avatar's display name."""
    cleaned = re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip(" .")
    return cleaned[:80] or "avatar"


def output_dir(render_output_path: str, avatar_name: str, fallback_dir: str) -> str:
    """``<folder of the scene output path>/headsplat/<avatar>``; the scene output path may
    be a folder ("/tmp/") or a file prefix ("/renders/shot_"). ``fallback_dir`` is used
    when the path is still relative (an unsaved .blend with a "//" path)."""
    path = render_output_path
    if not path or path.startswith("//"):
        base = fallback_dir
    elif path.endswith(("/", "\\")) or os.path.isdir(path):
        base = path
    else:
        base = os.path.dirname(path) or fallback_dir
    return os.path.join(os.path.abspath(base), "headsplat", safe_folder_name(avatar_name))


def render_request(avatar_id: str, samples: ShotSamples, *, fmt: str = "PNG", depth: bool = False) -> dict:
    """The ``render.frames`` params (docs/protocol.md 4.9): one camera when it never moves."""
    wire_format = FORMATS[fmt][0]
    cameras = [c.to_wire() for c in samples.cameras]
    flat = np.array([[*c["world_to_camera"], c["fx"], c["fy"], c["cx"], c["cy"], c["width"], c["height"],
                      c["near"], c["far"]] for c in cameras])
    if curve_sampling.rows_constant(flat, atol=1e-9):
        cameras = cameras[:1]
    params = {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in samples.params.items()}
    request = {"avatar": avatar_id, "params": params, "cameras": cameras, "format": wire_format,
               "first_frame": int(samples.frames[0])}
    if depth:
        request["depth"] = True
    return request


def check_frame_count(n_frames: int, limits: dict) -> str | None:
    """A sentence when a shot exceeds the server's frames-per-job limit, else None."""
    limit = int((limits or {}).get("max_render_frames") or 0)
    if limit and n_frames > limit:
        return (f"the shot has {n_frames} frames but the server renders at most {limit} per job: shorten the "
                "scene's frame range or start the server with a larger --max-render-frames")
    return None


def result_ranges(frame_indices: list[int], chunk: int = MAX_FRAMES_PER_RESULT_CALL) -> list[tuple[int, int]]:
    """[start, stop) index ranges covering ``frame_indices`` (sorted ints), each at most
    ``chunk`` long, for ``job.result`` calls that fetch frames missed as events."""
    ranges: list[tuple[int, int]] = []
    for index in sorted(set(frame_indices)):
        if ranges and index == ranges[-1][1] and index - ranges[-1][0] < chunk:
            ranges[-1] = (ranges[-1][0], index + 1)
        else:
            ranges.append((index, index + 1))
    return ranges


def depth_to_blender_units(depth_m: np.ndarray, metres_per_unit: float, empty_value: float = 1e10) -> np.ndarray:
    """(H, W) server depth (metres along the optical axis, 0 = no splat) -> Blender's Z
    pass units (0 becomes ``empty_value``: behind everything)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    out = depth / np.float32(metres_per_unit)
    out[depth <= 0] = empty_value
    return out

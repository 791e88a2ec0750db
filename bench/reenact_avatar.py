"""What the self-reenactment benchmark makes its avatar from (``--train-on``), and how the
avatar is driven: the one seam where a way of making the avatar plugs in.

- ``frame`` (the protocol, default): the source frame alone, as a photo.
- ``frames4``: the source frame and three more spread over the training part of the clip,
  as photos of one person (what ``avatar.create`` does with a video today, but restricted
  to the training frames so ``--holdout`` stays honest).
- ``video`` (issue 12, whole-clip training): the clip itself, with ``options.holdout`` so
  the server trains only on frames before the held-out tail (``make_video_avatar``). The
  server picks its frames; its photo 0 is its most frontal training frame
  (``video_source_frame``), which becomes the source for driving.

Every mode returns a ``CreatedAvatar`` whose photo 0 is the source frame, so the driven
cameras and parameters below are the same for all of them.
"""

from __future__ import annotations

import io

import numpy as np

from bench.reenact_protocol import spread_frames

TRAIN_ON = ("frame", "frames4", "video")
NOT_YET: dict[str, str] = {}
DRIVEN_KEYS = ("expr", "jaw_pose", "eyes_pose", "neck_pose")


def training_frames(mode: str, source: int, found: np.ndarray, stop: int) -> list[int]:
    """The clip frames the avatar is made from, source first. found: (T,) bool; stop: first
    frame that is not training material (``reenact_protocol.training_stop``)."""
    if mode == "frame":
        return [source]
    if mode == "frames4":  # four frames spread over the training part, the one nearest the source replaced by it
        picks = spread_frames(np.flatnonzero(np.asarray(found[:stop], dtype=bool)), 4)
        if source not in picks:
            picks[int(np.argmin(np.abs(np.asarray(picks) - source)))] = source
        return [source] + [f for f in picks if f != source]
    if mode == "video":  # the server chooses; replaced by the avatar's frames once it is made
        return [source]
    raise ValueError(NOT_YET.get(mode, f"unknown --train-on {mode!r}; use one of {', '.join(TRAIN_ON)}"))


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_avatar(client, clip_name: str, frames: list[int], images: dict[int, np.ndarray], *, preset: str,
                seed: int, diffusion: str, options: dict | None, log=print):
    """``avatar.create`` through ``client`` on the full video frames ``images[f]`` ((H, W, 3)
    uint8) of ``frames`` (source first) -> bench.quality_avatars.CreatedAvatar."""
    from bench.quality_avatars import create_avatar

    named = [(f"{clip_name}_frame{f:05d}.png", png_bytes(images[f])) for f in frames]
    return create_avatar(client, named[0][0], named[0][1], more_images=named[1:], preset=preset, seed=seed,
                         diffusion=diffusion, options=options, log=log)


def make_video_avatar(client, path, *, holdout: float, preset: str, seed: int, diffusion: str,
                      options: dict | None, log=print):
    """``avatar.create`` on the clip file itself (whole-clip training, ``holdout`` kept out)
    -> bench.quality_avatars.CreatedAvatar (photo 0: the server's most frontal frame)."""
    from bench.quality_avatars import run_create

    params = {"video": {"name": path.name, "data": path.read_bytes()}, "preset": preset, "seed": seed,
              "name": path.stem, "diffusion": diffusion, "options": {**(options or {}), "holdout": holdout}}
    return run_create(client, params, f"{path.name} [video]", log=log)


def video_source_frame(avatar) -> int:
    """The clip frame of a video avatar's photo 0 (its sources are named '<clip> frame N')."""
    return int(avatar.metadata["sources"][0]["name"].rsplit(" frame ", 1)[1])


def driven_params(avatar_fit: dict, motion, frames, source: int) -> dict[str, np.ndarray]:
    """Head parameters that drive the avatar through ``frames``: its own fitted (and
    fine-tuned) source parameters plus the tracked change from the source frame to each
    frame, key -> (N, width) float32.

    Why the change and not the tracked values themselves: the avatar's source parameters come
    from fitting the photo (crop, per-photo focal, fine-tuned during optimization), the
    clip's from tracking it with temporal smoothing; both describe the source frame but not
    identically, and driving with raw tracked values would put that disagreement into every
    frame (the source frame itself would not reproduce the photo). Head pose is not here: it
    is in the camera (``reenact_clip.relative_camera``).
    """
    frames = np.asarray(frames, dtype=int)
    out = {}
    for key in DRIVEN_KEYS:
        tracked = np.asarray(getattr(motion, key), np.float32)
        base = np.asarray(avatar_fit[key], np.float32)[0]
        width = base.shape[0]
        change = tracked[frames] - tracked[source][None]
        if change.shape[1] < width:
            change = np.pad(change, ((0, 0), (0, width - change.shape[1])))
        out[key] = (base[None] + change[:, :width]).astype(np.float32)
    return out

"""Video files -> upright RGB frames, through PyAV (FFmpeg).

Why PyAV: it decodes every container and codec a phone or editor writes, exposes the
display matrix (phones store portrait video sideways plus a rotation), and reports
corrupt data as exceptions we turn into a sentence for the user. Frames come out upright
(rotation applied) and optionally shrunk (area averaging) so tracking a 4K clip does not
cost 4K memory per frame.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator

import av
import cv2
import numpy as np

from compute_server.errors import UserError

MAX_FPS = 1000.0


@dataclass(frozen=True)
class VideoInfo:
    """fps: average frame rate. n_frames: frame count from the container, or an estimate
    (duration * fps) when it does not say. width, height: upright frame size (rotation
    applied). duration_s: length in seconds. rotation_deg: counter-clockwise rotation the
    file asks for (0, 90, 180, 270), already applied to width/height. codec: decoder name."""

    fps: float
    n_frames: int
    width: int
    height: int
    duration_s: float
    rotation_deg: int
    codec: str
    n_frames_exact: bool


@dataclass
class VideoFrame:
    """index: 0-based decode order. time_s: presentation time from the stream start.
    image: (H, W, 3) uint8 RGB, upright."""

    index: int
    time_s: float
    image: np.ndarray


def _bad(name: str, reason: str) -> UserError:
    return UserError("bad_file", f"{name}: {reason}.", name=name)


def _open(path: str) -> "av.container.InputContainer":
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise _bad(name, "the video file does not exist")
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise _bad(name, f"not a video file FFmpeg can read ({_short(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise _bad(name, "the file has no video stream")
    return container


def _short(exc: BaseException) -> str:
    """FFmpeg's reason without errno numbers or server paths."""
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _quarter_turns(rotation_deg: float) -> int:
    """Counter-clockwise display rotation -> number of 90-degree np.rot90 turns (0..3)."""
    return int(round(rotation_deg / 90.0)) % 4


def _frame_fps(stream: "av.video.stream.VideoStream") -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0 and float(rate) <= MAX_FPS:
            return float(rate)
    return 0.0


def probe_video(path: str) -> VideoInfo:
    """Read a video's header (and its first frame, for the rotation).

    Raises UserError("bad_file", ...) for missing, unreadable or corrupt files, files
    without a video stream, or without a single decodable frame.
    """
    name = os.path.basename(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = _frame_fps(stream)
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = 0.0
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise _bad(name, f"the video data is corrupt ({_short(exc)})") from exc
        if first is None:
            raise _bad(name, "the video has no decodable frames")
        rotation = _quarter_turns(first.rotation or 0) * 90
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        exact = bool(stream.frames and stream.frames > 0)
        n_frames = int(stream.frames) if exact else max(1, int(math.floor(duration_s * fps + 0.5)))
        if fps <= 0:
            raise _bad(name, "the video has no usable frame rate")
        return VideoInfo(fps=fps, n_frames=n_frames, width=width, height=height, duration_s=duration_s,
                         rotation_deg=rotation, codec=stream.codec_context.name, n_frames_exact=exact)
    finally:
        container.close()


def shrink_to_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """(H, W, C) -> the same, shrunk by area averaging so max(H, W) <= max_side."""
    if max_side is None or max(image.shape[:2]) <= max_side:
        return image
    scale = max_side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def iter_video_frames(path: str, *, max_frames: int | None = None, max_side: int | None = None) -> Iterator[VideoFrame]:
    """Decode frames in order, upright, as (H, W, 3) uint8 RGB.

    max_frames: stop after this many. max_side: shrink frames whose longer side exceeds it.
    Raises UserError("bad_file", ...) when the file cannot be opened or its data is
    corrupt (naming the frame where decoding failed).
    """
    name = os.path.basename(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = stream.start_time if stream.start_time is not None else 0
        index = 0
        frames = container.decode(stream)
        while max_frames is None or index < max_frames:
            try:
                frame = next(frames, None)
            except av.error.FFmpegError as exc:
                raise _bad(name, f"the video data is corrupt at frame {index} ({_short(exc)})") from exc
            if frame is None:
                break
            image = frame.to_ndarray(format="rgb24")
            turns = _quarter_turns(frame.rotation or 0)
            if turns:
                image = np.ascontiguousarray(np.rot90(image, turns))
            if frame.pts is not None and stream.time_base is not None:
                time_s = float((frame.pts - start) * stream.time_base)
            else:  # no timestamps (raw streams): assume a constant rate
                time_s = index / max(_frame_fps(stream), 1e-9)
            yield VideoFrame(index=index, time_s=time_s, image=shrink_to_max_side(image, max_side))
            index += 1
        if index == 0 and max_frames != 0:
            raise _bad(name, "the video has no decodable frames")
    finally:
        container.close()

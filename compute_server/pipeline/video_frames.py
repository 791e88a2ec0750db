"""Photos from a short selfie video, for ``avatar.create`` with a video instead of images:
a few frames spread over the clip, each prepared like a photo (one identity is fitted to
all of them, which constrains the head better than a single frame)."""

from __future__ import annotations

import io
import os
import re
import tempfile

import numpy as np

from ..errors import UserError
from ..face import prepare_portrait
from ..face.video import iter_video_frames, probe_video

FRAMES_FROM_VIDEO = 4
MAX_FRAMES_SCANNED = 900


def portrait_frames_from_video(video: tuple[str, bytes], size: int, *, count: int = FRAMES_FROM_VIDEO,
                               progress=None) -> list:
    """Prepared portraits of ``count`` frames spread over the video (frames without a face
    are skipped; UserError no_face when none has one)."""
    from PIL import Image

    name, data = video
    # under the user's own file name (made safe at submission), so FFmpeg's complaints name it
    with tempfile.TemporaryDirectory(prefix="headsplat-video-") as folder:
        path = os.path.join(folder, re.sub(r"[^\w. -]", "_", name).lstrip(".") or "video.mp4")
        with open(path, "wb") as f:
            f.write(data)
        info = probe_video(path)
        total = min(info.n_frames or MAX_FRAMES_SCANNED, MAX_FRAMES_SCANNED)
        wanted = set(np.linspace(0, max(total - 1, 0), num=min(count * 2, max(total, 1))).round().astype(int).tolist())
        portraits = []
        for frame in iter_video_frames(path, max_frames=total, max_side=1920):
            if frame.index not in wanted:
                continue
            buf = io.BytesIO()
            Image.fromarray(frame.image).save(buf, "PNG")
            try:
                portraits.append(prepare_portrait(buf.getvalue(), f"{name} frame {frame.index}", size=size))
            except UserError as exc:
                if exc.code != "no_face":
                    raise
            if progress:
                progress(len(portraits) / count, f"frame {frame.index} of {name}")
            if len(portraits) >= count:
                break
    if not portraits:
        raise UserError("no_face", f"No face found in the frames of {name}. Film the face clearly, frontal or "
                                   "slightly turned, in good light.")
    return portraits

"""An avatar's folder on the client's disk: previews, ``avatar.json`` and the neutral-pose PLY.

Why the PLY comes from ``render.frames`` (format ``ply``) and not from the stored splats: the
server poses the triangle-bound Gaussians in the neutral pose, so any splat viewer can open
the file without knowing the binding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_avatar_folder(client, avatar_id: str, out: Path) -> None:
    """Fetch an avatar's previews and metadata, and its neutral-pose PLY (posed by the server)."""
    out.mkdir(parents=True, exist_ok=True)
    avatar = client.get_avatar(avatar_id, include=["preview.png", "turntable.png"])
    for name, data in avatar["files"].items():
        (out / name).write_bytes(bytes(data))
    (out / "avatar.json").write_text(json.dumps(avatar["metadata"], indent=1, sort_keys=True))
    job = client.submit("render.frames", {"avatar": avatar_id, "format": "ply", "camera_preset": "portrait"})
    frames = client.wait_job(job)
    data = client.call("job.result", {"job": job, "frames": [0, 1]})["result"]["frame_data"][0]["frame"]["data"]
    tmp = out / f".avatar.ply.{os.getpid()}"
    tmp.write_bytes(bytes(data))
    os.replace(tmp, out / "avatar.ply")
    del frames

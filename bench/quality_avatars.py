"""Making and rendering avatars for the quality benchmarks, through a real server.

The server runs in this process on loopback (like ``bench/fit.py``), so every avatar goes
through the same validation, job queue and files as a user's. Frames are fetched with
``job.result`` and a frame range after the job (never lost to a missed event).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.camera import Camera, camera_for_source_image

FIT_FRAME_KEYS = ("expr", "jaw_pose", "neck_pose", "eyes_pose")
FRAMES_PER_FETCH = 64


@contextlib.contextmanager
def bench_server(device: str, models_config: str | None = None):
    """A ``Client`` connected to a fresh in-process server with a temporary data folder."""
    from compute_server.server.app import Server
    from compute_server.server.config import ServerConfig
    from compute_server.server.logs import configure_logging
    from shared.client import Client

    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="headsplat-quality-") as data_dir:
        server = Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=Path(data_dir), device=device,
                                     models_config=models_config))
        server.start_background()
        try:
            with Client(server.endpoint, timeout_s=120) as client:
                yield client
        finally:
            server.stop()
            server.join(60)


@dataclass
class CreatedAvatar:
    """An avatar made by ``avatar.create``: its id, the job result, wall time (s), its
    metadata and the rig.npz / fit.npz arrays (numpy)."""

    avatar_id: str
    result: dict
    seconds: float
    metadata: dict
    rig: dict
    fit: dict

    def source_camera(self, index: int = 0) -> Camera:
        """The camera of input photo ``index`` (uncropped, its own pixel size) in head space."""
        source = self.metadata["sources"][index]
        width, height = source["source_size"]
        return camera_for_source_image(Camera.from_wire(source["camera"]),
                                       np.asarray(source["crop_to_source"], dtype=np.float64).reshape(3, 3),
                                       int(width), int(height))

    def frame_params(self, n_frames: int, index: int = 0) -> dict[str, np.ndarray]:
        """The fitted expression/jaw/neck/eyes of photo ``index``, repeated for n_frames."""
        return {key: np.repeat(np.asarray(self.fit[key], np.float32)[index:index + 1], n_frames, axis=0)
                for key in FIT_FRAME_KEYS}

    def fitted_vertices(self, index: int = 0) -> np.ndarray:
        """(V, 3) the head mesh in photo ``index``'s fitted pose (what the avatar is rendered
        on), in head space, computed with the server's head model."""
        import torch

        from compute_server.head.model import HeadParams
        from compute_server.pipeline.head_models import HeadModelCatalog

        head_model = HeadModelCatalog([]).load(self.metadata["head_model"]["name"], torch.device("cpu"))
        head_model = head_model.with_static_offset(np.asarray(self.rig["static_offset"], np.float32))
        params = HeadParams.zeros(head_model, 1)
        params.shape = torch.as_tensor(np.asarray(self.rig["shape"], np.float32)[None])
        for key, value in self.frame_params(1, index).items():
            setattr(params, key, torch.as_tensor(value))
        with torch.no_grad():
            vertices = head_model(params).vertices[0].numpy()
        return vertices.astype(np.float64)

    def region_vertex_mask(self, regions: tuple[str, ...]) -> np.ndarray:
        """(V,) bool: vertices of faces in the named head-model regions."""
        names = self.metadata["head_model"]["region_names"]
        faces, face_region = np.asarray(self.rig["faces"]), np.asarray(self.rig["face_region"])
        wanted = [names.index(r) for r in regions if r in names]
        mask = np.zeros(len(self.rig["rest_vertices"]), dtype=bool)
        mask[np.unique(faces[np.isin(face_region, wanted)])] = True
        return mask


def create_avatar(client, name: str, image_bytes: bytes, *, preset: str, seed: int = 0, diffusion: str = "none",
                  options: dict | None = None, log=print, on_progress=None,
                  more_images: list[tuple[str, bytes]] = ()) -> CreatedAvatar:
    """Run ``avatar.create`` on one photo (and ``more_images`` of the same person after it,
    as (name, bytes); the first photo stays photo 0) and fetch what the benchmarks read back.
    ``on_progress`` also receives every job.progress event's params."""
    images = [{"name": name, "data": image_bytes}] + [{"name": n, "data": d} for n, d in more_images]
    params = {"images": images, "preset": preset, "seed": seed, "name": name, "diffusion": diffusion}
    if options:
        params["options"] = dict(options)
    return run_create(client, params, f"{name} [{diffusion}]", log=log, on_progress=on_progress)


def run_create(client, params: dict, label: str, *, log=print, on_progress=None) -> CreatedAvatar:
    """Submit ``avatar.create`` with ``params``, log its progress every 30 s under ``label``,
    wait for it and fetch what the benchmarks read back (rig and fit arrays)."""
    started = time.perf_counter()
    last = [0.0]

    def progress(event: dict) -> None:
        if on_progress is not None:
            on_progress(event)
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            log(f"  {label}: {100 * event.get('fraction', 0):.0f}% {event.get('message', '')}")

    result = client.wait_job(client.submit("avatar.create", params), on_progress=progress, timeout_s=24 * 3600)
    seconds = time.perf_counter() - started
    avatar = client.get_avatar(result["avatar"], include=["rig.npz", "fit.npz"])
    arrays = avatar["arrays"]
    return CreatedAvatar(result["avatar"], result, seconds, avatar["metadata"],
                         {k: np.array(v) for k, v in arrays["rig"].items()},
                         {k: np.array(v) for k, v in arrays["fit"].items()})


@dataclass
class RenderedView:
    """rgba: (H, W, 4) float32 straight alpha in [0, 1]; depth: (H, W) metres along the
    optical axis (0 where empty) or None."""

    rgba: np.ndarray
    depth: np.ndarray | None


def render_views(client, avatar: CreatedAvatar, cameras: list[Camera], *, depth: bool = False,
                 photo_index: int = 0, frame_params: dict[str, np.ndarray] | None = None) -> list[RenderedView]:
    """Render the avatar at each camera (one render.frames job), in photo ``photo_index``'s
    fitted expression or with ``frame_params`` (key -> (len(cameras), width) head parameters)."""
    if frame_params is None:
        frame_params = avatar.frame_params(len(cameras), photo_index)
    params = {"avatar": avatar.avatar_id, "params": frame_params,
              "cameras": [c.to_wire() for c in cameras], "format": "png", "depth": depth}
    job = client.submit("render.frames", params)
    client.wait_job(job, timeout_s=3600)
    views = []
    for start in range(0, len(cameras), FRAMES_PER_FETCH):
        stop = min(len(cameras), start + FRAMES_PER_FETCH)
        part = client.call("job.result", {"job": job, "frames": [start, stop]})["result"]["frame_data"]
        for entry in sorted(part, key=lambda e: e["frame_index"]):
            rgba = np.asarray(Image.open(io.BytesIO(bytes(entry["frame"]["data"]))).convert("RGBA"), np.float32) / 255
            views.append(RenderedView(rgba, None if entry.get("depth") is None else np.array(entry["depth"])))
    if len(views) != len(cameras):
        raise RuntimeError(f"render.frames returned {len(views)} frames for {len(cameras)} cameras")
    return views

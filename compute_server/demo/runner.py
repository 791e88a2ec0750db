"""The demo, step by step, with a progress bar for each step:

1. start a compute server in this process (built-in head model, no diffusion, CPU or GPU);
2. make an avatar from the bundled public-domain astronaut photo (scikit-image);
3. make an expression motion (synthesized from the head model's components, or tracked
   from ``--video``);
4. render a turntable and the expression clip on the server;
5. run Blender headless: install the add-on, import the avatar as a keyframable rig,
   key it with the motion, render a composited shot, save a .blend;
6. write index.html and contact_sheet.png into the output folder.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.client import Client
from shared.motion import Motion

from ..client_tools.avatar_folder import write_avatar_folder
from ..client_tools.progress_bar import ProgressBar
from .index import animated_gif, contact_sheet, write_index
from .motion import demo_motion


@dataclass
class DemoSettings:
    out: Path
    preset: str = "draft"
    device: str = "auto"
    data: Path | None = None
    video: Path | None = None
    turntable_frames: int = 36
    render_size: int = 256
    blender: bool = True
    blender_frames: int = 24
    iterations: int | None = None
    timings: dict = field(default_factory=dict)
    blender_step: "BlenderStep | None" = None     # filled in by run_demo


def astronaut_png() -> bytes:
    import skimage.data
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, "PNG")
    return buf.getvalue()


def _step(settings: DemoSettings, name: str):
    class _Timer:
        def __enter__(self):
            self.t = time.perf_counter()
            print(f"\n== {name}", flush=True)

        def __exit__(self, *exc):
            settings.timings[name] = round(time.perf_counter() - self.t, 1)
    return _Timer()


def _render(client: Client, avatar: str, out_dir: Path, title: str, **params) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar(title)
    written: list[Path] = []

    def on_progress(event: dict) -> None:
        bar(event)
        frame = event.get("frame")
        if frame:
            path = out_dir / f"frame_{event['frame_number']:04d}.png"
            path.write_bytes(bytes(frame["data"]))
            written.append(path)

    client.wait_job(client.submit("render.frames", {"avatar": avatar, **params}), on_progress=on_progress)
    bar.finish(f"{len(written)} frames")
    return sorted(written)


def run_demo(settings: DemoSettings) -> Path:
    from ..server.app import Server
    from ..server.config import ServerConfig
    from ..server.logs import configure_logging

    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    configure_logging("WARNING")
    started = time.perf_counter()
    data_dir = settings.data or out / "server-data"
    server = Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=data_dir, device=settings.device))
    server.start_background()
    try:
        with Client(server.endpoint, timeout_s=60) as client:
            info = client.info()
            print(f"server {info['version']} on {info['device']} at {server.endpoint}")
            photo = out / "input_astronaut.png"
            photo.write_bytes(astronaut_png())
            with _step(settings, "avatar"):
                params = {"images": [{"name": photo.name, "data": photo.read_bytes()}], "preset": settings.preset,
                          "name": "Astronaut (demo)", "seed": 0}
                if settings.iterations:
                    params["options"] = {"iterations": settings.iterations}
                bar = ProgressBar("avatar")
                created = client.wait_job(client.submit("avatar.create", params), on_progress=bar)
                bar.finish(f"{created['splats']} Gaussians, input-view PSNR {created['metrics']['input_psnr_db']:.2f} dB")
                avatar_id = created["avatar"]
                write_avatar_folder(client, avatar_id, out)   # avatar.ply, avatar.json, previews
                metadata = json.loads((out / "avatar.json").read_text())
            with _step(settings, "motion"):
                motion = _motion(client, settings, metadata, out)
            with _step(settings, "renders"):
                size = [settings.render_size, settings.render_size]
                turntable = _render(client, avatar_id, out / "turntable", "turntable", camera_preset="turntable",
                                    size=size, params={"jaw_pose": np.zeros((settings.turntable_frames, 3), np.float32)})
                clip = _render(client, avatar_id, out / "expressions", "expression clip", camera_preset="portrait",
                               size=size, params={k: np.ascontiguousarray(v) for k, v in motion.frame_arrays().items()})
            blender = BlenderStep(frames=[], skipped="turned off with --no-blender")
            if settings.blender:
                with _step(settings, "blender"):
                    blender = run_blender_step(server.endpoint, avatar_id, out, settings.blender_frames)
    finally:
        server.stop()
        server.join(60)
    settings.timings["total"] = round(time.perf_counter() - started, 1)
    settings.blender_step = blender
    return _write_front_page(settings, created, photo, turntable, clip, blender)


def _motion(client: Client, settings: DemoSettings, metadata: dict, out: Path) -> Motion:
    path = out / "motion.npz"
    if settings.video:
        bar = ProgressBar(f"track {settings.video.name}")
        result = client.wait_job(client.submit("motion.track", {"video": {"name": settings.video.name,
                                                                          "data": settings.video.read_bytes()}}),
                                 on_progress=bar)
        path.write_bytes(bytes(result["motion"]))
        bar.finish(f"{result['frames']} frames tracked")
        return Motion.load(path)
    head = metadata["head_model"]
    motion = demo_motion(head["expression_names"], head_model=head["name"])
    motion.save(path)
    print(f"synthesized a {motion.duration_s:.1f} s expression clip ({motion.n_frames} frames) -> {path.name}")
    return motion


@dataclass
class BlenderStep:
    """What the demo's Blender step left: the composited shot frames, or why there are none
    (``skipped``: Blender is not installed, an optional part; ``failed``: it ran and broke)."""
    frames: list[Path]
    skipped: str | None = None
    failed: str | None = None


def run_blender_step(endpoint: str, avatar_id: str, out: Path, frames: int = 24) -> BlenderStep:
    """Run ``compute_server.demo.blender_shot`` in its own process (bpy owns its process) and
    turn a missing Blender into a skip with one line saying what to install."""
    from .blender_shot import BLENDER_INSTALL_HINT, EXIT_NO_BLENDER

    shot_dir = out / "blender"
    log = out / "blender.log"
    cmd = [sys.executable, "-m", "compute_server.demo.blender_shot", "--endpoint", endpoint, "--avatar", avatar_id,
           "--motion", str(out / "motion.npz"), "--out", str(shot_dir), "--frames", str(frames)]
    print("running Blender headless (add-on install, rig import, keyed motion, composited render)...", flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(result.stdout + "\n" + result.stderr)
    if result.returncode == EXIT_NO_BLENDER:
        reason = f"Blender (bpy) is not installed in this environment; to include it: {BLENDER_INSTALL_HINT}"
        print(f"skipped the Blender step: {reason}", flush=True)
        return BlenderStep(frames=[], skipped=reason)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        reason = f"the Blender step failed ({last}); the whole log is in {log}"
        print(reason, flush=True)
        return BlenderStep(frames=[], failed=reason)
    return BlenderStep(frames=sorted(shot_dir.glob("shot_*.png")))


def _write_front_page(settings: DemoSettings, created: dict, photo: Path, turntable: list[Path], clip: list[Path],
                      blender: BlenderStep) -> Path:
    out = settings.out
    shot = blender.frames
    stills = [("input photo", photo), ("avatar, portrait camera", out / "preview.png")]
    stills += [(f"turntable {i * 360 // max(len(turntable), 1)} deg", turntable[i])
               for i in range(0, len(turntable), max(1, len(turntable) // 4))][:4]
    stills += [(f"expression frame {i}", clip[i]) for i in range(0, len(clip), max(1, len(clip) // 4))][:4]
    stills += [(f"Blender shot frame {i + 1}", shot[i]) for i in range(0, len(shot), max(1, len(shot) // 4))][:4]
    animations = [(title, gif) for title, gif in (
        ("turntable", animated_gif(turntable, out / "turntable.gif", fps=12)),
        ("expression clip", animated_gif(clip, out / "expressions.gif")),
        ("Blender shot (composited by Blender)", animated_gif(shot, out / "blender_shot.gif"))) if gif]
    links = [(name, out / name) for name in ("avatar.ply", "avatar.json", "motion.npz", "turntable.png")
             if (out / name).exists()]
    if (out / "blender" / "demo.blend").exists():
        links.append(("demo.blend (open in Blender 4.2+ with the HeadSplat add-on)", out / "blender" / "demo.blend"))
    metrics = created["metrics"]
    facts = [("avatar", created["avatar"]), ("preset", settings.preset), ("Gaussians", str(created["splats"])),
             ("input-view PSNR / SSIM", f"{metrics['input_psnr_db']:.2f} dB / {metrics['input_ssim']:.4f}")]
    if blender.skipped or blender.failed:
        facts.append(("Blender shot", f"not made: {blender.skipped or blender.failed}"))
    facts += [(f"time: {k}", f"{v:.1f} s") for k, v in settings.timings.items()]
    sheet = contact_sheet(stills, out / "contact_sheet.png")
    links.append(("contact_sheet.png", sheet))
    return write_index(out, title="HeadSplat demo", stills=stills, animations=animations, links=links, facts=facts)

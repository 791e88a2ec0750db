"""The one-minute end-to-end check: the bundled portrait to a short avatar and one
rendered frame, through a real server on this machine, timed.

Why through a server: it is the path every user takes (socket, queue, worker, data
directory, pipeline, renderer), so a pass here means ``headsplat create`` works; each
part alone passing does not prove that. It runs on a throwaway data directory and a
free loopback port, so it never touches the user's avatars or a running server.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .portrait import PORTRAIT_NAME, bundled_portrait_jpeg
from .records import FAIL, OK, Check, DoctorSettings

GROUP = "end to end"
NAME = "portrait to avatar to frame"
PRESET = "draft"
TIMEOUT_S = 1800.0


def _check(verdict: str, detail: str, fix: str = "", seconds: float | None = None) -> Check:
    return Check(NAME, verdict, detail, fix, GROUP, None if seconds is None else round(seconds, 3))


def _frame_size(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return f"{image.width}x{image.height}"


class StageClock:
    """Progress callback that notes when each stage of the job began (and passes the
    event on), so the report says where the time went."""

    def __init__(self, forward: Callable[[dict], None] | None = None):
        self.forward = forward
        self.started: list[tuple[str, float]] = []

    def __call__(self, params: dict) -> None:
        stage = str(params.get("stage") or "")
        if stage and (not self.started or self.started[-1][0] != stage):
            self.started.append((stage, time.perf_counter()))
        if self.forward is not None:
            self.forward(params)

    def describe(self, finished_at: float) -> str:
        ends = [t for _, t in self.started[1:]] + [finished_at]
        return ", ".join(f"{name} {end - begin:.1f} s" for (name, begin), end in zip(self.started, ends)) or "no stages"


def run_end_to_end(settings: DoctorSettings, on_progress: Callable[[dict], None] | None = None) -> Check:
    """avatar.create (draft, ``settings.end_to_end_iterations`` iterations) then
    render.frames (one portrait frame) on ``settings.device``; one Check with the times."""
    from shared.client import Client, JobFailed

    from ..errors import UserError
    from ..server.app import Server
    from ..server.config import ServerConfig

    iterations = settings.end_to_end_iterations
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="headsplat-doctor-") as tmp:
        try:
            server = Server(ServerConfig(bind="tcp://127.0.0.1:*", data_dir=Path(tmp) / "data",
                                         device=settings.device))
        except UserError as exc:
            return _check(FAIL, f"a server could not start: {exc.message}", "see the lines above")
        server.start_background()
        try:
            with Client(server.endpoint, timeout_s=30.0) as client:
                device = client.info()["device"]
                params = {"preset": PRESET, "name": "doctor", "seed": 0,
                          "images": [{"name": PORTRAIT_NAME, "data": bundled_portrait_jpeg()}],
                          "options": {"iterations": iterations}}
                created_at = time.perf_counter()
                stages = StageClock(on_progress)
                result = client.wait_job(client.submit("avatar.create", params), stages, TIMEOUT_S)
                create_s = time.perf_counter() - created_at
                rendered_at = time.perf_counter()
                job = client.submit("render.frames", {"avatar": result["avatar"], "camera_preset": "portrait"})
                client.wait_job(job, None, TIMEOUT_S)
                frame = client.call("job.result", {"job": job, "frames": [0, 1]})["result"]["frame_data"][0]
                render_s = time.perf_counter() - rendered_at
                size = _frame_size(bytes(frame["frame"]["data"]))
        except JobFailed as exc:
            return _check(FAIL, f"the job failed: {exc}", "read the failed line above it, or run the server with "
                                                         "--log-level DEBUG", time.perf_counter() - start)
        except Exception as exc:
            return _check(FAIL, f"{type(exc).__name__}: {exc}", "report this with the whole doctor output",
                          time.perf_counter() - start)
        finally:
            server.stop()
            server.join(60.0)
    total = time.perf_counter() - start
    psnr = result.get("metrics", {}).get("input_psnr_db")
    quality = f", input PSNR {psnr:.1f} dB" if isinstance(psnr, (int, float)) else ""
    return _check(OK, f"on {device}: {iterations}-iteration {PRESET} avatar ({result.get('splats', '?')} Gaussians"
                      f"{quality}) in {create_s:.1f} s ({stages.describe(created_at + create_s)}), one {size} frame "
                      f"in {render_s:.1f} s, {total:.1f} s in all", seconds=total)


def checks(settings: DoctorSettings, on_progress=None) -> list[Check]:
    return [run_end_to_end(settings, on_progress)]

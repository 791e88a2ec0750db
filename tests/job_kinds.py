"""Test-only methods and job kinds, as a server plugin: they exercise the queue, progress,
cancel, failure, persistence and limits machinery without any real pipeline.

Loaded only by a server started with ``--plugin tests.job_kinds`` (``ServerConfig.plugins``)
from the project root; the server package never imports this module, and an installed
server cannot load it (``tests`` is not shipped). Used by tests/ (``server_harness``) and
bench/protocol.py.

- ``test.count``: counts ``steps`` steps of ``step_s`` seconds with progress events;
  optional ``fail_at``/``fail_code`` (UserError), ``crash_at`` (internal error),
  ``oom_at`` (raises what torch raises when CUDA runs out of memory),
  ``frames`` (one progress event with ``frame_index``/``frame`` per step, like
  render.frames), ``ignore_cancel`` (never checks: a job that cannot stop).
  ``steps`` is checked against ``max_render_frames`` as render.frames will be.
- ``test.avatar``: writes an avatar of ``points`` splat rows into the store, pausing
  ``hold_s`` seconds after its files are staged and before publishing (to crash the
  server mid-write), and ``hold_after_s`` seconds after publishing, before the job is
  recorded as done (the crash window a restart must recover as done); ``uses`` names an
  avatar the job holds (cannot be deleted meanwhile).
- ``test.image``: checks ``image`` with validation.require_image and returns its size.
- ``debug.echo`` (method): returns ``{"echo": params}`` unchanged (zero-copy), for the
  protocol benchmark.
- ``debug.fail`` (method): raises a RuntimeError, to check that a handler bug becomes an
  ``internal`` error reply and the server keeps serving.
"""

from __future__ import annotations

import time

import numpy as np

from compute_server.errors import UserError
from compute_server.jobs.context import JobContext, JobKind
from compute_server.validation import (
    check_frame_count, require_bool, require_float, require_image, require_int, require_name, require_str,
)
from compute_server.storage.avatar_store import check_avatar_id

SPLAT_ATTRIBUTES = 59  # a splat row in the size the real avatars use (means, quats, scales, SH...)


def _sleep_checking(ctx: JobContext, seconds: float, *, check: bool = True) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if check:
            ctx.check()
        time.sleep(min(left, 0.02))


# ----------------------------------------------------------------------------- test.count

def validate_count(params: dict, server_ctx) -> dict:
    steps = require_int(params, "steps", min_value=1)
    check_frame_count(steps, server_ctx.limits, "test.count")
    return {
        "steps": steps,
        "step_s": require_float(params, "step_s", default=0.01, min_value=0.0, max_value=5.0),
        "fail_at": require_int(params, "fail_at", default=-1),
        "fail_code": require_str(params, "fail_code", default="bad_file", max_chars=40),
        "crash_at": require_int(params, "crash_at", default=-1),
        "oom_at": require_int(params, "oom_at", default=-1),
        "frames": require_bool(params, "frames", default=False),
        "ignore_cancel": require_bool(params, "ignore_cancel", default=False),
    }


def run_count(ctx: JobContext, job: dict) -> dict:
    for step in range(job["steps"]):
        if step == job["fail_at"]:
            raise UserError(job["fail_code"], f"test.count was asked to fail at step {step}")
        if step == job["oom_at"]:  # torch.OutOfMemoryError's text; the pipeline plugin classifies it
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (test.count was asked to)")
        if step == job["crash_at"]:
            raise RuntimeError(f"test.count crashed at step {step} on purpose")
        if job["ignore_cancel"]:
            _sleep_checking(ctx, job["step_s"], check=False)
            continue
        _sleep_checking(ctx, job["step_s"])
        fraction = (step + 1) / job["steps"]
        if job["frames"]:
            ctx.progress("counting", fraction, f"step {step + 1} of {job['steps']}", frame_index=step,
                         frame=np.full((2, 2, 3), step % 256, dtype=np.uint8))
        else:
            ctx.progress("counting", fraction, f"step {step + 1} of {job['steps']}",
                         eta_s=(job["steps"] - step - 1) * job["step_s"])
    return {"count": job["steps"], "squares": np.arange(job["steps"], dtype=np.int64) ** 2}


# ----------------------------------------------------------------------------- test.avatar

def validate_avatar(params: dict, server_ctx) -> dict:
    uses = params.get("uses")
    if uses is not None:
        uses = check_avatar_id(uses)
        server_ctx.store.path(uses)  # not_found if it does not exist
    return {"name": require_name(params, "name", default="test avatar", max_chars=200),
            "points": require_int(params, "points", default=1000, min_value=1, max_value=10_000_000),
            "hold_s": require_float(params, "hold_s", default=0.0, min_value=0.0, max_value=600.0),
            "hold_after_s": require_float(params, "hold_after_s", default=0.0, min_value=0.0, max_value=600.0),
            "uses": uses}


def disk_bytes_avatar(job: dict) -> int:
    return job["points"] * SPLAT_ATTRIBUTES * 4


def run_avatar(ctx: JobContext, job: dict) -> dict:
    n = job["points"]
    splats = np.arange(n * SPLAT_ATTRIBUTES, dtype=np.float32).reshape(n, SPLAT_ATTRIBUTES)
    binding = (np.arange(n, dtype=np.uint32) * 7) % 9976
    with ctx.store.begin() as writer:
        writer.write("splats.npy", splats)
        writer.write("head.npz", {"binding": binding, "shape": np.zeros(300, dtype=np.float32)})
        writer.write("note.txt", f"test avatar {job['name']}".encode())
        ctx.progress("writing", 0.5, "files staged")
        _sleep_checking(ctx, job["hold_s"])
        writer.commit({"name": job["name"], "config": {"kind": "test.avatar", "points": n}})
    ctx.progress("published", 0.9, "published")
    _sleep_checking(ctx, job["hold_after_s"], check=False)  # published, not yet recorded as done
    ctx.progress("done", 1.0, "published")
    return {"avatar": writer.avatar_id}


# ----------------------------------------------------------------------------- test.image

def validate_image(params: dict, server_ctx):
    return require_image(params, "image", server_ctx.limits)


def run_image(ctx: JobContext, image) -> dict:
    return {"width": image.width, "height": image.height, "format": image.format}


# ----------------------------------------------------------------------------- debug.echo

def echo(server_ctx, call) -> dict:
    return {"echo": call.params}


def fail(server_ctx, call) -> dict:
    raise RuntimeError("debug.fail was called")


def register(server_ctx) -> None:
    """Plugin entry (see compute_server.server.app)."""
    registry = server_ctx.registry
    registry.add_job_kind(JobKind("test.count", validate_count, run_count))
    registry.add_job_kind(JobKind("test.avatar", validate_avatar, run_avatar,
                                  avatars_used=lambda job: [job["uses"]] if job["uses"] else [],
                                  disk_bytes=disk_bytes_avatar))
    registry.add_job_kind(JobKind("test.image", validate_image, run_image,
                                  summarize=lambda image: {"format": image.format, "width": image.width,
                                                           "height": image.height}))
    registry.add("debug.echo", echo)
    registry.add("debug.fail", fail)

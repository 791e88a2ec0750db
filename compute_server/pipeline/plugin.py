"""Plugs the pipeline into the server: the job kinds behind ``avatar.create``,
``motion.track`` and ``render.frames``, and what ``server.info`` lists as head models and
diffusion models. Loaded by ``compute_server.server.app`` at start."""

from __future__ import annotations

import logging

from ..gpu_memory import classify_out_of_memory
from ..jobs.context import JobKind
from . import avatar_create, motion_track, render_frames
from .head_models import HeadModelCatalog
from .services import PipelineServices

log = logging.getLogger(__name__)

# What one avatar.create job writes at most (a high-preset avatar: ~500k splats, rig, previews).
AVATAR_DISK_BYTES = 160 * 2**20


def _diffusion_models(server_ctx):
    try:
        from ..diffusion.registry import register as register_diffusion
    except ModuleNotFoundError as exc:  # the diffusion extra is optional
        log.info("diffusion backends unavailable: %s", exc)
        return None
    return register_diffusion(server_ctx)


def register(server_ctx) -> None:
    catalog = HeadModelCatalog(server_ctx.config.head_models)
    services = PipelineServices(head_models=catalog, diffusion=_diffusion_models(server_ctx))
    server_ctx.providers.head_models = catalog.describe
    server_ctx.pipeline = services
    classifiers = getattr(getattr(server_ctx, "jobs", None), "error_classifiers", None)
    if classifiers is not None and classify_out_of_memory not in classifiers:
        classifiers.append(classify_out_of_memory)  # any job that runs the GPU out of memory
    disk = {avatar_create: lambda req: AVATAR_DISK_BYTES, motion_track: motion_track.disk_bytes,
            render_frames: render_frames.disk_bytes}
    for module, uses in ((avatar_create, None), (motion_track, None),
                         (render_frames, lambda req: [req.avatar])):
        name = {avatar_create: "avatar.create", motion_track: "motion.track", render_frames: "render.frames"}[module]
        server_ctx.registry.add_job_kind(JobKind(
            name,
            validate=lambda params, ctx, m=module: m.validate(params, ctx, services),
            run=lambda job_ctx, req, m=module: m.run(job_ctx, req, services),
            summarize=module.summarize,
            avatars_used=uses,
            result_part=getattr(module, "result_part", None),
            disk_bytes=disk[module]))

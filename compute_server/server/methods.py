"""The built-in methods: server.info, job.*, avatar.list/get/delete.

Each handler takes ``(ctx: ServerContext, call: Call)`` and returns the result map; a
``UserError`` becomes an error reply. They run on the network thread, so they only do
quick work (avatar.get memory-maps ``.npy`` arrays instead of reading them).
"""

from __future__ import annotations

import time

from compute_server.errors import UserError
from compute_server.storage.avatar_store import check_avatar_id
from compute_server.validation import require_bool, require_int, require_list, require_str
from shared import PROTOCOL_VERSION
from shared.records import JobState

from .health import server_health
from .registry import PIPELINE_METHODS, Call, MethodRegistry

SERVER_NAME = "HeadSplat compute server"


def server_info(ctx, call: Call) -> dict:
    cluster = {"cluster": ctx.cluster.describe()} if ctx.cluster is not None else {}
    return {
        "name": SERVER_NAME,
        "version": ctx.version,
        "protocol": PROTOCOL_VERSION,
        "device": ctx.device_description,
        "head_models": list(ctx.providers.head_models()),
        "diffusion_models": list(ctx.providers.diffusion_models()),
        "limits": ctx.limits.to_wire(),
        "queue": ctx.jobs.counts(),
        "uptime_s": round(time.time() - ctx.started_at, 3),
        "methods": ctx.registry.implemented(),
        "secure": ctx.secure,
        "doctor": ctx.providers.doctor(),
        "health": server_health(ctx),
        **cluster,
    }


def job_status(ctx, call: Call) -> dict:
    job_id = require_str(call.params, "job", max_chars=64)
    info = ctx.jobs.info(job_id)
    if require_bool(call.params, "watch", default=False) and not info.state.finished:
        ctx.events.watch(job_id, call.client)
    return info.to_wire()


def job_list(ctx, call: Call) -> dict:
    states = None
    if call.params.get("states") is not None:
        names = require_list(call.params, "states", max_items=5)
        try:
            states = {JobState(name) for name in names}
        except ValueError:
            raise UserError("bad_request", "params.states must list states among "
                                           + ", ".join(s.value for s in JobState)) from None
    limit = require_int(call.params, "limit", default=100, min_value=1, max_value=10_000)
    return {"jobs": [info.to_wire() for info in ctx.jobs.list(states, limit)]}


def job_cancel(ctx, call: Call) -> dict:
    return ctx.jobs.cancel(require_str(call.params, "job", max_chars=64)).to_wire()


def job_result(ctx, call: Call) -> dict:
    job_id = require_str(call.params, "job", max_chars=64)
    result = ctx.jobs.result(job_id)
    extra = {k: v for k, v in call.params.items() if k != "job"}
    if extra:
        kind = ctx.registry.job_kinds.get(ctx.jobs.info(job_id).kind)
        if kind is None or kind.result_part is None:
            raise UserError("bad_request", f"job.result takes only 'job' for {ctx.jobs.info(job_id).kind} jobs; "
                                           f"unexpected {', '.join(sorted(extra))}")
        result = {**result, **kind.result_part(ctx.jobs.output_dir(job_id), result, extra)}
    return {"job": job_id, "result": result}


def avatar_list(ctx, call: Call) -> dict:
    return {"avatars": [summary.to_wire() for summary in ctx.store.list()]}


def avatar_get(ctx, call: Call) -> dict:
    avatar_id = check_avatar_id(require_str(call.params, "avatar", max_chars=64))
    include = None
    if call.params.get("include") is not None:
        include = require_list(call.params, "include", max_items=256)
        if not all(isinstance(name, str) for name in include):
            raise UserError("bad_request", "params.include must be a list of file names")
    metadata, arrays, files = ctx.store.get(avatar_id, include)
    return {"avatar": avatar_id, "metadata": metadata, "arrays": arrays, "files": files}


def avatar_delete(ctx, call: Call) -> dict:
    avatar_id = check_avatar_id(require_str(call.params, "avatar", max_chars=64))
    if avatar_id in ctx.jobs.avatars_in_use():
        raise UserError("conflict", f"avatar {avatar_id} is used by a queued or running job; "
                                    "cancel that job or wait for it to finish, then delete the avatar")
    ctx.store.delete(avatar_id)
    return {"avatar": avatar_id, "deleted": True}


def register_builtin_methods(registry: MethodRegistry) -> None:
    """The methods every server has, plus placeholders for the pipeline methods."""
    for name, handler in (("server.info", server_info), ("job.status", job_status), ("job.list", job_list),
                          ("job.cancel", job_cancel), ("job.result", job_result), ("avatar.list", avatar_list),
                          ("avatar.get", avatar_get), ("avatar.delete", avatar_delete)):
        registry.add(name, handler)
    for name in PIPELINE_METHODS:
        registry.add_placeholder(name)

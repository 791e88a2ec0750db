"""Method dispatch: method name -> handler, and job kinds behind the heavy methods.

Plugins (see app.py, ``PLUGIN_MODULES``) add methods with ``add`` and job kinds with
``add_job_kind``; a job kind replaces the placeholder that answers ``unavailable`` for
``avatar.create``, ``motion.track`` and ``render.frames`` until a later issue provides
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compute_server.errors import UserError
from compute_server.jobs.context import JobKind
from compute_server.jobs.records import summarize

PIPELINE_METHODS = ("avatar.create", "motion.track", "render.frames")


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it.

    params: decoded params (arrays are read-only views over the received frames).
    client: the caller's ZeroMQ routing id (to route job events to it).
    """

    method: str
    params: dict
    client: bytes
    request_id: str


Handler = Callable[[Any, Call], dict]  # (ServerContext, Call) -> result map


class MethodRegistry:
    """Handlers by method name; handlers run on the network thread and must be quick."""

    def __init__(self):
        self._handlers: dict[str, Handler] = {}
        self._placeholders: set[str] = set()
        self.job_kinds: dict[str, JobKind] = {}

    def add(self, name: str, handler: Handler) -> None:
        """Register a handler; replacing anything but a placeholder is an error."""
        if name in self._handlers and name not in self._placeholders:
            raise ValueError(f"method {name!r} is registered twice")
        self._handlers[name] = handler
        self._placeholders.discard(name)

    def add_placeholder(self, name: str) -> None:
        """A method this protocol defines but this server does not implement yet."""

        def unavailable(ctx, call: Call) -> dict:
            raise UserError("unavailable", f"{call.method} is not implemented in this server yet "
                                           f"(HeadSplat {ctx.version}); update the server")

        self._handlers[name] = unavailable
        self._placeholders.add(name)

    def add_job_kind(self, kind: JobKind) -> None:
        """Register a job kind under its method name: a request is validated on the
        network thread, queued, and answered with ``{"job": id, "state", "position"}``;
        its events go to the caller."""

        def submit(ctx, call: Call) -> dict:
            job_input = kind.validate(call.params, ctx)
            params_summary = kind.summarize(job_input) if kind.summarize else summarize(call.params)
            info = ctx.jobs.submit(kind, job_input, params_summary, client=call.client)
            ctx.events.watch(info.job, call.client)
            return {"job": info.job, "state": info.state.value, "position": info.position}

        self.add(kind.name, submit)
        self.job_kinds[kind.name] = kind

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def implemented(self) -> list[str]:
        """Method names that do something (placeholders excluded), sorted."""
        return sorted(n for n in self._handlers if n not in self._placeholders)

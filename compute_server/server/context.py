"""What method handlers and job validators see of the server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared import __version__
from shared.protocol import Limits

from .config import ServerConfig
from .registry import MethodRegistry


def _builtin_head_models() -> list[dict]:
    return [{"name": "builtin", "default": True}]


@dataclass
class InfoProviders:
    """Callables that fill ``server.info``; plugins replace them (e.g. the head-model
    plugin lists FLAME files it found, the diffusion plugin the installed models).
    Each model provider returns a list of maps with at least ``name``; ``doctor`` returns
    one map and must be cheap (it is called on every ``server.info``)."""

    head_models: Callable[[], list[dict]] = _builtin_head_models
    diffusion_models: Callable[[], list[dict]] = list
    doctor: Callable[[], dict] = dict   # the doctor's cached summary (compute_server.doctor.plugin)


@dataclass
class ServerContext:
    """The server's parts, shared by handlers (network thread) and plugins.

    store: compute_server.storage.AvatarStore.  jobs: compute_server.jobs.JobManager.
    events: the EventBus (``events.watch(job, client)`` routes a job's events).
    device: the torch device jobs compute on; device_description: its human name.
    """

    config: ServerConfig
    store: Any
    jobs: Any
    events: Any
    registry: MethodRegistry
    device: Any
    device_description: str
    providers: InfoProviders = field(default_factory=InfoProviders)
    started_at: float = field(default_factory=time.time)
    version: str = __version__
    secure: bool = False
    cluster: Any = None   # compute_server.cluster.setup.ClusterView when jobs run on a Ray cluster

    @property
    def limits(self) -> Limits:
        return self.config.limits

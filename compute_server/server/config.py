"""The server's configuration: one dataclass built by the CLI (or by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from compute_server.jobs.retention import RetentionPolicy
from compute_server.storage.data_dir import default_data_dir
from shared.protocol import DEFAULT_ENDPOINT, Limits

# libzmq drops (and disconnects) any single frame above this many bytes over the
# configured message limit; frames between the two get a polite too_large reply.
HARD_CAP_MARGIN_BYTES = 16 * 2**20


@dataclass(frozen=True)
class CurveConfig:
    """CURVE encryption and client authentication.

    secret_key_file: the server's secret certificate (``server.key_secret`` made by
        ``headsplat keys``).
    authorized_clients_dir: a folder of client public certificates (``*.key``); only
        those clients may connect. Read at start: restart the server after changes.
    """

    secret_key_file: Path
    authorized_clients_dir: Path


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``headsplat serve`` can set.

    bind: ZeroMQ endpoint to listen on (``tcp://HOST:PORT``; port ``*`` picks a free one).
    data_dir: the data directory (avatars, job records).
    device: "auto", "cpu" or "cuda[:N]".
    limits: message/image/frame/queue limits (shared.protocol.Limits).
    curve: CURVE keys; required for non-loopback binds unless ``insecure``.
    insecure: allow a non-loopback bind without encryption (trusted networks only).
    head_models, models_config: read by the head-model and diffusion plugins.
    plugins: extra plugin modules to load after the built-in ones (``--plugin``; the tests load
             their test-only job kinds this way).
    shutdown_grace_s: how long a running job may take to stop on SIGTERM/SIGINT.
    retention: which finished jobs (records and results) are forgotten, and when.
    cluster: a Ray cluster address (``auto``, ``HOST:PORT``) to run the jobs on instead of
        this process (compute_server/cluster/); None: the embedded worker thread.
    cluster_workers, worker_gpus: how many workers to start on the cluster (default: one
        per GPU, or per CPU without GPUs) and the GPUs each takes.
    """

    bind: str = DEFAULT_ENDPOINT
    data_dir: Path = field(default_factory=default_data_dir)
    device: str = "auto"
    limits: Limits = field(default_factory=Limits)
    curve: CurveConfig | None = None
    insecure: bool = False
    head_models: list[str] = field(default_factory=list)
    models_config: str | None = None
    log_level: str = "INFO"
    log_format: str = "human"
    plugins: tuple[str, ...] = ()
    shutdown_grace_s: float = 5.0
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    cluster: str | None = None
    cluster_workers: int | None = None
    worker_gpus: float | None = None

    @property
    def hard_max_frame_bytes(self) -> int:
        return self.limits.max_message_bytes + HARD_CAP_MARGIN_BYTES

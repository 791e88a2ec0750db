"""``headsplat serve``: run the compute server until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from compute_server.errors import UserError
from compute_server.jobs.retention import RetentionPolicy
from compute_server.storage.atomic import atomic_write_bytes
from compute_server.storage.data_dir import default_data_dir
from shared.protocol import DEFAULT_ENDPOINT, Limits


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the compute server",
                              description="Run the HeadSplat compute server (stop it with Ctrl-C or SIGTERM).")
    p.add_argument("--bind", metavar="ADDR", default=DEFAULT_ENDPOINT,
                   help=f"endpoint to listen on (default {DEFAULT_ENDPOINT}; port * picks a free one)")
    p.add_argument("--data", metavar="DIR", type=Path, default=None,
                   help=f"data directory for avatars and jobs (default $HEADSPLAT_DATA or {default_data_dir()})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--curve-secret", metavar="FILE", type=Path,
                   help="the server's secret key file (server.key_secret from `headsplat keys`)")
    p.add_argument("--curve-clients", metavar="DIR", type=Path,
                   help="folder of authorized client public keys (*.key)")
    p.add_argument("--insecure", action="store_true",
                   help="allow listening on a non-loopback address without CURVE (trusted networks only)")
    p.add_argument("--log-format", choices=("human", "json"), default="human")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    defaults = Limits()
    p.add_argument("--max-message-mb", type=float, default=defaults.max_message_bytes / 2**20,
                   help="largest request in MiB (default %(default)g)")
    p.add_argument("--max-image-mp", type=float, default=defaults.max_image_pixels / 1e6,
                   help="largest image in megapixels (default %(default)g)")
    p.add_argument("--max-render-frames", type=int, default=defaults.max_render_frames,
                   help="most frames per render request (default %(default)d)")
    p.add_argument("--max-queued-jobs", type=int, default=defaults.max_queued_jobs,
                   help="most jobs waiting behind the running one (default %(default)d)")
    p.add_argument("--max-image-side", type=int, default=defaults.max_image_side,
                   help="widest or tallest image a render may ask for, in pixels (default %(default)d)")
    p.add_argument("--max-video-frames", type=int, default=defaults.max_video_frames,
                   help="most frames read from one video by motion.track (default %(default)d)")
    p.add_argument("--min-free-mb", type=float, default=defaults.min_free_bytes / 2**20,
                   help="free space (MiB) the data disk keeps beyond what a job writes; jobs that would go "
                        "below it are refused with no_space (default %(default)g)")
    p.add_argument("--keep-jobs", type=int, default=RetentionPolicy.keep_jobs, metavar="N",
                   help="finished jobs kept, records and results (rendered frames), newest first "
                        "(default %(default)d; avatars are never removed)")
    p.add_argument("--keep-job-days", type=float, default=RetentionPolicy.keep_days, metavar="DAYS",
                   help="forget finished jobs older than this; 0 keeps them regardless of age (default %(default)g)")
    p.add_argument("--head-model", metavar="PATH", action="append", default=[],
                   help="a head model file (e.g. FLAME) to offer; repeatable")
    p.add_argument("--models-config", metavar="FILE", help="diffusion models configuration file")
    p.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                   help="an extra plugin module to load (it defines register(ctx) and adds methods or job "
                        "kinds); repeatable")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the jobs on a Ray cluster: 'auto' joins the cluster this machine belongs to "
                        "(`ray start`), HOST:PORT names its head, ray://HOST:10001 joins from a machine "
                        "that is not a node, through Ray Client (needs headsplat[cluster]; see docs/cluster.md)")
    p.add_argument("--cluster-workers", type=int, metavar="N",
                   help="job workers to start on the cluster (default: one per GPU, or per CPU without GPUs)")
    p.add_argument("--worker-gpus", type=float, metavar="F",
                   help="GPUs each cluster worker takes, e.g. 0.5 for two per GPU (default 1 with GPUs)")
    p.add_argument("--endpoint-file", metavar="FILE", type=Path,
                   help="write the bound endpoint here once serving (useful with port *)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from compute_server.server.config import CurveConfig, ServerConfig

    curve = None
    if args.curve_secret or args.curve_clients:
        if not (args.curve_secret and args.curve_clients):
            raise UserError("bad_request", "CURVE needs both --curve-secret FILE and --curve-clients DIR")
        curve = CurveConfig(args.curve_secret, args.curve_clients)
    limits = Limits(max_message_bytes=int(args.max_message_mb * 2**20),
                    max_image_pixels=int(args.max_image_mp * 1e6),
                    max_render_frames=args.max_render_frames, max_queued_jobs=args.max_queued_jobs,
                    max_image_side=args.max_image_side, max_video_frames=args.max_video_frames,
                    min_free_bytes=int(args.min_free_mb * 2**20))
    try:
        retention = RetentionPolicy(keep_jobs=args.keep_jobs, keep_days=args.keep_job_days)
    except ValueError as exc:
        raise UserError("bad_request", f"--keep-jobs / --keep-job-days: {exc}") from None
    return ServerConfig(bind=args.bind, data_dir=args.data or default_data_dir(), device=args.device, limits=limits,
                        curve=curve, insecure=args.insecure, head_models=list(args.head_model),
                        models_config=args.models_config, log_level=args.log_level, log_format=args.log_format,
                        plugins=tuple(args.plugin), retention=retention,
                        cluster=args.cluster, cluster_workers=args.cluster_workers, worker_gpus=args.worker_gpus)


def run(args: argparse.Namespace) -> int:
    from compute_server.server.app import Server
    from compute_server.server.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    server = Server(config_from_args(args))

    def request_stop(signum, frame):
        server.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if args.endpoint_file:
        try:
            atomic_write_bytes(args.endpoint_file, server.endpoint.encode())
        except OSError as exc:  # e.g. a full disk: say so instead of a traceback
            server.stop()
            server.serve_forever()  # returns at once: shuts the server down cleanly
            raise UserError("bad_request", f"cannot write the endpoint file {args.endpoint_file}: "
                                           f"{exc.strerror}") from None
    server.serve_forever()
    return 0

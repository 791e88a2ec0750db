"""Connecting the client commands to a server, starting an embedded one when none answers.

``headsplat create/track/render`` work out of the box on a single machine: if no server
answers at the address (and the address is on this machine), they start one in-process
for the duration of the command, on the same data directory ``headsplat serve`` would use,
so the avatars they make are there for the next command and for Blender.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from shared.client import Client, ServerUnavailable

from ..server.security import is_loopback_endpoint
from .common import connect

log = logging.getLogger(__name__)


def add_embedded_options(parser) -> None:
    parser.add_argument("--data", metavar="DIR", type=Path,
                        help="data directory of an embedded server (default: the per-user data folder)")
    parser.add_argument("--device", default="auto", help="device of an embedded server: auto, cpu or cuda")


@contextlib.contextmanager
def server_session(args, *, quiet: bool = False):
    """Yield a connected Client; an embedded server is started (and stopped) if needed."""
    client = connect(args)
    try:
        client.info(timeout_s=min(args.timeout, 3.0))
        yield client
        return
    except ServerUnavailable:
        client.close()
        if args.server_key or not is_loopback_endpoint(args.server):
            raise
    from ..server.app import Server
    from ..server.config import ServerConfig
    from ..server.logs import configure_logging
    from ..storage.data_dir import default_data_dir

    configure_logging("WARNING")
    config = ServerConfig(bind=args.server, data_dir=args.data or default_data_dir(), device=args.device)
    if not quiet:
        print(f"headsplat: no server at {args.server}; starting one in this process (data {config.data_dir})")
    server = Server(config)
    server.start_background()
    client = Client(server.endpoint, timeout_s=max(args.timeout, 30.0))
    try:
        yield client
    finally:
        client.close()
        server.stop()
        server.join(60.0)

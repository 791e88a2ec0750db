"""Options and helpers shared by the client subcommands (info, jobs, and later ones)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from compute_server.errors import UserError
from shared.client import Client, ServerUnavailable, load_curve_keys
from shared.protocol import DEFAULT_ENDPOINT

ENV_SERVER = "HEADSPLAT_SERVER"
DEFAULT_TIMEOUT_S = 5.0


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="ADDR", default=os.environ.get(ENV_SERVER, DEFAULT_ENDPOINT),
                        help=f"server endpoint (default ${ENV_SERVER} or {DEFAULT_ENDPOINT})")
    parser.add_argument("--server-key", metavar="FILE",
                        help="the server's public key file (server.key) for a CURVE server")
    parser.add_argument("--client-key", metavar="FILE",
                        help="this client's secret key file (client.key_secret) for a CURVE server")
    parser.add_argument("--timeout", metavar="S", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")


def connect(args) -> Client:
    """A Client for the server named by the options above."""
    keys = {}
    if args.server_key or args.client_key:
        if not (args.server_key and args.client_key):
            raise UserError("bad_request", "a CURVE server needs both --server-key and --client-key")
        try:
            keys = load_curve_keys(args.server_key, args.client_key)
        except (OSError, ValueError) as exc:
            raise UserError("bad_file", f"cannot read the CURVE keys: {exc}") from None
    try:
        return Client(args.server, timeout_s=args.timeout, **keys)
    except ValueError as exc:
        raise UserError("bad_request", str(exc)) from None


def unavailable(args) -> ServerUnavailable:
    """The error for 'nobody answered', with what to do about it."""
    hint = ("start one with `headsplat serve`; if it runs with CURVE keys, connect with --server-key and "
            "--client-key" if not args.server_key else
            "start it, or check that this client's key is in the server's --curve-clients folder (the server "
            "logs each client it refuses)")
    return ServerUnavailable(args.server, f"no HeadSplat server answered at {args.server} within "
                                          f"{args.timeout:g} s; {hint}")


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")


def format_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"

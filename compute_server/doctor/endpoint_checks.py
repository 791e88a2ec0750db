"""The server's endpoint: the address can be bound, and where it is reachable from other
machines the CURVE keys are present and readable.

Why before a start: ``headsplat serve`` refuses a non-loopback bind without keys and
stops on an unreadable key file; saying so here, with the fix, spares a user reading a
traceback of a service that failed to start.
"""

from __future__ import annotations

import zmq

from ..errors import UserError
from ..server.config import CurveConfig
from ..server.security import is_loopback_endpoint, load_server_keys
from .records import FAIL, OK, WARN, Check, DoctorSettings

GROUP = "endpoint"
KEYS_FIX = ("make keys with `headsplat keys --out DIR`, then pass --curve-secret DIR/server.key_secret and "
            "--curve-clients DIR/clients")


def _check(name: str, verdict: str, detail: str, fix: str = "") -> Check:
    return Check(name, verdict, detail, fix, GROUP)


def _headsplat_answers(endpoint: str) -> str | None:
    """The version of a HeadSplat server answering at a loopback endpoint, else None."""
    if not is_loopback_endpoint(endpoint):
        return None
    from shared.client import Client, ServerError, ServerUnavailable

    try:
        with Client(endpoint, timeout_s=1.5) as client:
            return str(client.info().get("version", "?"))
    except (ServerUnavailable, ServerError, ValueError, OSError):
        return None


def bind_check(endpoint: str) -> Check:
    context = zmq.Context.instance()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        version = _headsplat_answers(endpoint) if exc.errno == zmq.EADDRINUSE else None
        if version is not None:
            return _check("endpoint bindable", OK, f"a HeadSplat server {version} already listens on {endpoint}")
        return _check("endpoint bindable", FAIL, f"cannot listen on {endpoint}: {exc.strerror}",
                      "stop what uses that port or pass another address with --bind")
    finally:
        sock.close(linger=0)
    return _check("endpoint bindable", OK, f"{endpoint} can be bound")


def security_check(settings: DoctorSettings) -> Check:
    if settings.curve_secret or settings.curve_clients:
        if not (settings.curve_secret and settings.curve_clients):
            return _check("CURVE keys", FAIL, "CURVE needs both --curve-secret FILE and --curve-clients DIR", KEYS_FIX)
        curve = CurveConfig(settings.curve_secret, settings.curve_clients)
        try:
            load_server_keys(curve)
        except UserError as exc:
            return _check("CURVE keys", FAIL, exc.message, KEYS_FIX)
        clients = sorted(curve.authorized_clients_dir.glob("*.key")) if curve.authorized_clients_dir.is_dir() else []
        if not clients:
            return _check("CURVE keys", FAIL, f"no client public keys (*.key) in {curve.authorized_clients_dir}",
                          "copy each client's public '.key' file into that folder")
        return _check("CURVE keys", OK, f"server key readable, {len(clients)} authorized client key(s)")
    if is_loopback_endpoint(settings.bind):
        return _check("CURVE keys", OK, f"{settings.bind} is loopback only: no keys needed")
    if settings.insecure:
        return _check("CURVE keys", WARN, f"{settings.bind} is reachable from other machines WITHOUT encryption "
                                          "(--insecure): anyone who reaches the port can use the server", KEYS_FIX)
    return _check("CURVE keys", FAIL, f"{settings.bind} is reachable from other machines and no CURVE keys are "
                                      "given: the server refuses to start", KEYS_FIX + " (or bind 127.0.0.1)")


def checks(settings: DoctorSettings) -> list[Check]:
    try:
        bind = bind_check(settings.bind)
    except ValueError as exc:  # not an endpoint zmq understands
        bind = _check("endpoint bindable", FAIL, f"{settings.bind}: {exc}", "use tcp://HOST:PORT")
    return [bind, security_check(settings)]

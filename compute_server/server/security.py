"""Transport security: who may listen where, CURVE keys, and client authentication.

Rules (docs/protocol.md, "Security"): the server binds loopback by default. A bind that
other machines could reach needs CURVE (encryption plus a folder of authorized client
public keys) or an explicit ``--insecure``. With CURVE, a client whose key is not
authorized fails the handshake and never gets a byte from the server.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from compute_server.errors import UserError

from .config import CurveConfig, ServerConfig

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = {"localhost", "lo", "lo0"}
REFUSAL_LOG_EVERY_S = 10.0  # at most one warning per this many seconds about refused clients


def endpoint_host(endpoint: str) -> tuple[str, str]:
    """``"tcp://127.0.0.1:7788"`` -> ``("tcp", "127.0.0.1")``; IPv6 brackets removed."""
    transport, sep, address = endpoint.partition("://")
    if not sep or not transport or not address:
        raise UserError("bad_request", f"{endpoint!r} is not a ZeroMQ endpoint; use e.g. tcp://127.0.0.1:7788")
    if transport != "tcp":
        return transport, address
    host, colon, _port = address.rpartition(":")
    if not colon or not host:
        raise UserError("bad_request", f"{endpoint!r} needs a host and a port, e.g. tcp://127.0.0.1:7788")
    if ";" in host:  # "source;destination" syntax: only the local part matters for bind
        host = host.split(";", 1)[1]
    return transport, host.strip("[]")


def is_loopback_endpoint(endpoint: str) -> bool:
    """True if only this machine can reach ``endpoint`` (loopback TCP, ipc, inproc)."""
    transport, host = endpoint_host(endpoint)
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: assume reachable
        return False


def check_bind_allowed(config: ServerConfig) -> None:
    """Refuse a reachable bind without CURVE unless the user said --insecure."""
    if is_loopback_endpoint(config.bind) or config.curve is not None:
        return
    if config.insecure:
        log.warning("listening on %s WITHOUT encryption or authentication (--insecure): anyone who can reach "
                    "this port can use the server", config.bind)
        return
    raise UserError("bad_request", f"refusing to listen on {config.bind} without encryption: other machines could "
                                   "use this server. Make keys with `headsplat keys --out DIR` and pass "
                                   "--curve-secret/--curve-clients, bind 127.0.0.1, or add --insecure on a trusted "
                                   "network")


def load_server_keys(curve: CurveConfig) -> tuple[bytes, bytes]:
    """-> (public, secret) Z85 keys from the server's secret certificate file."""
    path = Path(curve.secret_key_file)
    try:
        public, secret = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as exc:
        raise UserError("bad_file", f"cannot read the server key {path}: {exc}; make one with "
                                    "`headsplat keys --out DIR`") from None
    if not secret:
        raise UserError("bad_file", f"{path} holds no secret key; pass the server's '.key_secret' file")
    return public, secret


def start_authenticator(context: zmq.Context, curve: CurveConfig) -> ThreadAuthenticator:
    """Start the ZAP handler that admits only clients whose public certificate is in
    ``curve.authorized_clients_dir`` (read once, now)."""
    folder = Path(curve.authorized_clients_dir)
    if not folder.is_dir():
        raise UserError("bad_file", f"the authorized clients folder {folder} does not exist; create it and copy "
                                    "each client's public '.key' file into it")
    if not any(folder.glob("*.key")):
        log.warning("no client keys in %s: no client can connect until one is added and the server restarted", folder)
    auth = LoggingAuthenticator(context, log=logging.getLogger("headsplat.auth"))
    auth.start()
    auth.configure_curve(domain="*", location=os.fspath(folder))
    return auth


class LoggingAuthenticator(ThreadAuthenticator):
    """The ZAP handler, plus a warning in the server log when it refuses a client (an
    unknown or spoofed key), at most one per REFUSAL_LOG_EVERY_S with a count of the
    others, so an operator sees why a user cannot connect and a flood cannot fill the log."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._address = "?"
        self._last_logged = float("-inf")
        self._unlogged = 0

    async def handle_zap_message(self, msg: list) -> None:  # runs in the authenticator's thread
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    async def _authenticate_curve(self, domain: str, client_key: bytes):
        allowed, reason = await super()._authenticate_curve(domain, client_key)
        if not allowed:
            self._refused(client_key, reason)
        return allowed, reason

    def _refused(self, client_key: bytes, reason: bytes) -> None:
        now = time.monotonic()
        if now - self._last_logged < REFUSAL_LOG_EVERY_S:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more refused since the last warning)" if self._unlogged else ""
        log.warning("refused a CURVE client from %s: %s, public key %s; to admit it, copy its public '.key' file "
                    "into the --curve-clients folder and restart the server%s", self._address,
                    reason.decode("utf-8", "replace").lower(), zmq.utils.z85.encode(client_key).decode(), more)
        self._last_logged, self._unlogged = now, 0


def make_curve_server(socket: zmq.Socket, public: bytes, secret: bytes) -> None:
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def create_key_pair(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` into ``out_dir``; refuses to
    overwrite existing keys. -> (public file, secret file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = out / f"{name}.key", out / f"{name}.key_secret"
    for path in (public_file, secret_file):
        if path.exists():
            raise UserError("conflict", f"{path} already exists; remove it or choose another --out/--name")
    public, secret = zmq.auth.create_certificates(os.fspath(out), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)

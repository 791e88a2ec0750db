"""The add-on's one connection per Blender session: building the Session from the
preferences, the timer that pumps it, and blocking in background mode.

Interactive Blender: operators send requests and return at once; ``_tick`` (a
``bpy.app.timers`` function, every 0.1 s while there is work) pumps the Session, whose
callbacks update scene properties and finish the work (import, writing frames).
Background mode (``blender -b``, render farms, scripts): the same operators call
``block_until``, which pumps the same Session in a loop until their work is done, so
scripts can chain operators. Nothing here ever waits on the network in interactive mode.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import bpy

from . import local_server as local_server_mod
from ._shared import PROTOCOL_VERSION, client_module
from .session import Failure, Session

log = logging.getLogger(__name__)

MIN_SERVER_VERSION = (0, 1, 0)
REQUIRED_METHODS = ("server.info", "job.status", "job.cancel", "job.result", "avatar.list", "avatar.get")
TICK_BUSY_S = 0.1

DISCONNECTED, CONNECTING, CONNECTED, ERROR = "DISCONNECTED", "CONNECTING", "CONNECTED", "ERROR"


@dataclass
class ConnectionState:
    """What the panel shows about the server (this Blender session only)."""

    status: str = DISCONNECTED
    message: str = "Not connected"
    info: dict = field(default_factory=dict)
    endpoint: str = ""


@dataclass
class Ticket:
    """One operator's pending work: ``finished`` once done; ``failure`` if it failed."""

    finished: bool = False
    failure: Failure | None = None
    message: str = ""
    value: object = None

    def succeed(self, message: str = "", value=None) -> None:
        self.finished, self.message, self.value = True, message, value

    def fail(self, failure: Failure) -> None:
        self.finished, self.failure = True, failure


_state = ConnectionState()
_session: Session | None = None
_session_key: tuple | None = None
_local_server = local_server_mod.LocalServer()
_blocking_override: bool | None = None


def state() -> ConnectionState:
    return _state


def local_server() -> local_server_mod.LocalServer:
    return _local_server


# ----------------------------------------------------------------------------- blocking


def set_blocking(value: bool | None) -> None:
    """Force blocking (True) or non-blocking (False) operators; None: block exactly in
    background mode. For tests and for scripts run inside an interactive Blender."""
    global _blocking_override
    _blocking_override = value


def is_blocking() -> bool:
    return bpy.app.background if _blocking_override is None else _blocking_override


def block_until(predicate, timeout_s: float | None = None) -> bool:
    """Pump the session until ``predicate()`` (background mode); -> whether it became true."""
    current = _session
    if current is None:
        return bool(predicate())
    return current.wait_until(predicate, timeout_s)


# ----------------------------------------------------------------------------- session


def _preferences():
    from .preferences import get_prefs

    return get_prefs()


def _key_paths(prefs) -> tuple[str, str]:
    return bpy.path.abspath(prefs.server_key_file).strip(), bpy.path.abspath(prefs.client_key_file).strip()


def get_session(*, create: bool = True) -> Session | None:
    """The Session for the endpoint and keys in the preferences (rebuilt when they
    change; jobs of the old one keep running on their server). Raises ValueError with a
    sentence when the preferences cannot make a client."""
    global _session, _session_key
    prefs = _preferences()
    server_key, client_key = _key_paths(prefs)
    key = (prefs.endpoint.strip(), server_key, client_key)
    if _session is not None and key == _session_key:
        _session.request_timeout_s = prefs.request_timeout_s
        _session.lost_contact_s = prefs.lost_contact_s
        return _session
    if not create:
        return None
    close_session()
    client_lib = client_module()
    kwargs = {}
    if server_key or client_key:
        if not (server_key and client_key):
            raise ValueError("CURVE needs both the server key file and the client key file in the HeadSplat "
                             "preferences (or neither, for a server without CURVE)")
        for path in (server_key, client_key):
            if not os.path.isfile(path):
                raise ValueError(f"the key file {path} does not exist; fix it in the HeadSplat preferences")
        kwargs = client_lib.load_curve_keys(server_key, client_key)
    client = client_lib.Client(key[0], timeout_s=prefs.request_timeout_s, **kwargs)
    _session = Session(client, request_timeout_s=prefs.request_timeout_s, lost_contact_s=prefs.lost_contact_s)
    _session_key = key
    _state.endpoint = key[0]
    return _session


def close_session() -> None:
    global _session, _session_key
    if _session is not None:
        _session.close()
    _session, _session_key = None, None
    _state.status, _state.message, _state.info = DISCONNECTED, "Not connected", {}


# ----------------------------------------------------------------------------- connect


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_server_info(info: dict) -> str | None:
    """A sentence saying why this server cannot be used, or None when it can."""
    if info.get("protocol") != PROTOCOL_VERSION:
        return (f"the server speaks protocol {info.get('protocol')!r} but this add-on speaks {PROTOCOL_VERSION}: "
                "update the server and the add-on to matching versions")
    if _version_tuple(info.get("version", "0")) < MIN_SERVER_VERSION:
        wanted = ".".join(map(str, MIN_SERVER_VERSION))
        return f"the server's version {info.get('version')} is too old for this add-on (needs {wanted} or newer): update it"
    missing = [m for m in REQUIRED_METHODS if m not in (info.get("methods") or [])]
    if missing:
        return f"the server lacks {', '.join(missing)}; it is too old for this add-on: update it"
    return None


def health_warning(info: dict) -> str | None:
    """The first problem the server reports about itself in ``server.info``'s ``health``
    (its disk is full or read-only, its job worker stopped), or None: shown on connect so
    a user hears "the server's disk is full" before submitting anything."""
    health = info.get("health") or {}
    problems = health.get("problems") or []
    return str(problems[0]) if health.get("ok") is False and problems else None


def describe_failure(failure: Failure, endpoint: str) -> str:
    """The sentence the panel and reports show for a failed request."""
    if failure.code == "timeout":
        prefs = _preferences()
        hint = ("the server is down or unreachable, or it refused this computer's CURVE key (check the server key "
                "file, and that the client key is in the server's authorized_clients folder)"
                if any(_key_paths(prefs)) else
                "is the server running? Start it with 'headsplat serve' or enable 'Start a Local Server' in the "
                "HeadSplat preferences. A server that uses CURVE keys also needs them set there")
        return f"no reply from {endpoint} within {prefs.request_timeout_s:g} s: {hint}"
    if failure.code == "unsupported_version":
        return f"{failure.message}; update the server and the add-on to matching versions"
    return failure.message


def failing(ticket: Ticket):
    """An ``on_error`` callback that ends ``ticket`` with the user-facing sentence."""
    endpoint = _state.endpoint

    def on_error(failure: Failure) -> None:
        ticket.fail(Failure(failure.code, describe_failure(failure, endpoint)))
    return on_error


_CONNECTED_HOOKS: list[Callable[[dict], None]] = []


def add_connected_hook(hook: Callable[[dict], None]) -> None:
    """Call ``hook(server_info)`` after every successful connect.

    Why a hook: what must happen on connect (the jobs module reattaching the scenes'
    unfinished jobs) lives above the transport; this module must not know about it.
    """
    if hook not in _CONNECTED_HOOKS:
        _CONNECTED_HOOKS.append(hook)


def remove_connected_hook(hook: Callable[[dict], None]) -> None:
    if hook in _CONNECTED_HOOKS:
        _CONNECTED_HOOKS.remove(hook)


def _run_connected_hooks(info: dict) -> None:
    for hook in list(_CONNECTED_HOOKS):
        try:
            hook(info)
        except Exception:  # a broken hook must not undo a good connection
            log.exception("HeadSplat: on-connected hook %r failed", hook)


def connect(ticket: Ticket | None = None) -> Ticket:
    """Ask the server for ``server.info``; the state (and ``ticket``) say how it went."""
    ticket = ticket or Ticket()
    try:
        _maybe_start_local_server()
        current = get_session()
    except (ValueError, ImportError, local_server_mod.LocalServerError, OSError) as exc:
        _state.status, _state.message = ERROR, str(exc)
        ticket.fail(Failure("bad_request", str(exc)))
        return ticket
    _state.status, _state.message = CONNECTING, f"Connecting to {current.endpoint}..."

    def on_info(info: dict) -> None:
        problem = check_server_info(info)
        if problem:
            _state.status, _state.message, _state.info = ERROR, problem, {}
            ticket.fail(Failure("unavailable", problem))
            return
        _state.status, _state.info = CONNECTED, info
        _state.message = f"HeadSplat server {info.get('version', '?')} on {info.get('device', '?')}"
        warning = health_warning(info)
        if warning:
            _state.message += f". Warning: {warning}"
        ticket.succeed(_state.message, info)
        _run_connected_hooks(info)

    def on_error(failure: Failure) -> None:
        message = describe_failure(failure, current.endpoint)
        _state.status, _state.message, _state.info = ERROR, message, {}
        ticket.fail(Failure(failure.code, message))

    current.request("server.info", on_result=on_info, on_error=on_error)
    ensure_timer()
    return ticket


def require_connected() -> Session:
    """The session of a connected server, or ValueError with what to do."""
    if _state.status != CONNECTED or _session is None:
        raise ValueError(f"not connected to a HeadSplat server ({_state.message}); press Connect in the "
                         "HeadSplat panel or call bpy.ops.headsplat.connect()")
    return get_session()


def server_has(method: str) -> bool:
    return method in (_state.info.get("methods") or [])


# ----------------------------------------------------------------------------- local server


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _maybe_start_local_server() -> None:
    prefs = _preferences()
    if prefs.start_local_server and _is_loopback(prefs.endpoint) and not _local_server.running:
        start_local_server()


def start_local_server() -> None:
    prefs = _preferences()
    _local_server.start(prefs.local_server_command, prefs.endpoint.strip())
    ensure_timer()


def stop_local_server() -> None:
    _local_server.stop()
    ensure_timer()


def local_server_status_line() -> str:
    status = _local_server.poll()
    if status.pid is None:
        return ""
    if status.running:
        return f"Local server running (pid {status.pid})"
    tail = status.log_tail.splitlines()[-1] if status.log_tail else ""
    return f"Local server exited with code {status.exit_code}" + (f": {tail}" if tail else "")


# ----------------------------------------------------------------------------- timer


def _tick():
    """Blender timer: pump the session; keep ticking while there is work."""
    handled = 0
    if _session is not None:
        try:
            handled = _session.pump(0)
        except Exception:  # never let the timer die; the session logs callback errors itself
            log.exception("HeadSplat: pumping the server connection failed")
    local = _local_server.poll()  # also kills a local server that ignored its stop request
    if local.pid is not None and not local.running and _state.status == CONNECTING:
        _state.status, _state.message = ERROR, local_server_status_line()
    if handled:
        redraw()
    session_busy = _session is not None and _session.busy
    return TICK_BUSY_S if session_busy or _local_server.stopping else None


def tick_function():
    """The timer function (tests call it the way Blender's event loop would)."""
    return _tick


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=0.0, persistent=True)


def redraw() -> None:
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "IMAGE_EDITOR", "PREFERENCES"):
                area.tag_redraw()


def shutdown() -> None:
    """On unregister / exit: stop the timer, close the socket, stop our local server."""
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    close_session()
    _local_server.stop_and_wait()

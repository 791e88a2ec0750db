"""The HeadSplat wire envelope: requests, replies, events, error codes and limits.

The contract is docs/protocol.md; this module follows it. A message is a ZeroMQ multipart
message: frame 0 is a msgpack map (the header), frames 1..n are raw buffers that the
header references (see ``wire_arrays``). Requests go client -> server; replies and events
go server -> client. Pure Python: msgpack and numpy only (no zmq, no server code), so the
Blender add-on and third-party tools can reuse it.

Frames handed to the decoders may be ``bytes``, ``memoryview`` or anything with a
``.buffer`` attribute holding a buffer (``zmq.Frame`` received with ``copy=False``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack

from . import PROTOCOL_VERSION
from .wire_arrays import INLINE_MAX_BYTES, WireFormatError, pack, unpack

DEFAULT_PORT = 7788
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
MAX_ID_CHARS = 128
MAX_METHOD_CHARS = 64
MAX_FRAMES = 4096  # frames per message, header included
# msgpack container limits for headers: bulk data belongs in arrays, not in huge lists.
_MAX_HEADER_ARRAY_LEN = 1_000_000
_MAX_HEADER_MAP_LEN = 100_000


class ErrorCode(str, enum.Enum):
    """Every ``error.code`` a server may send (docs/protocol.md, "Error codes")."""

    BAD_REQUEST = "bad_request"  # malformed message, wrong type, missing field
    UNSUPPORTED_VERSION = "unsupported_version"  # header "v" is not a supported version
    UNKNOWN_METHOD = "unknown_method"  # no such method on this server
    TOO_LARGE = "too_large"  # message bytes, image pixels, frame count over a limit
    NOT_FOUND = "not_found"  # unknown job or avatar id
    BUSY = "busy"  # the job queue is full
    CANCELLED = "cancelled"  # the job was cancelled
    INTERNAL = "internal"  # a server bug or environment failure (see the server log)
    NOT_READY = "not_ready"  # job.result of a job that has not finished
    INTERRUPTED = "interrupted"  # the server stopped or restarted while the job was pending
    CONFLICT = "conflict"  # e.g. deleting an avatar a queued or running job uses
    UNAVAILABLE = "unavailable"  # the method or model is not available on this server
    NO_FACE = "no_face"  # no usable face in an image
    BAD_IMAGE = "bad_image"  # an image that cannot be decoded
    BAD_FILE = "bad_file"  # a file (motion, mesh, ...) that does not follow its format
    BAD_MODEL = "bad_model"  # a head model or diffusion model that cannot be loaded
    OUT_OF_MEMORY = "out_of_memory"  # the GPU (or host) ran out of memory during a job; the server stays up
    NO_SPACE = "no_space"  # the server's data disk is full (or below its free-space floor); free space there
    TIMEOUT = "timeout"  # client-side only: no reply arrived in time (never sent by a server)

    def __str__(self) -> str:
        return self.value


METHODS = (
    "server.info",
    "job.status", "job.list", "job.cancel", "job.result",
    "avatar.create", "avatar.list", "avatar.get", "avatar.delete",
    "motion.track", "render.frames",
)

EVENT_PROGRESS = "job.progress"
EVENT_DONE = "job.done"
EVENT_FAILED = "job.failed"
EVENT_CANCELLED = "job.cancelled"
EVENTS = (EVENT_PROGRESS, EVENT_DONE, EVENT_FAILED, EVENT_CANCELLED)
FINAL_EVENTS = (EVENT_DONE, EVENT_FAILED, EVENT_CANCELLED)


@dataclass(frozen=True)
class Limits:
    """Server limits: every size a client can name is bounded here and checked when a
    request arrives, before anything is queued. Sent in ``server.info`` so clients can
    check before uploading.

    max_message_bytes: one request, all frames together.
    max_image_pixels: width * height of any image the server decodes or renders (photos,
        cameras, render sizes).
    max_image_side: width or height of any image the server renders, in pixels.
    max_render_frames: frames per render.frames request (also rows of head parameters).
    max_video_frames: frames a motion.track job reads from one video (longer videos are
        cut there, with a warning).
    max_queued_jobs: jobs waiting behind the running one.
    min_free_bytes: free space the data disk keeps beyond what a job will write; a job
        that would go below it is refused with ``no_space``.
    """

    max_message_bytes: int = 512 * 2**20
    max_image_pixels: int = 50_000_000
    max_render_frames: int = 10_000
    max_queued_jobs: int = 32
    max_image_side: int = 8192
    max_video_frames: int = 10_000
    min_free_bytes: int = 256 * 2**20

    def to_wire(self) -> dict:
        return {"max_message_bytes": self.max_message_bytes, "max_image_pixels": self.max_image_pixels,
                "max_render_frames": self.max_render_frames, "max_queued_jobs": self.max_queued_jobs,
                "max_image_side": self.max_image_side, "max_video_frames": self.max_video_frames,
                "min_free_bytes": self.min_free_bytes}


class ProtocolError(Exception):
    """A message that breaks the protocol; becomes an error reply with ``code``.

    request_id: the request's id when it could be read (else None, sent as null).
    details: extra fields for the error map (e.g. ``supported`` for unsupported_version).
    """

    def __init__(self, code: ErrorCode | str, message: str, request_id: str | None = None, **details):
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.request_id = request_id
        self.details = details


@dataclass(frozen=True)
class Request:
    """A decoded request: ``params`` with arrays/buffers already resolved (zero-copy)."""

    id: str
    method: str
    params: dict


@dataclass(frozen=True)
class ErrorInfo:
    """The ``error`` map of a reply or of a job.failed event."""

    code: str
    message: str
    details: dict = field(default_factory=dict)

    def to_wire(self) -> dict:
        return {**self.details, "code": self.code, "message": self.message}

    @classmethod
    def from_wire(cls, data) -> "ErrorInfo":
        if not isinstance(data, dict) or not isinstance(data.get("code"), str) or not isinstance(data.get("message"), str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "an error map must hold string fields 'code' and 'message'")
        details = {k: v for k, v in data.items() if k not in ("code", "message")}
        return cls(data["code"], data["message"], details)


@dataclass(frozen=True)
class Reply:
    """A server's answer to one request: exactly one of ``result``/``error`` is set.

    method: filled in by the client from its record of pending requests (None on the wire).
    """

    id: str | None
    result: dict | None = None
    error: ErrorInfo | None = None
    method: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Event:
    """A message the server pushes without a request: ``job.progress`` and the final
    ``job.done`` / ``job.failed`` / ``job.cancelled``."""

    name: str
    params: dict

    @property
    def job(self) -> str | None:
        return self.params.get("job")

    @property
    def final(self) -> bool:
        return self.name in FINAL_EVENTS


# ---------------------------------------------------------------------------- encoding


def _encode(header: dict, payload_key: str, payload, inline_max_bytes: int) -> list:
    tree, buffers = pack(payload, inline_max_bytes=inline_max_bytes)
    header[payload_key] = tree
    return [msgpack.packb(header, use_bin_type=True), *buffers]


def encode_request(request_id: str, method: str, params: dict | None = None, *,
                   inline_max_bytes: int = INLINE_MAX_BYTES) -> list:
    """-> frames ``[header, buffer...]`` of a request (buffers share memory with params' arrays)."""
    header = {"v": PROTOCOL_VERSION, "id": request_id, "method": method}
    return _encode(header, "params", params or {}, inline_max_bytes)


def encode_result(request_id: str, result: dict, *, inline_max_bytes: int = INLINE_MAX_BYTES) -> list:
    """-> frames of a successful reply."""
    return _encode({"v": PROTOCOL_VERSION, "id": request_id}, "result", result, inline_max_bytes)


def encode_error(request_id: str | None, code: ErrorCode | str, message: str, **details) -> list:
    """-> frames of an error reply; ``details`` become extra fields of the error map."""
    error = ErrorInfo(str(code), message, details).to_wire()
    return [msgpack.packb({"v": PROTOCOL_VERSION, "id": request_id, "error": error}, use_bin_type=True)]


def encode_event(name: str, params: dict, *, inline_max_bytes: int = INLINE_MAX_BYTES) -> list:
    """-> frames of an event (``params`` must hold ``job``)."""
    return _encode({"v": PROTOCOL_VERSION, "event": name}, "params", params, inline_max_bytes)


# ---------------------------------------------------------------------------- decoding


def frame_buffer(frame):
    """The buffer of a received frame without copying (``zmq.Frame`` or bytes-like)."""
    buffer = getattr(frame, "buffer", None)
    return buffer if buffer is not None else frame


def frame_nbytes(frame) -> int:
    buffer = frame_buffer(frame)
    return buffer.nbytes if isinstance(buffer, memoryview) else len(buffer)


def _decode_header(frame) -> dict:
    try:
        header = msgpack.unpackb(frame_buffer(frame), raw=False, strict_map_key=True, use_list=True,
                                 max_array_len=_MAX_HEADER_ARRAY_LEN, max_map_len=_MAX_HEADER_MAP_LEN)
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, StackError, UnicodeDecodeError...)
        raise ProtocolError(ErrorCode.BAD_REQUEST, _header_problem(exc)) from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"frame 0 must be a msgpack map, got a {type(header).__name__}")
    return header


def _header_problem(exc: Exception) -> str:
    """A sentence for why msgpack refused a header (its own texts are terse)."""
    text = str(exc)
    if "max_map_len" in text:
        return (f"frame 0 holds a map with too many entries ({text.split(' ')[0]}); headers may hold maps of at "
                f"most {_MAX_HEADER_MAP_LEN} entries: send bulk data as arrays ($nd) in extra frames")
    if "max_array_len" in text:
        return (f"frame 0 holds a list with too many items ({text.split(' ')[0]}); headers may hold lists of at "
                f"most {_MAX_HEADER_ARRAY_LEN} items: send bulk data as arrays ($nd) in extra frames")
    if "map key" in text:
        return "frame 0 holds a map with a key that is not a string; every map key must be a string"
    if isinstance(exc, UnicodeDecodeError):
        return "frame 0 holds a string that is not valid UTF-8"
    if type(exc).__name__ == "StackError":
        return "frame 0 is nested too deeply to be a HeadSplat header"
    return f"frame 0 is not a valid msgpack header ({type(exc).__name__})"


def _valid_id(value) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS else None


def peek_request_id(frame, max_bytes: int = 1 << 20) -> str | None:
    """Best-effort id of a request we refuse without decoding it (e.g. too_large)."""
    if frame_nbytes(frame) > max_bytes:
        return None
    try:
        return _valid_id(_decode_header(frame).get("id"))
    except ProtocolError:
        return None


def _check_version(header: dict, request_id: str | None) -> None:
    if "v" not in header:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "the header has no 'v' field (the protocol version, 1)",
                            request_id)
    version = header["v"]
    if type(version) is not int or version not in SUPPORTED_VERSIONS:  # 1.0 and True are not 1
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION,
                            f"protocol version {version!r} is not supported; this server speaks version "
                            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"[:300],
                            request_id, supported=list(SUPPORTED_VERSIONS))


def decode_request(frames: Sequence) -> Request:
    """Validate and decode a request's frames (routing envelope already removed).

    Raises ProtocolError with code bad_request / unsupported_version / too_large and the
    request id when it was readable. Whether the method exists is the server's business.
    """
    if not frames:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "the message is empty; frame 0 must be a msgpack header")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"the message has {len(frames)} frames; at most {MAX_FRAMES} are accepted")
    header = _decode_header(frames[0])
    raw_id = header.get("id")
    request_id = _valid_id(raw_id)
    _check_version(header, request_id)
    if request_id is None:
        what = "is missing" if raw_id is None else f"must be a string of 1..{MAX_ID_CHARS} characters"
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"the request 'id' {what}")
    method = header.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_CHARS:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "the request 'method' must be a method name string, e.g. 'server.info'",
                            request_id)
    params = header.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'params' must be a map, got a {type(params).__name__}", request_id)
    try:
        params = unpack(params, [frame_buffer(f) for f in frames[1:]], where="params")
    except WireFormatError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc), request_id) from None
    return Request(request_id, method, params)


def decode_server_message(frames: Sequence) -> Reply | Event:
    """Decode a reply or an event sent by a server; raises ProtocolError if malformed."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "empty message from the server")
    header = _decode_header(frames[0])
    if header.get("v") not in SUPPORTED_VERSIONS:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"the server sent protocol version {header.get('v')!r}")
    buffers = [frame_buffer(f) for f in frames[1:]]
    try:
        if "event" in header:
            params = unpack(header.get("params", {}), buffers, where="params")
            if not isinstance(header["event"], str) or not isinstance(params, dict):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "an event needs a string 'event' and a map 'params'")
            return Event(header["event"], params)
        request_id = header.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a reply 'id' must be a string or null")
        if "error" in header:
            return Reply(request_id, error=ErrorInfo.from_wire(header["error"]))
        result = unpack(header.get("result"), buffers, where="result")
        if not isinstance(result, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "a reply needs a map 'result' or 'error'")
        return Reply(request_id, result=result)
    except WireFormatError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(exc)) from None

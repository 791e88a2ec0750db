"""The wire encoding, without sockets: arrays, buffers, envelopes and their validation."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from shared.protocol import (
    ErrorCode, Event, ProtocolError, Reply, decode_request, decode_server_message, encode_error, encode_event,
    encode_request, encode_result,
)
from shared.wire_arrays import INLINE_MAX_BYTES, MAX_NESTING, WireFormatError, pack, unpack

DTYPES = ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
SHAPES = [(), (0,), (7,), (3, 4), (2, 0, 3), (2, 3, 4, 5)]


def roundtrip(obj):
    """pack -> msgpack -> bytes frames -> unpack, as a receiver would see it."""
    tree, buffers = pack(obj)
    header = msgpack.unpackb(msgpack.packb(tree, use_bin_type=True), raw=False)
    return unpack(header, [bytes(b) for b in buffers]), buffers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_arrays_of_every_dtype_and_shape_round_trip(dtype, shape):
    rng = np.random.default_rng(0)
    arr = np.asarray(rng.standard_normal(shape) * 100).astype(dtype)
    out, _ = roundtrip({"a": arr})
    assert out["a"].dtype == np.dtype(dtype).newbyteorder("<")
    assert out["a"].shape == shape
    np.testing.assert_array_equal(out["a"], arr)


def test_large_arrays_travel_in_their_own_frame_and_small_ones_inline():
    small = np.zeros(INLINE_MAX_BYTES // 4 - 1, np.float32)
    large = np.zeros(INLINE_MAX_BYTES // 4, np.float32)
    tree, buffers = pack({"small": small, "large": large})
    assert isinstance(tree["small"]["$nd"]["data"], bytes)
    assert tree["large"]["$nd"]["data"] == {"$buf": 1}
    assert len(buffers) == 1 and buffers[0].nbytes == large.nbytes


def test_nested_buffers_and_bytes_like_values_round_trip():
    big = bytes(range(256)) * 1024  # 256 KiB -> own frame
    obj = {"list": [b"tiny", bytearray(big), {"deep": [memoryview(big), np.arange(100_000, dtype=np.uint32)]}],
           "text": "héllo", "n": 3, "x": 1.5, "flag": True, "none": None, "np_scalar": np.float32(2.5)}
    out, buffers = roundtrip(obj)
    assert len(buffers) == 3
    assert out["list"][0] == b"tiny"
    assert bytes(out["list"][1]) == big and bytes(out["list"][2]["deep"][0]) == big
    np.testing.assert_array_equal(out["list"][2]["deep"][1], np.arange(100_000, dtype=np.uint32))
    assert out["text"] == "héllo" and out["n"] == 3 and out["flag"] is True and out["none"] is None
    assert out["np_scalar"] == 2.5 and isinstance(out["np_scalar"], float)


def test_packing_is_zero_copy_and_unpacking_gives_read_only_views_over_the_frames():
    arr = np.arange(200_000, dtype=np.float32).reshape(-1, 4)
    tree, buffers = pack({"a": arr})
    assert np.shares_memory(np.frombuffer(buffers[0], dtype=np.uint8), arr)
    frame = bytearray(buffers[0])  # what the receiver got
    out = unpack(msgpack.unpackb(msgpack.packb(tree, use_bin_type=True), raw=False), [frame])
    assert np.shares_memory(out["a"], np.frombuffer(frame, dtype=np.uint8))
    assert not out["a"].flags.writeable
    with pytest.raises(ValueError):
        out["a"][0, 0] = 1.0


def test_non_contiguous_and_big_endian_arrays_are_sent_as_little_endian_c_order():
    base = np.arange(60, dtype=">i4").reshape(6, 10)
    view = base[::2, 1::3]
    out, _ = roundtrip({"v": view})
    assert out["v"].dtype.str == "<i4"
    np.testing.assert_array_equal(out["v"], view)


@pytest.mark.parametrize("bad, error", [
    ({"$nd": 1}, ValueError), ({"ok": {"$buf": 1}}, ValueError), ({1: "x"}, TypeError),
    ({"s": {1, 2}}, TypeError), ({"o": np.array([object()])}, TypeError), ({"u": np.array(["a"])}, TypeError),
])
def test_pack_refuses_what_the_wire_cannot_carry(bad, error):
    with pytest.raises(error):
        pack(bad)


def _nd(dtype="<f4", shape=(2, 3), data=None, **extra):
    spec = {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data": bytes(24) if data is None else data, **extra}
    return {"$nd": spec}


@pytest.mark.parametrize("tree, frames, fragment", [
    ({"a": {"$buf": 2}}, [b"x"], "frame 2"),
    ({"a": {"$buf": 0}}, [b"x"], "frame 0"),
    ({"a": {"$buf": "1"}}, [b"x"], "frame number"),
    ({"a": {"$buf": True}}, [b"x"], "frame number"),
    ({"a": _nd(data=bytes(23))}, [], "needs 24 bytes, got 23"),
    ({"a": _nd(data={"$buf": 1})}, [bytes(25)], "needs 24 bytes, got 25"),
    ({"a": _nd(dtype="O")}, [], "not allowed"),
    ({"a": _nd(dtype=">f4")}, [], "big-endian"),
    ({"a": _nd(dtype="f4,f4")}, [], "dtype"),
    ({"a": _nd(dtype="<U2")}, [], "not allowed"),
    ({"a": _nd(dtype=4)}, [], "dtype"),
    ({"a": _nd(dtype="nope")}, [], "not a numpy dtype"),
    ({"a": _nd(shape=[-1, 3])}, [], "non-negative"),
    ({"a": _nd(shape=[2**62, 2**62])}, [], "non-negative integers"),
    ({"a": _nd(shape=[0, 2**40, 2**40], data=b"")}, [], "cannot build"),
    ({"a": _nd(shape="2x3")}, [], "shape"),
    ({"a": _nd(shape=[1] * 33)}, [], "shape"),
    ({"a": _nd(shape=[2.0, 3])}, [], "non-negative"),
    ({"a": {"$nd": {"dtype": "<f4", "shape": [1]}}}, [], "missing data"),
    ({"a": {"$nd": [1, 2]}}, [], "must be a map"),
    ({"a": {"$nd": _nd()["$nd"], "other": 1}}, [], "exactly one"),
    ({"a": {"$what": 1}}, [], "unknown reference"),
    ({"a": {"$nd": {"dtype": "<f4", "shape": [1], "data": 5}}}, [], "data must be"),
    ({"a": {1: 2}}, [], "keys must be strings"),
])
def test_malformed_references_name_the_field_and_the_problem(tree, frames, fragment):
    with pytest.raises(WireFormatError) as info:
        unpack(tree, frames, where="params")
    assert fragment in str(info.value)
    assert "params.a" in str(info.value)


def test_excessive_nesting_is_refused_on_both_sides():
    deep = []
    for _ in range(MAX_NESTING + 5):
        deep = [deep]
    with pytest.raises(ValueError):
        pack({"d": deep})
    with pytest.raises(WireFormatError):
        unpack({"d": deep}, [])


# ---------------------------------------------------------------------------- envelopes

def test_request_round_trip_resolves_arrays():
    arr = np.arange(50_000, dtype=np.float64)
    frames = encode_request("r-1", "debug.echo", {"a": arr, "name": "x"})
    request = decode_request([bytes(f) for f in frames])
    assert (request.id, request.method) == ("r-1", "debug.echo")
    np.testing.assert_array_equal(request.params["a"], arr)


def _header(**fields):
    return [msgpack.packb(fields, use_bin_type=True)]


@pytest.mark.parametrize("frames, code, request_id", [
    ([], "bad_request", None),
    ([b"\xc1garbage"], "bad_request", None),
    ([msgpack.packb([1, 2])], "bad_request", None),
    (_header(id="a", method="server.info"), "bad_request", "a"),
    (_header(v=2, id="a", method="server.info"), "unsupported_version", "a"),
    (_header(v="1", id="a", method="server.info"), "unsupported_version", "a"),
    (_header(v=True, id="a", method="server.info"), "unsupported_version", "a"),
    (_header(v=1, method="server.info"), "bad_request", None),
    (_header(v=1, id=5, method="server.info"), "bad_request", None),
    (_header(v=1, id="x" * 129, method="server.info"), "bad_request", None),
    (_header(v=1, id="a"), "bad_request", "a"),
    (_header(v=1, id="a", method=7), "bad_request", "a"),
    (_header(v=1, id="a", method="server.info", params=[1]), "bad_request", "a"),
    (_header(v=1, id="a", method="x", params={"p": {"$buf": 1}}), "bad_request", "a"),
    ([msgpack.packb({b"v": 1})], "bad_request", None),
    ([msgpack.packb({"v": 1, "id": "a", "method": "m", "params": {"t": msgpack.ExtType(5, b"x")}})], "bad_request", "a"),
])
def test_bad_requests_get_the_documented_code_and_keep_a_readable_id(frames, code, request_id):
    with pytest.raises(ProtocolError) as info:
        decode_request(frames)
    assert info.value.code == code
    assert info.value.request_id == request_id
    assert info.value.message
    if code == "unsupported_version":
        assert info.value.details == {"supported": [1]}


def test_request_without_params_gets_an_empty_map():
    assert decode_request(_header(v=1, id="a", method="server.info")).params == {}


def test_server_messages_round_trip():
    reply = decode_server_message(encode_result("r", {"a": np.ones(3, np.float32)}))
    assert isinstance(reply, Reply) and reply.ok and reply.id == "r"
    np.testing.assert_array_equal(reply.result["a"], np.ones(3))
    error = decode_server_message(encode_error(None, ErrorCode.BUSY, "full", queued=3))
    assert error.id is None and error.error.code == "busy" and error.error.details == {"queued": 3}
    event = decode_server_message(encode_event("job.progress", {"job": "job_x", "fraction": 0.5}))
    assert isinstance(event, Event) and event.job == "job_x" and not event.final


def test_error_codes_are_snake_case_and_cover_the_contract():
    required = {"bad_request", "unsupported_version", "unknown_method", "too_large", "not_found", "busy",
                "cancelled", "internal", "no_face", "bad_image", "bad_file", "bad_model", "unavailable"}
    values = {c.value for c in ErrorCode}
    assert required <= values
    assert all(v.replace("_", "").isalpha() and v == v.lower() for v in values)


def test_the_stored_job_record_and_the_wire_record_share_one_field_list():
    """JobRecord (on disk) and JobInfo (on the wire) both derive from shared.records.JobFields,
    so a field added for one is there for the other; a record converts to its wire form and
    back without loss."""
    import dataclasses

    from compute_server.jobs.records import JobRecord
    from shared.protocol import ErrorInfo
    from shared.records import JobFields, JobInfo, JobState

    shared_names = [f.name for f in dataclasses.fields(JobFields)]
    assert [f.name for f in dataclasses.fields(JobRecord)][: len(shared_names)] == shared_names
    assert [f.name for f in dataclasses.fields(JobInfo)][: len(shared_names)] == shared_names
    record = JobRecord(job="job_abcdefgh12", kind="avatar.create", state=JobState.FAILED, created_at=1.0,
                       started_at=2.0, finished_at=3.0, stage="optimize", fraction=0.5, message="m", eta_s=4.0,
                       error=ErrorInfo("no_face", "no face found"), params={"preset": "draft"},
                       result={"avatar": "av_x"}, revision=7)
    info = JobInfo.from_wire(record.to_info(position=None, cancel_requested=True).to_wire())
    assert info.job_fields() == record.job_fields() and info.cancel_requested
    stored = JobRecord.from_json(record.to_json())
    assert stored == record

"""A client written by hand from docs/protocol.md (plain pyzmq + msgpack + numpy, none of
HeadSplat's code), as a third party would: the contract must be enough to talk to us."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq


@pytest.fixture
def dealer(session_server):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(session_server.endpoint)
    yield sock
    sock.close()
    ctx.term()


def exchange(sock, frames, timeout_ms=10_000):
    sock.send_multipart(frames)
    assert sock.poll(timeout_ms), "no reply"
    reply = sock.recv_multipart()
    return msgpack.unpackb(reply[0], raw=False), reply[1:]


def request(method, params=None, request_id="1", version=1):
    return msgpack.packb({"v": version, "id": request_id, "method": method, "params": params or {}},
                         use_bin_type=True)


def test_server_info_from_a_hand_written_client(dealer):
    header, buffers = exchange(dealer, [request("server.info", request_id="hello")])
    assert header["v"] == 1 and header["id"] == "hello" and buffers == []
    result = header["result"]
    assert result["name"] == "HeadSplat compute server" and result["protocol"] == 1
    assert isinstance(result["head_models"], list) and isinstance(result["diffusion_models"], list)


def test_arrays_by_buffer_reference_from_a_hand_written_client(dealer):
    points = np.random.default_rng(1).standard_normal((30_000, 3)).astype("<f4")
    params = {"points": {"$nd": {"dtype": "<f4", "shape": [30_000, 3], "data": {"$buf": 1}}},
              "tiny": {"$nd": {"dtype": "<u2", "shape": [2], "data": b"\x01\x00\x02\x00"}},
              "blob": {"$buf": 2}}
    header, buffers = exchange(dealer, [request("debug.echo", params), points.tobytes(), b"raw bytes"])
    echo = header["result"]["echo"]
    spec = echo["points"]["$nd"]
    assert spec["dtype"] == "<f4" and spec["shape"] == [30_000, 3]
    data = buffers[spec["data"]["$buf"] - 1]
    np.testing.assert_array_equal(np.frombuffer(data, spec["dtype"]).reshape(spec["shape"]), points)
    tiny = echo["tiny"]["$nd"]
    assert np.frombuffer(tiny["data"], tiny["dtype"]).tolist() == [1, 2]
    assert echo["blob"] == b"raw bytes"  # small: it came back inline


def test_documented_errors_reach_a_hand_written_client(dealer):
    header, _ = exchange(dealer, [request("server.info", version=2, request_id="v2")])
    assert header["id"] == "v2" and header["error"]["code"] == "unsupported_version"
    assert header["error"]["supported"] == [1]
    header, _ = exchange(dealer, [b"\x00\x01 not msgpack"])
    assert header["id"] is None and header["error"]["code"] == "bad_request"
    header, _ = exchange(dealer, [request("no.such", request_id="u")])
    assert header["id"] == "u" and header["error"]["code"] == "unknown_method"
    header, _ = exchange(dealer, [request("debug.echo", {"x": {"$buf": 3}}, request_id="b"), b"only one"])
    assert header["error"]["code"] == "bad_request" and "params.x" in header["error"]["message"]


def test_a_req_socket_works_for_plain_request_reply(session_server):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(session_server.endpoint)
    try:
        header, _ = exchange(sock, [request("server.info", request_id="req")])
        assert header["id"] == "req" and header["result"]["protocol"] == 1
    finally:
        sock.close()
        ctx.term()

"""Hundreds of malformed messages: each gets exactly one documented error reply, and the
server is healthy afterwards."""

from __future__ import annotations

import random
import time

import msgpack
import pytest
import zmq

from shared.protocol import ErrorCode

N_MESSAGES = 600
SAFE_METHODS = ["server.info", "job.status", "job.list", "job.cancel", "job.result", "avatar.get",
                "avatar.delete", "avatar.list", "debug.echo", "no.such.method", ""]


def random_value(rng: random.Random, depth=0):
    kinds = ["int", "float", "str", "bin", "nil", "bool"] + (["list", "map"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 1, 2**63 - 1, -(2**63), rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.5, float("nan"), float("inf"), -1e308])
    if kind == "str":
        return "".join(rng.choice("abc$_./\\\x00é日") for _ in range(rng.randint(0, 12)))
    if kind == "bin":
        return rng.randbytes(rng.randint(0, 32))
    if kind == "nil":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["job", "avatar", "v", "id", "$nd", "$buf", "states", "limit", "include", "x"]):
            random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def bad_reference(rng: random.Random):
    return rng.choice([
        {"$buf": rng.choice([0, 2, 99, -1, "1", None, 1.5])},
        {"$nd": {"dtype": rng.choice(["<f4", "O", ">f8", "S3", "xx", "", 5]), "shape": [3],
                 "data": rng.randbytes(rng.randint(0, 20))}},
        {"$nd": {"dtype": "<f4", "shape": rng.choice([[2**40], [2**62, 2**62], [-3], "big", [0, 2**47, 2**47],
                                                        [1] * 40, [None]]), "data": b"\x00" * 12}},
        {"$nd": {"dtype": "<f4", "shape": [4], "data": {"$buf": 1}}},  # frame 1 has the wrong size
        {"$nd": "not a map"}, {"$nd": {}}, {"$zzz": 1}, {"$buf": 1, "extra": 2},
    ])


def malformed_message(rng: random.Random) -> list[bytes]:
    kind = rng.randrange(9)
    if kind == 0:  # random bytes, 1..4 frames
        return [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 4))]
    if kind == 1:  # valid msgpack that is not a map
        return [msgpack.packb(rng.choice([1, "x", [1, 2], None, b"bin", 3.5, True]), use_bin_type=True)]
    if kind == 2:  # maps with wrong field types
        header = {"v": rng.choice([1, 2, 0, "1", None, 1.0, True]), "id": random_value(rng),
                  "method": rng.choice([random_value(rng), rng.choice(SAFE_METHODS)]), "params": random_value(rng)}
        if rng.random() < 0.3:
            del header[rng.choice(list(header))]
        return [msgpack.packb(header, use_bin_type=True)]
    if kind == 3:  # bad $nd / $buf references
        params = {"a": bad_reference(rng), "b": [bad_reference(rng)]}
        return [msgpack.packb({"v": 1, "id": f"r{rng.random()}", "method": "debug.echo", "params": params},
                              use_bin_type=True), b"\x00" * rng.choice([3, 8, 100])]
    if kind == 4:  # wrong versions
        return [msgpack.packb({"v": rng.choice([0, 2, 99, -1, "v1", [1]]), "id": "w", "method": "server.info"},
                              use_bin_type=True)]
    if kind == 5:  # invalid UTF-8 inside a str
        return [b"\x84\xa1v\x01\xa2id\xa1z\xa6method\xa3\xff\xfe\xfd\xa6params\x80"]
    if kind == 6:  # msgpack nested deeper than anything legitimate
        return [b"\x91" * 5000 + b"\xc0"]
    if kind == 7:  # safe methods with random params (never submits jobs); ids sometimes well-formed
        params = {k: random_value(rng) for k in ("job", "avatar", "include", "states", "limit", "watch")
                  if rng.random() < 0.5}
        if rng.random() < 0.5:
            params["job"] = "job_" + "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(12))
            params["avatar"] = "av_" + "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(12))
        return [msgpack.packb({"v": 1, "id": "p", "method": rng.choice(SAFE_METHODS), "params": params},
                              use_bin_type=True)]
    # truncated valid request
    good = msgpack.packb({"v": 1, "id": "t", "method": "server.info", "params": {}}, use_bin_type=True)
    return [good[: rng.randint(0, len(good) - 1)]]


def test_fuzzed_messages_each_get_one_documented_reply_and_the_server_survives(session_server):
    rng = random.Random(20261124)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(session_server.endpoint)
    try:
        for _ in range(N_MESSAGES):
            sock.send_multipart(malformed_message(rng))
        codes, replies = [], 0
        deadline = time.monotonic() + 60
        while replies < N_MESSAGES and time.monotonic() < deadline:
            if not sock.poll(1000):
                continue
            frames = sock.recv_multipart()
            header_frame = frames[1] if frames[0] == b"" and len(frames) > 1 else frames[0]  # REQ-style echo
            header = msgpack.unpackb(header_frame, raw=False)
            assert header["v"] == 1
            replies += 1
            if "error" in header:
                codes.append(header["error"]["code"])
                assert isinstance(header["error"]["message"], str) and header["error"]["message"]
            else:
                assert isinstance(header["result"], dict)
        assert replies == N_MESSAGES
        assert sock.poll(300) == 0  # and not one reply more
        assert set(codes) <= {c.value for c in ErrorCode} - {"internal", "timeout"}
        assert {"bad_request", "unsupported_version", "unknown_method", "not_found"} <= set(codes)
        assert len(codes) > N_MESSAGES * 0.8
    finally:
        sock.close()
        ctx.term()
    with session_server.client(timeout_s=10) as client:
        assert client.info()["protocol"] == 1
    assert session_server.running


@pytest.mark.parametrize("frames", [[b""], [b"", b""], [b"", b"", b""], [b"\xc0"] * 5000])
def test_edge_frame_layouts_get_an_error_reply(session_server, frames):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(session_server.endpoint)
    try:
        sock.send_multipart(frames)
        assert sock.poll(10_000)
        reply = sock.recv_multipart()
        header = msgpack.unpackb(reply[-1] if reply[0] == b"" else reply[0], raw=False)
        assert header["error"]["code"] in ("bad_request", "too_large")
    finally:
        sock.close()
        ctx.term()

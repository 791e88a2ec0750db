"""Message size limits, in-process (fast): polite too_large below the hard cap, a dropped
connection above it, and the client recovers either way."""

from __future__ import annotations

import numpy as np
import pytest

from compute_server.server.config import HARD_CAP_MARGIN_BYTES
from shared.client import Client, ServerError, ServerUnavailable
from shared.protocol import Limits
from tests.server_harness import inprocess_server

LIMIT = 1 * 2**20


@pytest.fixture
def small_server(tmp_path):
    with inprocess_server(tmp_path, limits=Limits(max_message_bytes=LIMIT)) as server:
        yield server


def test_just_under_the_limit_is_served_and_just_over_is_too_large(small_server):
    with Client(small_server.endpoint, timeout_s=10) as client:
        fits = np.zeros((LIMIT - 4096) // 4, np.float32)
        np.testing.assert_array_equal(client.call("debug.echo", {"a": fits})["echo"]["a"], fits)
        with pytest.raises(ServerError) as info:
            client.call("debug.echo", {"a": np.zeros(LIMIT // 4 + 1, np.float32)})
        assert info.value.code == "too_large" and "at most 1 MiB" in info.value.message
        # the limit counts all frames together
        with pytest.raises(ServerError) as info:
            client.call("debug.echo", {"parts": [np.zeros(LIMIT // 8, np.uint8) for _ in range(9)]})
        assert info.value.code == "too_large"


def test_frames_over_the_hard_cap_are_dropped_by_zmq_and_the_client_recovers(small_server):
    with Client(small_server.endpoint, timeout_s=1.0) as client:
        huge = np.zeros(LIMIT + HARD_CAP_MARGIN_BYTES + 1024, np.uint8)
        with pytest.raises(ServerUnavailable):
            client.call("debug.echo", {"a": huge})
        client.timeout_s = 10.0
        assert client.info()["limits"]["max_message_bytes"] == LIMIT  # reconnected


def test_inprocess_server_answers_like_the_real_one(inproc_server):
    with Client(inproc_server.endpoint, timeout_s=10) as client:
        info = client.info()
        assert info["protocol"] == 1 and "test.count" in info["methods"]
        assert client.wait_job(client.submit("test.count", {"steps": 2, "step_s": 0}), timeout_s=10)["count"] == 2

"""Transport security: loopback by default, CURVE for anything reachable, keys that work
and keys that do not."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest
import zmq

from compute_server.cli.main import main
from compute_server.errors import UserError
from compute_server.server.config import CurveConfig, ServerConfig
from compute_server.server.security import check_bind_allowed, is_loopback_endpoint
from shared.client import Client, ServerUnavailable, load_curve_keys
from tests.server_harness import REPO_ROOT, free_tcp_port, running_server


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:7788", True), ("tcp://127.3.4.5:1", True), ("tcp://localhost:7788", True),
    ("tcp://[::1]:7788", True), ("tcp://::1:7788", True), ("tcp://lo:7788", True), ("ipc:///tmp/hs.sock", True),
    ("tcp://0.0.0.0:7788", False), ("tcp://*:7788", False), ("tcp://192.168.1.5:7788", False),
    ("tcp://eth0:7788", False), ("tcp://[::]:7788", False), ("tcp://example.com:7788", False),
    ("tcp://127.0.0.1;10.0.0.1:7788", False),
])
def test_loopback_detection(endpoint, loopback):
    assert is_loopback_endpoint(endpoint) is loopback


@pytest.mark.parametrize("endpoint", ["127.0.0.1:7788", "tcp://", "tcp://:7788", "tcp://127.0.0.1"])
def test_malformed_endpoints_are_refused_with_an_example(endpoint):
    with pytest.raises(UserError) as info:
        check_bind_allowed(ServerConfig(bind=endpoint))
    assert "tcp://127.0.0.1:7788" in info.value.message


def test_reachable_bind_needs_curve_or_insecure(tmp_path):
    reachable = ServerConfig(bind="tcp://0.0.0.0:7788")
    with pytest.raises(UserError) as info:
        check_bind_allowed(reachable)
    assert "headsplat keys" in info.value.message and "--insecure" in info.value.message
    check_bind_allowed(ServerConfig(bind="tcp://0.0.0.0:7788", insecure=True))
    check_bind_allowed(ServerConfig(bind="tcp://0.0.0.0:7788", curve=CurveConfig(tmp_path / "s", tmp_path / "c")))


def test_serve_refuses_a_non_loopback_bind_without_keys_and_allows_it_with_insecure(tmp_path):
    port = free_tcp_port()
    refused = subprocess.run([sys.executable, "-m", "compute_server.cli.main", "serve", "--bind",
                              f"tcp://0.0.0.0:{port}", "--data", str(tmp_path / "d1")],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "refusing to listen on" in refused.stderr
    with running_server(tmp_path, bind=f"tcp://0.0.0.0:{port}", extra_args=["--insecure"]) as server:
        with Client(f"tcp://127.0.0.1:{port}", timeout_s=10) as client:
            assert client.info()["secure"] is False
        assert "WITHOUT encryption" in server.log()


@pytest.fixture
def keys(tmp_path, capsys):
    out = tmp_path / "keys"
    assert main(["keys", "--out", str(out)]) == 0
    assert main(["keys", "--out", str(out), "--name", "intruder"]) == 0
    printed = capsys.readouterr().out
    assert "--curve-secret" in printed and "--server-key" in printed
    assert main(["keys", "--out", str(out)]) == 2  # never overwrites keys
    return out


def test_curve_admits_authorized_clients_only(tmp_path, keys):
    port = free_tcp_port()
    args = ["--curve-secret", str(keys / "server.key_secret"), "--curve-clients", str(keys / "authorized_clients")]
    with running_server(tmp_path, bind=f"tcp://0.0.0.0:{port}", extra_args=args) as server:
        endpoint = f"tcp://127.0.0.1:{port}"
        good = Client(endpoint, timeout_s=10, **load_curve_keys(keys / "server.key", keys / "client.key_secret"))
        with good:
            info = good.info()
            assert info["secure"] is True
            intruder_keys = load_curve_keys(keys / "server.key", keys / "intruder.key_secret")
            with Client(endpoint, timeout_s=1.0, **intruder_keys) as intruder:
                with pytest.raises(ServerUnavailable) as refused:
                    intruder.info()
            assert "--curve-clients" in str(refused.value)  # not "start a server"
            intruder_public = (keys / "intruder.key").read_text().split('public-key = "')[1].split('"')[0]
            assert "refused a CURVE client" in server.log() and intruder_public in server.log()
            with Client(endpoint, timeout_s=1.0) as plain:
                with pytest.raises(ServerUnavailable):
                    plain.info()
            assert raw_plaintext_gets_nothing(endpoint)
            assert good.info()["protocol"] == 1  # good clients are still served


def raw_plaintext_gets_nothing(endpoint: str) -> bool:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart([msgpack.packb({"v": 1, "id": "x", "method": "server.info"})])
        return sock.poll(1000) == 0
    finally:
        sock.close()
        ctx.term()


def test_curve_options_must_come_together(tmp_path, keys):
    result = subprocess.run([sys.executable, "-m", "compute_server.cli.main", "serve", "--bind", "tcp://127.0.0.1:*",
                             "--data", str(tmp_path / "d"), "--curve-secret", str(keys / "server.key_secret")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--curve-clients" in result.stderr

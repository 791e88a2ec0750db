"""Protocol overhead: a ~50 MB splat-sized payload through the client library vs raw pyzmq.

Both paths are a round trip to a server in another process on loopback TCP:

- library: ``shared.client.Client.call("debug.echo", {...})`` against a real
  ``headsplat serve`` (test methods on): the request is encoded ($nd references, zero-copy
  frames), decoded and validated by the server, dispatched, the result encoded and sent
  back, and decoded by the client into numpy views.
- raw: a DEALER sends the same arrays as a msgpack header plus two frames (copy=False)
  to a bare ROUTER that echoes the frames untouched; the client wraps them with
  np.frombuffer. This is the floor: transport only.

Prints a table of median/min round-trip times and the ratio library/raw (target <= 1.3).
Usage: python bench/protocol.py [--splats 210000] [--reps 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from shared.client import Client  # noqa: E402

SPLAT_ATTRIBUTES = 59  # means 3, quats 4, scales 3, opacity 1, SH degree 3 colours 48


def make_payload(n_splats: int) -> dict:
    rng = np.random.default_rng(0)
    return {"splats": rng.standard_normal((n_splats, SPLAT_ATTRIBUTES), dtype=np.float32),
            "binding": rng.integers(0, 10_000, n_splats, dtype=np.uint32)}


def payload_bytes(payload: dict) -> int:
    return sum(a.nbytes for a in payload.values())


# ------------------------------------------------------------------------- raw pyzmq path

def raw_echo_server(endpoint_file: str) -> None:
    """A bare ROUTER echoing every message's frames back unchanged (runs in a subprocess)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    Path(endpoint_file).write_text(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    while True:
        frames = sock.recv_multipart(copy=False)
        if len(frames) == 2 and frames[1].bytes == b"stop":
            break
        sock.send_multipart(frames, copy=False)
    sock.close()
    ctx.term()


def raw_round_trip(sock: zmq.Socket, payload: dict) -> dict:
    splats, binding = payload["splats"], payload["binding"]
    header = {"v": 1, "id": "raw", "method": "debug.echo", "params": {
        "splats": {"$nd": {"dtype": splats.dtype.str, "shape": list(splats.shape), "data": {"$buf": 1}}},
        "binding": {"$nd": {"dtype": binding.dtype.str, "shape": list(binding.shape), "data": {"$buf": 2}}}}}
    sock.send_multipart([msgpack.packb(header, use_bin_type=True), splats, binding], copy=False)
    frames = sock.recv_multipart(copy=False)
    params = msgpack.unpackb(frames[0].buffer, raw=False)["params"]
    out = {}
    for name, ref in params.items():
        spec = ref["$nd"]
        out[name] = np.frombuffer(frames[spec["data"]["$buf"]].buffer, spec["dtype"]).reshape(spec["shape"])
    return out


def library_round_trip(client: Client, payload: dict) -> dict:
    return client.call("debug.echo", payload, timeout_s=120)["echo"]


# ------------------------------------------------------------------------- timing

def time_round_trips(paths: dict, payload: dict, reps: int, warmup: int) -> dict[str, list[float]]:
    """Round-trip times per path; the paths alternate rep by rep so that drift in the
    machine's state (page cache, CPU frequency) affects both alike."""
    for fn in paths.values():
        result = fn(payload)
        for name, arr in payload.items():  # correctness once, outside the timed loop
            np.testing.assert_array_equal(result[name], arr)
        for _ in range(warmup - 1):
            fn(payload)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for rep in range(reps):
        order = list(paths) if rep % 2 == 0 else list(reversed(paths))
        for name in order:
            started = time.perf_counter()
            paths[name](payload)
            times[name].append(time.perf_counter() - started)
    return times


def wait_for_file(path: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists() or not path.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"benchmark server did not start (exit code {proc.poll()})")
        time.sleep(0.05)
    return path.read_text().strip()


def run(n_splats: int, reps: int, warmup: int) -> dict:
    payload = make_payload(n_splats)
    with tempfile.TemporaryDirectory(prefix="headsplat-bench-") as scratch:
        scratch = Path(scratch)
        server = subprocess.Popen(
            [sys.executable, "-m", "compute_server.cli.main", "serve", "--bind", "tcp://127.0.0.1:*", "--data",
             str(scratch / "data"), "--device", "cpu", "--log-level", "WARNING", "--endpoint-file",
             str(scratch / "library.endpoint"), "--plugin", "tests.job_kinds"], cwd=REPO_ROOT)
        raw = subprocess.Popen([sys.executable, __file__, "--raw-echo-server", str(scratch / "raw.endpoint")],
                               cwd=REPO_ROOT)
        ctx = zmq.Context()
        try:
            library_endpoint = wait_for_file(scratch / "library.endpoint", server)
            raw_endpoint = wait_for_file(scratch / "raw.endpoint", raw)
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(raw_endpoint)
            with Client(library_endpoint, timeout_s=120) as client:
                times = time_round_trips({"library": lambda p: library_round_trip(client, p),
                                          "raw": lambda p: raw_round_trip(sock, p)}, payload, reps, warmup)
            sock.send_multipart([b"stop"])
            sock.close()
        finally:
            ctx.term()
            server.terminate()
            server.wait(30)
            try:
                raw.wait(5)
            except subprocess.TimeoutExpired:
                raw.kill()
                raw.wait(10)
    return {"bytes": payload_bytes(payload), **times}


def print_table(figures: dict, n_splats: int, reps: int) -> None:
    size_mb = figures["bytes"] / 1e6
    print(f"payload: {n_splats} splats x {SPLAT_ATTRIBUTES} float32 + uint32 binding = {size_mb:.1f} MB "
          f"each way; {reps} timed round trips per path, alternating, after warm-up")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}")
    print()
    print("| path | median round trip (ms) | min (ms) | throughput (MB/s, both ways) |")
    print("|---|---:|---:|---:|")
    medians = {}
    for name, label in (("raw", "raw pyzmq (DEALER/ROUTER, copy=False)"), ("library", "HeadSplat client + server")):
        times = figures[name]
        medians[name] = statistics.median(times)
        print(f"| {label} | {medians[name] * 1e3:.1f} | {min(times) * 1e3:.1f} | "
              f"{2 * size_mb / medians[name]:.0f} |")
    print()
    ratio = medians["library"] / medians["raw"]
    print(f"ratio library/raw (median): {ratio:.2f}x (target <= 1.3x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splats", type=int, default=210_000, help="splat rows (default %(default)d, ~50 MB)")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--raw-echo-server", metavar="ENDPOINT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_echo_server:
        raw_echo_server(args.raw_echo_server)
        return 0
    figures = run(args.splats, args.reps, max(1, args.warmup))
    print_table(figures, args.splats, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())

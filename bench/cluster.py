"""The cluster path (`headsplat serve --cluster`, issue 13) against the embedded server.

    python -m bench.cluster                 # a local 2-CPU Ray cluster, CPU workers
    python -m bench.cluster --frame-ms 40   # also project with an assumed per-frame cost
    python -m bench.cluster --ray-client    # only: a front on a node against one through ray://

Everything runs for real: a cluster started with ``ray start --head`` (tests/cluster_harness),
`headsplat serve` fronts as subprocesses, a client on loopback, one synthetic avatar
(``--splats`` Gaussians on the built-in head) published into every front's data folder.
Workers and the embedded server get one torch thread each (OMP_NUM_THREADS=1), so two
workers do not fight over the machine's two cores.

1. Overhead per job (client wall time, median of ``--repeats``, the two servers asked in
   turn): a 1-frame 512 px render and a job that does nothing (test.count, one step of
   0 s: server.info-sized work), on the embedded server and on a clustered front with two
   workers.
2. Throughput: a ``--frames``-frame 512 px render on a front with one worker and on a front
   with two workers, and their ratio.
3. The front's own cost: its CPU seconds (from /proc) per frame it relays, at 512 px and
   at 1080p, less what watching a running task costs it per second (measured with a task
   that reports nothing), and the 1080p per-frame cost on one worker.
4. A projection for a 240-frame 1080p shot on 1, 4 and 16 workers, from those figures:
   time = frames x frame cost / workers + chunks per worker x chunk overhead, and never
   less than the front's relay time (frames x front CPU per frame). The front (one core
   for its Python threads) becomes the bottleneck when watching n busy workers and
   relaying their frames takes all of it: n x polling + n / frame cost x relay = 1 s/s.

``--ray-client`` measures only the cost of Ray Client: the same small jobs (median of
``--repeats``, asked in turn) on a front that is a node of the cluster (``--cluster
HOST:PORT``) and on one that joins through the head's Ray Client server (``--cluster
ray://HOST:PORT``), one worker each on a 2-CPU cluster.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from compute_server.cluster.render_split import chunk_size  # noqa: E402
from compute_server.storage.avatar_store import AvatarStore  # noqa: E402
from tests.blender_helpers import avatar_metadata, builtin_rig, random_splats  # noqa: E402
from tests.cluster_harness import running_cluster  # noqa: E402
from tests.server_harness import running_server  # noqa: E402

ENV = {"OMP_NUM_THREADS": "1"}
AVATAR_ID = "av_benchcluster0001"
SHOT_FRAMES, SHOT_SIZE = 240, (1920, 1080)


def publish_avatar(data_dir: Path, n_splats: int) -> None:
    rig = builtin_rig()
    rig_npz = {key: rig[key] for key in ("rest_vertices", "faces", "expression_deltas", "joint_rest",
                                         "joint_parents", "skin_weights", "face_region")}
    rig_npz["shape"] = np.zeros(int(rig.get("n_shape", 0)), np.float32)
    rig_npz["static_offset"] = np.zeros_like(rig["rest_vertices"])
    AvatarStore(data_dir / "avatars").publish(AVATAR_ID, {"splats.npz": random_splats(rig, n_splats),
                                                          "rig.npz": rig_npz},
                                              avatar_metadata(rig, n_splats, "bench-cluster", 1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def render(client, n_frames: int, size: tuple[int, int]) -> float:
    """Client wall seconds of one render.frames request (every frame streamed back)."""
    frames = []
    params = {"avatar": AVATAR_ID, "camera_preset": "turntable", "size": list(size),
              "params": {"jaw_pose": np.zeros((n_frames, 3), np.float32)}}
    started = time.perf_counter()
    client.wait_job(client.submit("render.frames", params), timeout_s=3600,
                    on_progress=lambda e: frames.append(1) if e.get("frame") is not None else None)
    seconds = time.perf_counter() - started
    if len(frames) != n_frames:
        raise SystemExit(f"render.frames streamed {len(frames)} of {n_frames} frames")
    return seconds


def polling_cpu_per_s(client, pid: int, seconds: float = 4.0) -> float:
    """Front CPU seconds per second while one task runs that reports nothing: the cost of
    watching a worker, subtracted from the relay figures."""
    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    client.wait_job(client.submit("test.count", {"steps": 1, "step_s": seconds}), timeout_s=120)
    return (cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0)


def empty_job(client) -> float:
    started = time.perf_counter()
    client.wait_job(client.submit("test.count", {"steps": 1, "step_s": 0.0}), timeout_s=60)
    return time.perf_counter() - started


def overheads(local, cluster, repeats: int, size: tuple[int, int] = (512, 512)) -> tuple[dict, dict]:
    """Medians of the same small jobs on two servers (the embedded one and the clustered
    front, or two fronts), taken alternately so that other load on the machine falls on
    both alike."""
    times = {(side, job): [] for side in ("local", "cluster") for job in ("render_1", "empty")}
    for client in (local, cluster):
        render(client, 1, size)  # warm: the avatar reaches the workers, models load
    for _ in range(repeats):
        for side, client in (("local", local), ("cluster", cluster)):
            times[side, "render_1"].append(render(client, 1, size))
            times[side, "empty"].append(empty_job(client))
    return ({job: statistics.median(times["local", job]) for job in ("render_1", "empty")},
            {job: statistics.median(times["cluster", job]) for job in ("render_1", "empty")})


def ray_client_overhead(args) -> None:
    """``--ray-client``: a front on a node against a front through Ray Client."""
    started = time.time()
    size = (128, 128)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch, running_cluster(num_cpus=2, env=ENV) as cl:
        root = Path(scratch)
        with front(root, "node", "--cluster", cl.address, "--cluster-workers", "1") as node_srv, \
                front(root, "client", "--cluster", cl.client_address, "--cluster-workers", "1") as client_srv, \
                node_srv.client(timeout_s=60) as nc, client_srv.client(timeout_s=60) as cc:
            node, via_client = overheads(nc, cc, args.repeats, size)
    print(f"\n{time.strftime('%Y-%m-%d')}, {args.splats:,} Gaussians, median of {args.repeats}, load average "
          f"{os.getloadavg()[0]:.1f}, {time.time() - started:.0f} s in all\n")
    print("| job | front on a node ms | front through ray:// ms | difference ms |\n|---|---:|---:|---:|")
    for key, label in (("render_1", f"render.frames, 1 frame {size[0]} px"), ("empty", "a job that does nothing")):
        print(f"| {label} | {node[key] * 1e3:.0f} | {via_client[key] * 1e3:.0f} | "
              f"{(via_client[key] - node[key]) * 1e3:+.0f} |")


def front(root: Path, name: str, *extra_args: str):
    data = root / name
    publish_avatar(data, ARGS.splats)
    return running_server(root, data_dir=data, extra_args=extra_args, env=ENV, ready_timeout_s=300.0)


def main(argv=None) -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48, help="frames of the throughput render (default 48)")
    parser.add_argument("--hd-frames", type=int, default=4, help="frames of the 1080p render (default 4)")
    parser.add_argument("--splats", type=int, default=20_000, help="Gaussians of the synthetic avatar")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frame-ms", type=float, action="append", default=[],
                        help="also project with this per-frame cost (e.g. a GPU's; an assumption, not measured)")
    parser.add_argument("--ray-client", action="store_true",
                        help="only compare a front on a node with a front through Ray Client (ray://)")
    ARGS = args = parser.parse_args(argv)
    if args.ray_client:
        ray_client_overhead(args)
        return
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch, running_cluster(num_cpus=2, env=ENV) as cl:
        root = Path(scratch)
        print(f"cluster {cl.address} up", flush=True)
        with front(root, "one", "--cluster", cl.address, "--cluster-workers", "1") as srv, srv.client(timeout_s=60) as c:
            render(c, 1, (512, 512))
            polling = polling_cpu_per_s(c, srv.proc.pid)
            cpu0 = cpu_seconds(srv.proc.pid)
            hd_s = render(c, args.hd_frames, SHOT_SIZE)
            hd_front_cpu_raw = (cpu_seconds(srv.proc.pid) - cpu0) / args.hd_frames
            hd_front_cpu = max(1e-4, hd_front_cpu_raw - polling * hd_s / args.hd_frames)
            one_worker_s = render(c, args.frames, (512, 512))
        print("one worker done", flush=True)
        with front(root, "two", "--cluster", cl.address, "--cluster-workers", "2") as srv, \
                front(root, "local") as local_srv, srv.client(timeout_s=60) as c, local_srv.client(timeout_s=60) as lc:
            local_over, cluster_over = overheads(lc, c, args.repeats)
            cpu0 = cpu_seconds(srv.proc.pid)
            two_workers_s = render(c, args.frames, (512, 512))
            front_cpu_512_raw = (cpu_seconds(srv.proc.pid) - cpu0) / args.frames
            front_cpu_512 = max(1e-4, front_cpu_512_raw - 2 * polling * two_workers_s / args.frames)
            local_s = render(lc, args.frames, (512, 512))
        print("two workers and the embedded server done", flush=True)

    load = os.getloadavg()[0]
    print(f"\n{time.strftime('%Y-%m-%d')}, {args.splats:,} Gaussians, 1 torch thread per worker, load average "
          f"{load:.1f}, {time.time() - started:.0f} s in all\n")
    print("| job | embedded ms | cluster ms | overhead ms |\n|---|---:|---:|---:|")
    for key, label in (("render_1", "render.frames, 1 frame 512 px"), ("empty", "a job that does nothing")):
        print(f"| {label} | {local_over[key] * 1e3:.0f} | {cluster_over[key] * 1e3:.0f} | "
              f"{(cluster_over[key] - local_over[key]) * 1e3:+.0f} |")
    fps = {"embedded": args.frames / local_s, "1 worker": args.frames / one_worker_s,
           "2 workers": args.frames / two_workers_s}
    print(f"\n{args.frames}-frame 512 px render: " + ", ".join(f"{k} {v:.2f} fps" for k, v in fps.items())
          + f"; 2 workers / 1 worker = {one_worker_s / two_workers_s:.2f}x")
    hd_frame_s = hd_s / args.hd_frames
    chunk_s = max(0.0, cluster_over["render_1"] - local_over["render_1"])
    print(f"1080p on one worker: {hd_frame_s * 1e3:.0f} ms per frame ({args.hd_frames} frames); front CPU watching "
          f"one running task: {polling * 1e3:.1f} ms per s; front CPU per relayed frame beyond that: "
          f"{front_cpu_512 * 1e3:.1f} ms at 512 px (raw {front_cpu_512_raw * 1e3:.1f}), {hd_front_cpu * 1e3:.1f} ms "
          f"at 1080p (raw {hd_front_cpu_raw * 1e3:.1f}): it relays at most {1 / hd_front_cpu:.0f} fps of 1080p; "
          f"per-chunk overhead {chunk_s * 1e3:.0f} ms")
    costs = [("measured CPU worker", hd_frame_s)] + [(f"assumed {ms:g} ms/frame", ms / 1e3) for ms in args.frame_ms]
    print(f"\nprojection, {SHOT_FRAMES} frames at 1080p:\n| frame cost | 1 worker | 4 workers | 16 workers | "
          "front-bound beyond |\n|---|---:|---:|---:|---:|")
    for label, frame_s in costs:
        cells = []
        for n in (1, 4, 16):
            chunks = math.ceil(SHOT_FRAMES / chunk_size(SHOT_FRAMES, n))
            work = SHOT_FRAMES * frame_s / n + math.ceil(chunks / n) * chunk_s
            cells.append(f"{max(work, SHOT_FRAMES * hd_front_cpu):.1f} s")
        # the front's CPU per second with n busy workers: n x polling + (n / frame_s) x relay
        front_bound = 1.0 / (polling + hd_front_cpu / frame_s)
        print(f"| {label} | " + " | ".join(cells) + f" | {front_bound:.0f} workers |")


if __name__ == "__main__":
    main()

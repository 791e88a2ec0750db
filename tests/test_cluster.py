"""`headsplat serve --cluster`: the jobs run on a real local Ray cluster (``ray start
--head`` with three CPUs) behind the real ZeroMQ front, which starts two worker processes
on it; the third CPU is for a second front that joins through Ray Client (``ray://``).

One cluster and one front serve the whole module (starting them is most of its time);
the test that stops the cluster runs last. Tiny settings: a 10-iteration 64 px avatar,
64 and 96 px frames.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shared.client import Client, JobFailed
from tests.pipeline_helpers import create_params, decode_png
from tests.server_harness import inprocess_server, running_server

pytest.importorskip("ray")
from tests.cluster_harness import running_cluster  # noqa: E402

WORKER_ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(num_cpus=3, env=WORKER_ENV) as c:
        yield c


@pytest.fixture(scope="module")
def front(cluster, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("front"), extra_args=("--cluster", cluster.address, "--cluster-workers", "2"),
                        env=WORKER_ENV, ready_timeout_s=180.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(front):
    with front.client(timeout_s=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def created(client):
    """An avatar made by avatar.create on a cluster worker."""
    return client.wait_job(client.submit("avatar.create", create_params(options={"iterations": 10, "image_size": 64})),
                           timeout_s=300)


def _workers(client) -> list[dict]:
    return client.info()["cluster"]["workers"]


def _render(client, avatar: str, **params) -> tuple[str, dict, list[dict]]:
    events = []
    job = client.submit("render.frames", {"avatar": avatar, **params})
    result = client.wait_job(job, on_progress=events.append, timeout_s=300)
    return job, result, events


def _frames(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("frame") is not None]


SHOT = {"camera_preset": "turntable", "size": [64, 64], "depth": True, "first_frame": 3,
        "params": {"jaw_pose": np.linspace([0, 0, 0], [0.3, 0, 0], 8).astype(np.float32)}}


def test_server_info_shows_the_cluster_and_its_two_workers(client, cluster):
    info = client.info()
    assert info["cluster"]["address"] == cluster.address and info["cluster"]["reachable"]
    workers = info["cluster"]["workers"]
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2
    assert info["cluster"]["cpus"] == 3 and info["health"]["ok"]
    from compute_server.cli.info import format_info

    lines = format_info(info).splitlines()  # what `headsplat info` prints
    assert any(line.strip().startswith(f"cluster:          {cluster.address} (reachable)") for line in lines)
    assert sum(line.strip().startswith(("w0:", "w1:")) for line in lines) == 2


def test_a_cluster_avatar_renders_the_frames_the_embedded_server_renders(client, created, front, tmp_path):
    avatar = created["avatar"]
    job, result, events = _render(client, avatar, **SHOT)
    frames = _frames(events)
    assert [f["frame_index"] for f in frames] == list(range(8)) and result["frames"] == 8
    assert len(client.call("job.status", {"job": job})["worker"].split(", ")) == 2  # both workers took chunks
    part = client.call("job.result", {"job": job, "frames": [0, 8]})["result"]["frame_data"]
    assert [bytes(p["frame"]["data"]) for p in part] == [bytes(f["frame"]["data"]) for f in frames]

    payload = client.get_avatar(avatar)  # the same avatar, on a server without a cluster
    from compute_server.storage.avatar_store import AvatarStore

    local_data = tmp_path / "local"
    files = {**{f"{k}.npz": v for k, v in payload["arrays"].items()}, **payload["files"]}
    AvatarStore(local_data / "data" / "avatars").publish(avatar, files, payload["metadata"])
    with inprocess_server(local_data) as local, Client(local.endpoint, timeout_s=30.0) as local_client:
        _, local_result, local_events = _render(local_client, avatar, **SHOT)
    assert local_result["files"] == result["files"]
    for ours, theirs in zip(frames, _frames(local_events), strict=True):
        assert ours["frame_number"] == theirs["frame_number"]
        np.testing.assert_allclose(np.asarray(ours["depth"]), np.asarray(theirs["depth"]), atol=1e-6)
        # the float frames agree within ~1e-7 (a chunk poses its frames in a smaller batch);
        # 8-bit PNG rounding turns that into at most one level on a pixel here and there
        a, b = decode_png(ours["frame"]["data"]).astype(int), decode_png(theirs["frame"]["data"]).astype(int)
        assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3


def test_two_clients_jobs_run_at_once_on_different_workers(front):
    jobs = {}

    def submit(name):
        with front.client() as c:
            jobs[name] = c.submit("test.count", {"steps": 8, "step_s": 0.1})
            c.wait_job(jobs[name], timeout_s=60)

    threads = [threading.Thread(target=submit, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    with front.client() as c:
        a, b = (c.call("job.status", {"job": jobs[n]}) for n in ("a", "b"))
    assert a["state"] == b["state"] == "done"
    assert a["worker"] != b["worker"]
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]  # the windows overlap


def test_the_queue_is_fair_between_clients(front):
    """Seat A queues three jobs, then seat B one: B's job takes the first worker that
    frees, ahead of A's third (A already has a job running then, B none). A's first two
    jobs differ in length, so one worker frees clearly first (had both freed at once, A
    would have none running either, and the older job rightly goes first)."""
    with front.client() as a, front.client() as b:
        a_jobs = [a.submit("test.count", {"steps": steps, "step_s": 0.1}) for steps in (6, 12, 6)]
        b_job = b.submit("test.count", {"steps": 1, "step_s": 0.0})
        for job in a_jobs:
            a.wait_job(job, timeout_s=60)
        b.wait_job(b_job, timeout_s=60)
        started = {job: a.call("job.status", {"job": job})["started_at"] for job in [*a_jobs, b_job]}
    assert started[b_job] < started[a_jobs[2]]


def test_cancel_frees_the_worker_within_a_second(client):
    job = client.submit("test.count", {"steps": 300, "step_s": 0.05})
    deadline = time.monotonic() + 30
    while not (status := client.call("job.status", {"job": job}))["message"].startswith("step"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    worker = status["worker"]
    assert any(w["name"] == worker and w["job"] == job for w in _workers(client))
    client.cancel(job)
    cancelled_at = time.monotonic()
    while any(w["name"] == worker and w["job"] for w in _workers(client)):
        time.sleep(0.02)
    assert time.monotonic() - cancelled_at < 1.0
    assert client.call("job.status", {"job": job})["state"] == "cancelled"


def test_a_worker_killed_mid_render_loses_no_frame(client, created):
    events, killed = [], []
    job = client.submit("render.frames", {"avatar": created["avatar"], "camera_preset": "turntable",
                                          "size": [96, 96], "params": {"jaw_pose": np.zeros((36, 3), np.float32)}})

    def on_progress(event):
        events.append(event)
        if event.get("frame") is not None and not killed:
            busy = [w for w in _workers(client) if w["job"] == job]
            if busy:
                os.kill(busy[-1]["pid"], signal.SIGKILL)
                killed.append(busy[-1])

    result = client.wait_job(job, on_progress=on_progress, timeout_s=300)
    assert killed and result["frames"] == 36
    assert [f["frame_index"] for f in _frames(events)] == list(range(36))  # every frame, once, in order
    assert any(e.get("stage") == "retrying" and killed[0]["name"] in e["message"] for e in events)
    # Ray restarts the killed actor; the new process removes the dead one's folder (its avatar cache)
    deadline = time.monotonic() + 180
    while not any(w["name"] == killed[0]["name"] and w["pid"] not in (None, killed[0]["pid"])
                  and not w["restarting"] for w in _workers(client)):
        assert time.monotonic() < deadline, _workers(client)
        time.sleep(0.5)
    back = next(w for w in _workers(client) if w["name"] == killed[0]["name"])
    assert Path(back["root"]).is_dir() and not Path(killed[0]["root"]).exists()


@pytest.fixture(scope="module")
def remote_front(cluster, client, created, tmp_path_factory):
    """A second front, as on a machine that is not a node: ``--cluster ray://HOST:PORT``,
    one worker (the cluster's third CPU), the module's avatar copied into its own data
    directory."""
    payload = client.get_avatar(created["avatar"])
    from compute_server.storage.avatar_store import AvatarStore

    root = tmp_path_factory.mktemp("remote")
    files = {**{f"{k}.npz": v for k, v in payload["arrays"].items()}, **payload["files"]}
    AvatarStore(root / "data" / "avatars").publish(created["avatar"], files, payload["metadata"])
    with running_server(root, extra_args=("--cluster", cluster.client_address, "--cluster-workers", "1"),
                        env=WORKER_ENV, ready_timeout_s=180.0) as srv:
        yield srv


def test_a_front_joins_through_ray_client_and_renders_the_same_frame(client, created, cluster, remote_front):
    one_frame = {"camera_preset": "portrait", "size": [64, 64], "params": {"jaw_pose": np.full((1, 3), 0.2, np.float32)}}
    with remote_front.client(timeout_s=30.0) as c:
        info = c.info()["cluster"]
        assert info["address"] == cluster.client_address and info["reachable"] and info["cpus"] == 3
        assert [w["name"] for w in info["workers"]] == ["w0"] and info["workers"][0]["pid"]
        job = c.submit("test.count", {"steps": 3, "step_s": 0.01})
        assert c.wait_job(job, timeout_s=60)["count"] == 3
        assert c.call("job.status", {"job": job})["worker"] == "w0"
        _, result, events = _render(c, created["avatar"], **one_frame)
    _, here_result, here_events = _render(client, created["avatar"], **one_frame)
    assert result["frames"] == here_result["frames"] == 1
    assert [bytes(f["frame"]["data"]) for f in _frames(events)] == [bytes(f["frame"]["data"]) for f in _frames(here_events)]


def _wait_until_running(client, job: str) -> None:
    deadline = time.monotonic() + 30
    while not client.call("job.status", {"job": job})["message"].startswith("step"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_stopped_cluster_fails_jobs_clearly_and_the_fronts_answer(client, cluster, front, remote_front):
    """Both fronts: the one on a node and the one through Ray Client."""
    with remote_front.client(timeout_s=30.0) as remote:
        jobs = {c: c.submit("test.count", {"steps": 600, "step_s": 0.05}) for c in (client, remote)}
        for c, job in jobs.items():
            _wait_until_running(c, job)
        cluster.stop()
        for c, job in jobs.items():
            with pytest.raises(JobFailed) as failed:
                c.wait_job(job, timeout_s=60)
            assert failed.value.code == "unavailable" and "Ray cluster" in failed.value.message
            info = c.info()
            assert not info["cluster"]["reachable"] and not info["health"]["ok"]
            assert any("Ray cluster" in p for p in info["health"]["problems"])
            late = c.submit("test.count", {"steps": 1})
            with pytest.raises(JobFailed, match="Ray cluster"):
                c.wait_job(late, timeout_s=30)
    assert front.running and remote_front.running


def test_a_front_tries_again_only_when_the_heads_proxier_could_not_start_its_client_server():
    """Both ways the proxier reports a client server that did not start (seen under load in
    the full suite) are retried; an unreachable head is not."""
    from compute_server.cluster.connection import _client_server_did_not_start

    zombie = ConnectionError("Initialization failure from server:\nTraceback ...\n  File \".../proxier.py\", line 765, "
                             "in Datapath\n    if not self.proxy_manager.start_specific_server(\npsutil.ZombieProcess: "
                             "PID still exists but it's a zombie (pid=13388)")
    assert _client_server_did_not_start(zombie)
    assert _client_server_did_not_start(ConnectionError("Starting Ray client server failed. See ray_client_server_23000.err"))
    assert not _client_server_did_not_start(ConnectionError("ray client connection timeout"))
    assert not _client_server_did_not_start(RuntimeError("Failed to connect to GCS at 127.0.0.1:6379"))

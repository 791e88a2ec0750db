"""The job manager on its own (no sockets): states, events, cancel, failures, recovery."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from compute_server.errors import UserError
from compute_server.jobs.context import JobKind
from compute_server.jobs.manager import JobManager
from compute_server.jobs.persistence import JobRecordStore
from compute_server.storage.avatar_store import AvatarStore
from shared.protocol import ErrorInfo, Limits
from shared.records import JobState
from tests import job_kinds

COUNT = JobKind("test.count", job_kinds.validate_count, job_kinds.run_count)
AVATAR = JobKind("test.avatar", job_kinds.validate_avatar, job_kinds.run_avatar,
                 avatars_used=lambda job: [job["uses"]] if job["uses"] else [])


class Events:
    """Collects emitted events; wait_for blocks until a matching one arrives."""

    def __init__(self):
        self.items: list[tuple[str, str, dict]] = []
        self._cond = threading.Condition()

    def __call__(self, job, name, params):
        with self._cond:
            self.items.append((job, name, params))
            self._cond.notify_all()

    def wait_for(self, job, name, timeout_s=10.0) -> dict:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for j, n, p in self.items:
                    if j == job and n == name:
                        return p
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name} for {job} in {timeout_s} s; got {[(j, n) for j, n, _ in self.items]}")
                self._cond.wait(left)

    def names(self, job):
        return [n for j, n, _ in self.items if j == job]


@pytest.fixture
def parts(tmp_path):
    store = AvatarStore(tmp_path / "avatars")
    events = Events()
    manager = JobManager(JobRecordStore(tmp_path / "jobs"), store=store, device="cpu", max_queued=2, emit=events)
    server_ctx = SimpleNamespace(limits=Limits(max_render_frames=1000), store=store)
    manager.start()
    yield manager, events, server_ctx
    manager.shutdown(2.0)


def submit(manager, server_ctx, kind, **params):
    return manager.submit(kind, kind.validate(params, server_ctx), params).job


def test_a_job_runs_to_done_with_progress_and_a_persisted_result(parts):
    manager, events, ctx = parts
    job = submit(manager, ctx, COUNT, steps=5, step_s=0.0)
    done = events.wait_for(job, "job.done")
    np.testing.assert_array_equal(done["result"]["squares"], [0, 1, 4, 9, 16])
    names = events.names(job)
    assert names[0] == "job.progress" and names[-1] == "job.done"
    progress = [p for j, n, p in events.items if j == job and n == "job.progress"]
    assert progress[-1]["fraction"] == 1.0 and progress[-1]["stage"] == "counting"
    info = manager.info(job)
    assert info.state == JobState.DONE and info.result["count"] == 5 and info.finished_at >= info.started_at
    np.testing.assert_array_equal(manager.result(job)["squares"], [0, 1, 4, 9, 16])


def test_cancel_of_a_queued_job_is_immediate_and_of_a_running_job_quick(parts):
    manager, events, ctx = parts
    running = submit(manager, ctx, COUNT, steps=1000, step_s=0.05)
    events.wait_for(running, "job.progress")
    queued = submit(manager, ctx, COUNT, steps=3)
    info = manager.cancel(queued)
    assert info.state == JobState.CANCELLED
    assert events.names(queued) == ["job.cancelled"]
    info = manager.cancel(running)
    assert info.state == JobState.RUNNING and info.cancel_requested
    events.wait_for(running, "job.cancelled", timeout_s=1.0)
    assert manager.info(running).state == JobState.CANCELLED
    with pytest.raises(UserError) as err:
        manager.result(running)
    assert err.value.code == "cancelled"
    assert manager.cancel(running).state == JobState.CANCELLED  # cancelling again changes nothing


def test_user_errors_and_crashes_become_failed_jobs(parts):
    manager, events, ctx = parts
    user = submit(manager, ctx, COUNT, steps=5, step_s=0.0, fail_at=2, fail_code="no_face")
    crash = submit(manager, ctx, COUNT, steps=5, step_s=0.0, crash_at=1)
    failed = events.wait_for(user, "job.failed")
    assert failed["error"]["code"] == "no_face" and "step 2" in failed["error"]["message"]
    crashed = events.wait_for(crash, "job.failed")
    assert crashed["error"]["code"] == "internal" and "RuntimeError" in crashed["error"]["message"]
    with pytest.raises(UserError) as err:
        manager.result(user)
    assert err.value.code == "no_face"


def test_error_classifiers_can_rename_internal_errors(parts):
    manager, events, ctx = parts
    manager.error_classifiers.append(
        lambda exc: ErrorInfo("unavailable", "out of GPU memory") if isinstance(exc, RuntimeError) else None)
    job = submit(manager, ctx, COUNT, steps=3, step_s=0.0, crash_at=0)
    assert events.wait_for(job, "job.failed")["error"] == {"code": "unavailable", "message": "out of GPU memory"}


def test_the_queue_limit_answers_busy(parts):
    manager, events, ctx = parts
    running = submit(manager, ctx, COUNT, steps=1000, step_s=0.05)
    events.wait_for(running, "job.progress")
    waiting = [submit(manager, ctx, COUNT, steps=1) for _ in range(2)]
    with pytest.raises(UserError) as err:
        submit(manager, ctx, COUNT, steps=1)
    assert err.value.code == "busy" and "limit is 2" in err.value.message
    assert [manager.info(j).position for j in waiting] == [0, 1]
    for job in [running, *waiting]:
        manager.cancel(job)


def test_result_of_an_unfinished_job_is_not_ready_and_unknown_jobs_are_not_found(parts):
    manager, events, ctx = parts
    job = submit(manager, ctx, COUNT, steps=1000, step_s=0.05)
    with pytest.raises(UserError) as err:
        manager.result(job)
    assert err.value.code == "not_ready"
    for op in (manager.info, manager.cancel, manager.result):
        with pytest.raises(UserError) as err:
            op("job_0000000000zz")
        assert err.value.code == "not_found"
        with pytest.raises(UserError) as err:
            op("../../etc/passwd")
        assert err.value.code == "bad_request"
    manager.cancel(job)


def test_avatars_used_by_pending_jobs_are_reported(parts):
    manager, events, ctx = parts
    source = submit(manager, ctx, AVATAR, points=10)
    avatar_id = events.wait_for(source, "job.done")["result"]["avatar"]
    holder = submit(manager, ctx, AVATAR, points=10, hold_s=30.0, uses=avatar_id)
    events.wait_for(holder, "job.progress")
    assert manager.avatars_in_use() == {avatar_id}
    manager.cancel(holder)
    events.wait_for(holder, "job.cancelled")
    assert manager.avatars_in_use() == set()
    assert source != holder
    assert len(ctx.store.list()) == 1  # the cancelled job published nothing


def test_recover_marks_unfinished_jobs_interrupted(tmp_path):
    records = JobRecordStore(tmp_path / "jobs")
    store = AvatarStore(tmp_path / "avatars")
    first = JobManager(records, store=store, device="cpu", max_queued=4, emit=Events())
    ctx = SimpleNamespace(limits=Limits(), store=store)
    queued = submit(first, ctx, COUNT, steps=1)  # never started: the worker is not running
    # a second manager on the same directory, as after a crash
    second = JobManager(JobRecordStore(tmp_path / "jobs"), store=store, device="cpu", max_queued=4, emit=Events())
    assert second.recover() == [queued]
    info = second.info(queued)
    assert info.state == JobState.FAILED and info.error.code == "interrupted"
    assert "restarted" in info.error.message and "submit it again" in info.error.message


def test_shutdown_abandons_a_job_that_ignores_cancel(tmp_path):
    events = Events()
    manager = JobManager(JobRecordStore(tmp_path / "jobs"), store=AvatarStore(tmp_path / "a"), device="cpu",
                         max_queued=4, emit=events)
    ctx = SimpleNamespace(limits=Limits(), store=None)
    manager.start()
    stubborn = submit(manager, ctx, COUNT, steps=10, step_s=0.1, ignore_cancel=True)
    events.wait_for(stubborn, "job.progress")
    waiting = submit(manager, ctx, COUNT, steps=1)
    manager.shutdown(grace_s=0.3)
    assert manager.info(waiting).error.code == "interrupted"
    info = manager.info(stubborn)
    assert info.state == JobState.FAILED and info.error.code == "interrupted" and "shut down" in info.error.message
    manager._worker.join(10.0)  # the abandoned job finishes later: its record must stay interrupted
    assert not manager._worker.is_alive()
    assert manager.info(stubborn).state == JobState.FAILED
    with pytest.raises(UserError) as err:
        manager.submit(COUNT, COUNT.validate({"steps": 1}, ctx), {})
    assert err.value.code == "unavailable"

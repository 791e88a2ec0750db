"""Job retention: which finished jobs are forgotten (pure policy), the manager applying it
after each job and at start, orphan folders, and the serve flags."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from compute_server.cli.main import main
from compute_server.errors import UserError
from compute_server.jobs.manager import JobManager
from compute_server.jobs.persistence import RESULT_FILE, JobRecordStore
from compute_server.jobs.records import JobRecord, new_job_id
from compute_server.jobs.retention import RetentionPolicy, jobs_to_forget
from compute_server.storage.avatar_store import AvatarStore
from shared.protocol import Limits
from shared.records import JobState
from tests.test_server_jobs import COUNT, Events, submit

DAY = 86400.0


def _record(state: JobState, finished_days_ago: float | None, now: float) -> JobRecord:
    finished = None if finished_days_ago is None else now - finished_days_ago * DAY
    return JobRecord(job=new_job_id(), kind="test.count", state=state, created_at=(finished or now) - 10,
                     finished_at=finished)


def test_policy_keeps_the_newest_finished_jobs_and_none_too_old():
    now = 1e9
    done = [_record(JobState.DONE, d, now) for d in (0.1, 1, 2, 3, 20)]
    failed = _record(JobState.FAILED, 0.5, now)
    running = _record(JobState.RUNNING, None, now)
    queued = _record(JobState.QUEUED, None, now)
    records = [*done, failed, running, queued]
    forgotten = jobs_to_forget(records, now, RetentionPolicy(keep_jobs=3, keep_days=14))
    # newest first: 0.1, 0.5 (failed), 1 are kept; 2 and 3 are beyond the count; 20 days is too old
    assert set(forgotten) == {done[2].job, done[3].job, done[4].job}
    assert jobs_to_forget(records, now, RetentionPolicy(keep_jobs=100, keep_days=14)) == [done[4].job]
    assert jobs_to_forget(records, now, RetentionPolicy(keep_jobs=100, keep_days=0)) == []   # no age limit
    assert running.job not in jobs_to_forget(records, now + 1000 * DAY, RetentionPolicy(keep_jobs=1, keep_days=1))


@pytest.mark.parametrize("bad", [{"keep_jobs": 0}, {"keep_days": -1}])
def test_policy_refuses_settings_that_would_lose_a_job_just_finished(bad):
    with pytest.raises(ValueError):
        RetentionPolicy(**bad)


def _manager(tmp_path, events, policy):
    store = AvatarStore(tmp_path / "avatars")
    return JobManager(JobRecordStore(tmp_path / "jobs"), store=store, device="cpu", max_queued=8, emit=events,
                      retention=policy), SimpleNamespace(limits=Limits(), store=store)


def test_the_manager_forgets_jobs_beyond_the_count_after_each_job(tmp_path):
    events = Events()
    manager, ctx = _manager(tmp_path, events, RetentionPolicy(keep_jobs=2, keep_days=0))
    manager.start()
    try:
        jobs = []
        for _ in range(4):
            jobs.append(submit(manager, ctx, COUNT, steps=1, step_s=0.0))
            events.wait_for(jobs[-1], "job.done")
        def files_left():
            return [p for old in jobs[:2] for p in (tmp_path / "jobs" / f"{old}.json", tmp_path / "jobs" / old)
                    if p.exists()]

        deadline = time.monotonic() + 5  # the worker forgets them right after the last job finishes
        while (len(manager.list()) > 2 or files_left()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [i.job for i in manager.list()] == jobs[:1:-1]           # the two newest, newest first
        assert manager.result(jobs[-1])["count"] == 1
        for old in jobs[:2]:
            with pytest.raises(UserError) as err:
                manager.info(old)
            assert err.value.code == "not_found"
        assert files_left() == [] and (tmp_path / "jobs" / jobs[-1] / RESULT_FILE).exists()
    finally:
        manager.shutdown(2.0)


def test_at_start_old_jobs_and_orphan_folders_are_removed(tmp_path):
    events = Events()
    first, ctx = _manager(tmp_path, events, RetentionPolicy(keep_jobs=10, keep_days=0))
    first.start()
    old = submit(first, ctx, COUNT, steps=1, step_s=0.0)
    events.wait_for(old, "job.done")
    recent = submit(first, ctx, COUNT, steps=1, step_s=0.0)
    events.wait_for(recent, "job.done")
    first.shutdown(2.0)
    path = tmp_path / "jobs" / f"{old}.json"
    record = json.loads(path.read_text())
    record["finished_at"] -= 30 * DAY                                   # as if finished a month ago
    path.write_text(json.dumps(record))
    orphan = tmp_path / "jobs" / new_job_id()                           # a crash between record and folder removal
    orphan.mkdir()
    (orphan / RESULT_FILE).write_bytes(b"x")
    second, _ = _manager(tmp_path, Events(), RetentionPolicy(keep_jobs=10, keep_days=14))
    second.recover()
    assert [i.job for i in second.list()] == [recent]
    assert not path.exists() and not (tmp_path / "jobs" / old).exists() and not orphan.exists()
    assert second.result(recent)["count"] == 1


def test_serve_refuses_a_retention_that_keeps_no_job(tmp_path, capsys):
    assert main(["serve", "--data", str(tmp_path), "--keep-jobs", "0"]) != 0
    assert "--keep-jobs" in capsys.readouterr().err

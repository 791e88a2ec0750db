"""The data directory on disk: avatar store, atomic writes, packed results, the lock."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from compute_server.errors import UserError
from compute_server.jobs.persistence import JobRecordStore
from compute_server.jobs.records import JobRecord, check_job_id, new_job_id
from compute_server.storage.atomic import atomic_write_json, remove_temp_files
from compute_server.storage.avatar_store import AvatarStore, check_avatar_id
from compute_server.storage.data_dir import DataDir, DataDirLock, default_data_dir
from compute_server.storage.packed_file import load_packed, packed_bytes, save_packed
from shared.records import JobState


@pytest.fixture
def store(tmp_path):
    return AvatarStore(tmp_path / "avatars")


def publish_sample(store, name="sample", n=100):
    splats = np.arange(n * 59, dtype=np.float32).reshape(n, 59)
    avatar_id = store.publish(None, {"splats.npy": splats, "head.npz": {"binding": np.arange(n, dtype=np.uint32)},
                                     "preview.png": b"\x89PNG fake"}, {"name": name, "config": {"steps": 3}})
    return avatar_id, splats


def test_published_avatar_lists_and_loads_back(store):
    avatar_id, splats = publish_sample(store)
    [summary] = store.list()
    assert summary.avatar == avatar_id and summary.name == "sample" and summary.size_bytes > splats.nbytes
    assert summary.metadata["config"] == {"steps": 3}
    metadata, arrays, files = store.get(avatar_id)
    np.testing.assert_array_equal(arrays["splats"], splats)
    assert not arrays["splats"].flags.writeable  # memory-mapped, read-only
    np.testing.assert_array_equal(arrays["head"]["binding"], np.arange(100))
    assert files == {"preview.png": b"\x89PNG fake"}
    assert metadata["files"]["splats.npy"] > 0 and metadata["format"] == 1
    _, only, none = store.get(avatar_id, include=["preview.png"])
    assert only == {} and none == {"preview.png": b"\x89PNG fake"}
    with pytest.raises(UserError) as info:
        store.get(avatar_id, include=["missing.npy"])
    assert info.value.code == "not_found"


def test_delete_removes_the_avatar(store):
    avatar_id, _ = publish_sample(store)
    store.delete(avatar_id)
    assert store.list() == []
    with pytest.raises(UserError) as info:
        store.delete(avatar_id)
    assert info.value.code == "not_found"


def test_unfinished_writes_are_never_listed_and_are_removed_on_recover(store):
    keep_id, _ = publish_sample(store, "kept")
    writer = store.begin()
    writer.write("splats.npy", np.ones((10, 59), np.float32))  # crash before commit: nothing published
    assert [s.avatar for s in store.list()] == [keep_id]
    with pytest.raises(UserError):
        store.get(writer.avatar_id)
    # a directory with the right name but no avatar.json (e.g. copied in by hand) is not an avatar
    (store.root / "av_00000000aaaa").mkdir()
    assert [s.avatar for s in store.list()] == [keep_id]
    assert store.recover() == 1
    assert list((store.root / ".incoming").iterdir()) == []
    assert [s.avatar for s in store.list()] == [keep_id]


def test_leaving_a_writer_without_commit_discards_it(store):
    with pytest.raises(RuntimeError):
        with store.begin() as writer:
            writer.write("a.bin", b"123")
            raise RuntimeError("job failed")
    assert list((store.root / ".incoming").iterdir()) == []


@pytest.mark.parametrize("bad_id", [
    "../etc", "../../avatars", "/etc/passwd", "av_../../x", "av_abc", "av_ABCDEFGHIJ", "av_abcdefgh\n",
    "av_abcdefgh/..", "av_abcd\x00efgh", "av_абвгдежзи", "av_" + "a" * 33, "", None, 12, ["av_abcdefgh"],
    "av_abcdefgh ", "AV_abcdefgh", ".incoming", "av_abcdefgh\\..",
])
def test_avatar_ids_cannot_reach_outside_the_store(store, bad_id):
    with pytest.raises(UserError) as info:
        check_avatar_id(bad_id)
    assert info.value.code == "bad_request"
    for op in (store.exists, store.path, store.get, store.delete):
        with pytest.raises(UserError):
            op(bad_id)


def test_avatar_file_names_are_checked(store):
    with store.begin() as writer:
        for bad in ("../x", "a/b", ".hidden", "avatar.json", "", "x" * 65):
            with pytest.raises(ValueError):
                writer.write(bad, b"1")
        with pytest.raises(ValueError):
            writer.write("arr.bin", np.zeros(3))


def test_new_ids_are_valid_and_unique(store):
    ids = {store.new_id() for _ in range(200)}
    assert len(ids) == 200 and all(check_avatar_id(i) for i in ids)
    jobs = {new_job_id() for _ in range(200)}
    assert len(jobs) == 200 and all(check_job_id(j) for j in jobs)


def test_packed_file_round_trip_and_truncation(tmp_path):
    result = {"motion": {"expr": np.random.default_rng(0).standard_normal((300, 100)).astype(np.float32)},
              "frames": [b"a" * 100_000, b"b"], "n": 3, "name": "x", "empty": np.zeros((0, 3))}
    path = tmp_path / "r.pack"
    save_packed(path, result)
    back = load_packed(path)
    np.testing.assert_array_equal(back["motion"]["expr"], result["motion"]["expr"])
    assert bytes(back["frames"][0]) == result["frames"][0] and back["frames"][1] == b"b"
    assert back["n"] == 3 and back["empty"].shape == (0, 3)
    data = packed_bytes(result)
    (tmp_path / "cut.pack").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError):
        load_packed(tmp_path / "cut.pack")
    (tmp_path / "junk.pack").write_bytes(b"not a pack file at all")
    with pytest.raises(ValueError):
        load_packed(tmp_path / "junk.pack")


def test_atomic_json_write_replaces_and_cleans_temp_files(tmp_path):
    path = tmp_path / "rec.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    (tmp_path / ".rec.json.dead.tmp").write_bytes(b"half")
    assert remove_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.json"]


def test_job_record_store_never_goes_back_to_an_older_revision(tmp_path):
    records = JobRecordStore(tmp_path / "jobs")
    record = JobRecord(job=new_job_id(), kind="test.count", state=JobState.RUNNING, created_at=1.0)
    old = record.to_json()
    record.finish(JobState.CANCELLED)
    records.save(record.to_json())
    records.save(old)  # a slow writer with a stale snapshot
    [loaded] = records.load_all()
    assert loaded.state == JobState.CANCELLED


def test_data_dir_lock_is_exclusive_and_released(tmp_path):
    data = DataDir.open(tmp_path / "d")
    first, second = DataDirLock(data.lock_file), DataDirLock(data.lock_file)
    first.acquire()
    with pytest.raises(UserError) as info:
        second.acquire()
    assert info.value.code == "busy" and "another HeadSplat server" in info.value.message
    first.release()
    second.acquire()
    second.release()


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSPLAT_DATA", str(tmp_path / "x"))
    assert default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("HEADSPLAT_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert default_data_dir() == tmp_path / "xdg" / "headsplat"

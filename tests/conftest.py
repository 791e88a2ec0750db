"""Shared fixtures: real servers on loopback (see tests/server_harness.py)."""

from __future__ import annotations

import logging
import os

import pytest

from tests.server_harness import inprocess_server, running_server
from tests.shared_data import REQUIRE_ENV, SHARED_DATA, missing_shared_files, shared_data_required

# The session server runs with small limits so limit tests stay fast.
SESSION_LIMIT_ARGS = ("--max-message-mb", "8", "--max-image-mp", "1", "--max-render-frames", "100",
                      "--max-queued-jobs", "3")
SESSION_MAX_MESSAGE_BYTES = 8 * 2**20


# Test files that share one process-wide set-up (tests/blender_helpers.py: the built add-on and
# its wheel cache, Blender's extension repository, the add-on's server) run on one worker.
SHARED_PROCESS_GROUPS = {"test_addon_": "blender-addon"}


def work_unit(nodeid: str) -> str:
    """The unit of work a worker takes whole: the test's file, or its shared-process group."""
    path = nodeid.split("::", 1)[0]
    name = path.rsplit("/", 1)[-1]
    return next((group for prefix, group in SHARED_PROCESS_GROUPS.items() if name.startswith(prefix)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``./dev.sh test`` runs two pytest-xdist workers with ``--dist loadfile``: each test file
    runs whole on one worker, so its module fixtures (trained avatars, Blender scenes, a Ray
    cluster) are built once, not once per worker, and here the add-on's files also go
    together (their process-wide set-up is built once, and two builds would share one wheel
    cache). xdist's own ``loadgroup`` marks cannot do this under pytest 9 (they rewrite a
    node id pytest no longer reads)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FileGroupScheduling(config, log)


def pytest_configure(config):
    """An xdist worker takes its share of the cores for torch (and for the servers and
    Blender processes it starts): two workers each spinning two OpenMP threads on a 2-core
    machine run slower than one."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        os.environ.setdefault("MKL_NUM_THREADS", threads)
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_sessionstart(session):
    """In CI a missing ../shared/data is an error, not a pile of skipped real-footage tests."""
    if shared_data_required():
        missing = missing_shared_files()
        if missing:
            pytest.exit(f"{REQUIRE_ENV}/CI is set but {SHARED_DATA} lacks {', '.join(missing)}: CI runs with the "
                        "reference data beside the checkout, so these tests must not be skipped", returncode=4)


@pytest.fixture(autouse=True)
def _root_logging_handlers_restored():
    """CLI entry points called in-process (doctor, session, demo, serve) point the root logger
    at the stderr of the test that called them; pytest closes that stream when the test ends,
    and a server thread of a later test then logged into it ("I/O operation on closed file").
    Stream handlers a test adds to the root logger are taken off after it."""
    root = logging.getLogger()
    before = set(root.handlers)
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler not in before and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def server(tmp_path):
    """A fresh `headsplat serve` subprocess (test job kinds on) for one test."""
    with running_server(tmp_path) as srv:
        yield srv


@pytest.fixture(scope="session")
def session_server(tmp_path_factory):
    """One `headsplat serve` subprocess shared by the session, with SESSION_LIMIT_ARGS.
    Tests using it must not assume an empty queue or store, and must leave no job running."""
    with running_server(tmp_path_factory.mktemp("session-server"), extra_args=SESSION_LIMIT_ARGS) as srv:
        yield srv


@pytest.fixture
def inproc_server(tmp_path):
    """A Server running in a thread of the test process (test methods on)."""
    with inprocess_server(tmp_path) as srv:
        yield srv

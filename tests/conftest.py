"""Shared fixtures: real servers on loopback (see tests/server_harness.py)."""

from __future__ import annotations

import pytest

from tests.server_harness import inprocess_server, running_server
from tests.shared_data import REQUIRE_ENV, SHARED_DATA, missing_shared_files, shared_data_required

# The session server runs with small limits so limit tests stay fast.
SESSION_LIMIT_ARGS = ("--max-message-mb", "8", "--max-image-mp", "1", "--max-render-frames", "100",
                      "--max-queued-jobs", "3")
SESSION_MAX_MESSAGE_BYTES = 8 * 2**20


def pytest_sessionstart(session):
    """In CI a missing ../shared/data is an error, not a pile of skipped real-footage tests."""
    if shared_data_required():
        missing = missing_shared_files()
        if missing:
            pytest.exit(f"{REQUIRE_ENV}/CI is set but {SHARED_DATA} lacks {', '.join(missing)}: CI runs with the "
                        "reference data beside the checkout, so these tests must not be skipped", returncode=4)


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

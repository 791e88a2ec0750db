"""avatar.create refuses an animal photo with no_face in its first stage, through a real
server on loopback, and the server goes on serving."""

from __future__ import annotations

import pytest

from compute_server.face.person_check import MIN_CASCADE_VOTES
from shared.client import Client, JobFailed
from tests.animal_photos import chelsea_face, png_bytes
from tests.pipeline_helpers import create_params
from tests.server_harness import inprocess_server

LATER_STAGES = {"fit", "views", "optimize", "save"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with inprocess_server(tmp_path_factory.mktemp("not_a_person")) as srv:
        with Client(srv.endpoint, timeout_s=30) as c:
            yield c


def _create_and_fail(client, name: str) -> tuple[JobFailed, set[str]]:
    stages: set[str] = set()
    job = client.submit("avatar.create", create_params(images=[{"name": name, "data": png_bytes(chelsea_face(name))}],
                                                       name="cat"))
    with pytest.raises(JobFailed) as info:
        client.wait_job(job, on_progress=lambda event: stages.add(event.get("stage")), timeout_s=120)
    return info.value, stages


def test_an_animal_face_is_refused_before_the_fit_and_the_server_keeps_serving(client):
    failure, stages = _create_and_fail(client, "chelsea_face_grey_x2.png")
    assert failure.code == "no_face"
    assert "chelsea_face_grey_x2.png" in failure.message and "person" in failure.message
    assert failure.details["face_evidence"]["cascade_votes"] < MIN_CASCADE_VOTES
    assert not stages & LATER_STAGES  # refused while preparing the photo: no fit, no Gaussians
    assert client.info()["protocol"] == 1
    again, _ = _create_and_fail(client, "chelsea_face.png")  # the worker took the next job
    assert again.code == "no_face"

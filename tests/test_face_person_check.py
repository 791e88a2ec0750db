"""The person check (compute_server/face/person_check.py): people in every style pass,
animal faces that MediaPipe accepts are refused with no_face, before any fitting."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest

from bench.face_evidence import greyscale, sepia
from compute_server.errors import UserError
from compute_server.face import prepare_portrait
from compute_server.face.person_check import MIN_CASCADE_VOTES, FaceEvidence, refuse_non_person
from tests.animal_photos import CHELSEA_FACE_CROPS, chelsea_face, png_bytes

PORTRAITS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "portraits"
DRIVING = PORTRAITS.parent / "driving"


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _people() -> list[tuple[str, np.ndarray]]:
    import skimage.data

    items = [(p.name, _read(p)) for p in sorted(PORTRAITS.glob("*.jpg"))]
    return items + [("astronaut.png", skimage.data.astronaut())]


@pytest.mark.parametrize("index", range(5))
def test_people_pass_in_colour_greyscale_and_sepia(index):
    people = _people()
    if index >= len(people):
        pytest.skip("fewer shared portraits on this machine")
    name, rgb = people[index]
    for style, image in (("colour", rgb), ("grey", greyscale(rgb)), ("sepia", sepia(rgb))):
        portrait = prepare_portrait(png_bytes(image), f"{style} {name}")
        assert portrait.face_evidence.is_person, (style, name, portrait.face_evidence)


def test_a_turned_head_in_a_driving_clip_passes():
    import av

    clip = DRIVING / "liveportrait_d12.mp4"  # man with glasses turning his head
    if not clip.exists():
        pytest.skip("shared driving clips not on this machine")
    with av.open(str(clip)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 91).to_ndarray(format="rgb24")
    assert prepare_portrait(png_bytes(frame), "d12 frame 91").face_evidence.is_person


@pytest.mark.parametrize("name", sorted(CHELSEA_FACE_CROPS))
def test_cat_faces_that_mediapipe_accepts_are_refused_as_no_face(name):
    image = png_bytes(chelsea_face(name))
    measured = prepare_portrait(image, name, require_person=False)  # MediaPipe does find a "face"
    assert not measured.face_evidence.is_person
    assert measured.face_evidence.cascade_votes <= MIN_CASCADE_VOTES // 2  # with a margin
    with pytest.raises(UserError) as info:
        prepare_portrait(image, name)
    assert info.value.code == "no_face"
    assert name in info.value.message and "person" in info.value.message
    assert info.value.details["face_evidence"]["cascade_votes"] == measured.face_evidence.cascade_votes


def test_the_whole_cat_photo_has_no_face_at_all():
    import skimage.data

    with pytest.raises(UserError) as info:
        prepare_portrait(png_bytes(skimage.data.chelsea()), "chelsea.png")
    assert info.value.code == "no_face"


def test_the_verdict_follows_the_cascade_votes_and_travels_on_the_wire():
    weak = FaceEvidence(cascade_votes=MIN_CASCADE_VOTES - 1, refound_on_crop=True, person_on_face=1.0)
    strong = FaceEvidence(cascade_votes=MIN_CASCADE_VOTES, refound_on_crop=False, person_on_face=0.0)
    assert not weak.is_person and strong.is_person
    refuse_non_person(strong, "ok.png")
    with pytest.raises(UserError) as info:
        refuse_non_person(weak, "dog.jpg")
    assert info.value.code == "no_face" and "dog.jpg" in info.value.message
    assert msgpack.unpackb(msgpack.packb(info.value.details)) == info.value.details

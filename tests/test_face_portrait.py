"""prepare_portrait end to end on real photos, paintings and a cartoon."""

from __future__ import annotations

import hashlib
import io
import math
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from compute_server.errors import UserError
from compute_server.face import PreparedPortrait, landmark_indices as idx, prepare_portrait, thread_cache
from compute_server.face.align import DEFAULT_MARGIN, face_geometry
from compute_server.face.warp import transform_points, warp_to_crop

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "portraits"
SAMPLES = sorted(DATA.glob("*.jpg")) if DATA.is_dir() else []


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def astronaut_portrait(astronaut) -> PreparedPortrait:
    return prepare_portrait(encode(astronaut, "JPEG", quality=95), "astronaut.jpg")


def eye_line_deg(landmarks: np.ndarray) -> float:
    return math.degrees(face_geometry(landmarks).roll_rad)


def source_landmarks(rgb: np.ndarray) -> np.ndarray:
    return thread_cache.still_image_landmarker().detect(rgb)[0].landmarks


def check_portrait(portrait: PreparedPortrait, size: int = 512) -> None:
    """Invariants every prepared portrait satisfies."""
    assert portrait.image.shape == (size, size, 3) and portrait.image.dtype == np.float32
    assert 0.0 <= portrait.image.min() and portrait.image.max() <= 1.0
    assert portrait.matte.shape == (size, size) and portrait.matte.dtype == np.float32
    assert 0.0 <= portrait.matte.min() and portrait.matte.max() <= 1.0
    assert portrait.landmarks.shape == (478, 3) and portrait.landmarks.dtype == np.float32
    assert portrait.landmarks_visible.shape == (478,)
    assert portrait.crop_to_source.shape == (3, 3)
    np.testing.assert_allclose(portrait.crop_to_source[2], [0, 0, 1])
    assert np.all(portrait.matte <= portrait.valid + 1e-6)  # padding is never foreground
    assert abs(eye_line_deg(portrait.landmarks)) < 1.5
    left, right, mouth = (portrait.landmarks[list(idx.LEFT_EYE)].mean(0), portrait.landmarks[list(idx.RIGHT_EYE)].mean(0),
                          portrait.landmarks[[idx.MOUTH_LEFT_CORNER, idx.MOUTH_RIGHT_CORNER]].mean(0))
    assert right[0] < left[0] and max(left[1], right[1]) < mouth[1]
    # The face sits in the middle of the crop, at the convention's scale.
    centre = portrait.landmarks[: idx.N_MESH_LANDMARKS, :2].mean(0)
    assert np.all(np.abs(centre - size / 2) < 0.15 * size)
    assert face_geometry(portrait.landmarks).face_size_px == pytest.approx(size / (2 * DEFAULT_MARGIN), rel=0.1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_astronaut_in_each_format(astronaut, fmt):
    data = encode(astronaut, fmt, **({"quality": 92} if fmt != "PNG" else {}))
    portrait = prepare_portrait(data, f"astronaut.{fmt.lower()}")
    check_portrait(portrait)
    assert portrait.source_size == (512, 512)
    assert portrait.source_sha256 == hashlib.sha256(data).hexdigest()
    assert portrait.name == f"astronaut.{fmt.lower()}" and portrait.warnings == []
    assert portrait.landmarks_source == "crop" and portrait.matte_source == "segmentation"
    x0, y0, x1, y1 = portrait.face_box
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200


def test_crop_landmarks_map_back_onto_the_source(astronaut, astronaut_portrait):
    mapped = transform_points(astronaut_portrait.landmarks, astronaut_portrait.crop_to_source)
    error = np.linalg.norm(mapped[:, :2] - source_landmarks(astronaut)[:, :2], axis=1)
    assert np.median(error) < 1.5 and np.percentile(error, 95) < 3.0
    # And the crop pixels are the source pixels under the same transform.
    for x, y in [(200.5, 180.5), (300.5, 330.5), (256.5, 256.5)]:
        sx, sy = transform_points(np.array([[x, y]]), astronaut_portrait.crop_to_source)[0]
        crop_px = astronaut_portrait.image[int(y), int(x)] * 255
        assert np.abs(crop_px - astronaut[int(sy), int(sx)]).max() < 40


def test_exif_rotated_jpeg_comes_out_upright(astronaut):
    stored = np.ascontiguousarray(np.rot90(astronaut, 1))  # camera held sideways
    exif = Image.fromarray(stored).getexif()
    exif[0x0112] = 6  # viewers rotate 90 degrees clockwise
    portrait = prepare_portrait(encode(stored, "JPEG", quality=95, exif=exif), "sideways.jpg")
    check_portrait(portrait)
    mapped = transform_points(portrait.landmarks, portrait.crop_to_source)
    assert np.median(np.linalg.norm(mapped[:, :2] - source_landmarks(astronaut)[:, :2], axis=1)) < 2.0


def test_upside_down_photo_is_turned_upright(astronaut):
    portrait = prepare_portrait(encode(np.ascontiguousarray(astronaut[::-1, ::-1])), "headstand.png")
    check_portrait(portrait)
    assert any("upside down" in w for w in portrait.warnings)
    mapped = transform_points(portrait.landmarks, portrait.crop_to_source)
    expected = source_landmarks(astronaut)[:, :2] * -1 + 512  # the same points, turned
    assert np.median(np.linalg.norm(mapped[:, :2] - expected, axis=1)) < 2.0


def test_eyes_are_level_after_rotating_the_source(astronaut):
    rotation = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    rotated = cv2.warpAffine(astronaut, rotation, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    portrait = prepare_portrait(encode(rotated), "tilted.png")
    check_portrait(portrait)
    assert abs(eye_line_deg(portrait.landmarks)) < 1.0
    # The crop's rotation undoes the 20 degrees (within the source face's own slight roll).
    crop_angle = math.degrees(math.atan2(portrait.crop_to_source[1, 0], portrait.crop_to_source[0, 0]))
    assert abs(crop_angle - (-20 + eye_line_deg(source_landmarks(astronaut)))) < 1.5


def test_no_face_names_the_file():
    with pytest.raises(UserError) as info:
        prepare_portrait(encode(skimage.data.coffee(), "JPEG"), "coffee.jpg")
    assert info.value.code == "no_face" and "coffee.jpg" in info.value.message
    noise = np.random.default_rng(5).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    with pytest.raises(UserError) as info:
        prepare_portrait(encode(noise), "static.png")
    assert info.value.code == "no_face" and "static.png" in info.value.message


def test_bad_and_oversized_files(astronaut):
    jpeg = encode(astronaut, "JPEG")
    with pytest.raises(UserError) as info:
        prepare_portrait(jpeg[:3000], "cut.jpg")
    assert info.value.code == "bad_image" and "cut.jpg" in info.value.message
    with pytest.raises(UserError) as info:
        prepare_portrait(jpeg, "huge.jpg", max_pixels=100_000)
    assert info.value.code == "bad_image" and "huge.jpg" in info.value.message


def test_two_faces_use_the_larger_with_a_warning(astronaut):
    canvas = np.full((600, 1000, 3), 200, np.uint8)
    canvas[40:552, 440:952] = astronaut  # full size on the right
    canvas[150:406, 40:296] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)  # half size
    portrait = prepare_portrait(encode(canvas), "pair.png")
    check_portrait(portrait)
    assert portrait.face_box[0] > 440  # the full-size copy
    assert any("2 faces" in w and "largest" in w for w in portrait.warnings)


def test_small_face_warns_and_cut_off_head_warns(astronaut):
    canvas = np.full((700, 900, 3), 120, np.uint8)
    canvas[300:556, 500:756] = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)  # face ~48 px
    small = prepare_portrait(encode(canvas), "far.png")
    check_portrait(small)
    assert any("only about" in w for w in small.warnings)

    cut = prepare_portrait(encode(np.ascontiguousarray(astronaut[95:])), "forehead_cut.png")  # hair cut off
    assert any("cut off" in w for w in cut.warnings)


def test_greyscale_and_sixteen_bit_inputs(astronaut):
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    portrait = prepare_portrait(encode(grey), "grey.png")
    check_portrait(portrait)
    assert np.abs(portrait.image[..., 0] - portrait.image[..., 2]).max() < 1e-6
    ok, png16 = cv2.imencode(".png", cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    assert ok
    check_portrait(prepare_portrait(png16.tobytes(), "deep.png"))


def test_rgba_cutout_becomes_the_matte(astronaut, astronaut_portrait):
    # Use the segmentation of the opaque photo as the cut-out, then feed it back as alpha.
    inverse = np.linalg.inv(astronaut_portrait.crop_to_source)
    alpha_source = cv2.warpAffine((astronaut_portrait.matte > 0.5).astype(np.uint8) * 255,
                                  (np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]]) @ inverse
                                   @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]))[:2],
                                  (512, 512), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    alpha_source[:, :60] = 0  # and make sure something is transparent
    portrait = prepare_portrait(encode(np.dstack([astronaut, alpha_source])), "cutout.png")
    check_portrait(portrait)
    assert portrait.matte_source == "alpha"
    expected = transform_points(np.array([[256.5, 256.5]]), portrait.crop_to_source)[0].astype(int)
    assert portrait.matte[256, 256] == pytest.approx(alpha_source[expected[1], expected[0]] / 255.0, abs=0.05)
    agreement = np.mean((portrait.matte > 0.5) == (astronaut_portrait.matte > 0.5))
    assert agreement > 0.95


def matte_checks(portrait: PreparedPortrait) -> None:
    """Face and hair are foreground; the background corners above the shoulders are not."""
    size = portrait.size
    oval = portrait.landmarks[list(idx.FACE_OVAL), :2].astype(np.int32)
    face_mask = cv2.fillPoly(np.zeros((size, size), np.uint8), [oval], 1).astype(bool)
    assert portrait.matte[face_mask].mean() > 0.9
    top, chin = portrait.landmarks[idx.FOREHEAD_TOP], portrait.landmarks[idx.CHIN]
    hair = top[:2] - 0.12 * (chin[:2] - top[:2])  # just above the hairline
    assert portrait.matte[int(hair[1]), int(hair[0])] > 0.5
    corner = size // 10
    for rows, cols in ((slice(0, corner), slice(0, corner)), (slice(0, corner), slice(-corner, None))):
        assert portrait.matte[rows, cols].mean() < 0.1


def test_matte_covers_face_and_hair(astronaut_portrait):
    matte_checks(astronaut_portrait)


@pytest.mark.skipif(not SAMPLES, reason="shared test data not found")
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_portraits(path):
    data = path.read_bytes()
    portrait = prepare_portrait(data, path.name)
    check_portrait(portrait)
    matte_checks(portrait)
    source = np.asarray(Image.open(path).convert("RGB"))
    mapped = transform_points(portrait.landmarks, portrait.crop_to_source)
    error = np.linalg.norm(mapped[:, :2] - source_landmarks(source)[:, :2], axis=1)
    face_width = portrait.face_box[2] - portrait.face_box[0]
    assert np.median(error) < 0.015 * face_width
    assert portrait.landmarks_visible.mean() > 0.8


def test_threads_get_their_own_graphs_and_agree(astronaut, astronaut_portrait):
    data = encode(astronaut, "JPEG", quality=95)
    results: dict[int, PreparedPortrait] = {}
    errors: list[BaseException] = []

    def work(key: int) -> None:
        try:
            results[key] = prepare_portrait(data, "astronaut.jpg")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            thread_cache.close_thread_resources()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for portrait in results.values():
        np.testing.assert_allclose(portrait.landmarks, astronaut_portrait.landmarks, atol=0.05)
        np.testing.assert_allclose(portrait.crop_to_source, astronaut_portrait.crop_to_source, atol=1e-4)
        assert np.abs(portrait.matte - astronaut_portrait.matte).max() < 0.02


def test_crop_landmarks_fall_back_to_the_source_pass(astronaut, astronaut_portrait):
    from compute_server.face.portrait import _crop_landmarks

    landmarker = thread_cache.still_image_landmarker()
    face = landmarker.detect(astronaut)[0]
    blank = np.full((512, 512, 3), 128, np.uint8)  # the crop shows no face: keep the mapped ones
    landmarks, source = _crop_landmarks(landmarker, blank, face, astronaut_portrait.crop_to_source)
    assert source == "source"
    np.testing.assert_allclose(transform_points(landmarks, astronaut_portrait.crop_to_source), face.landmarks,
                               atol=1e-3)
    decoded = np.asarray(Image.open(io.BytesIO(encode(astronaut, "JPEG", quality=95))).convert("RGB"))
    crop = warp_to_crop(decoded, astronaut_portrait.crop_to_source, 512, border="replicate")  # the raw crop
    landmarks, source = _crop_landmarks(landmarker, crop, face, astronaut_portrait.crop_to_source)
    assert source == "crop"
    np.testing.assert_allclose(landmarks, astronaut_portrait.landmarks, atol=0.5)

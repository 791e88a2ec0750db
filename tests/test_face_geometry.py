"""Pure math of the face package: warps, crop convention, mesh triangles, box search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compute_server.face import landmark_indices as idx
from compute_server.face.align import (DEFAULT_MARGIN, HEAD_CENTRE_DEPTH, crop_to_source_transform, face_geometry,
                                       square_box_transform)
from compute_server.face.face_boxes import TiledFaceSearch, merge_boxes, pyramid_tiles, tile_starts
from compute_server.face.visibility import face_mesh_triangles, triangles_from_edges, vertex_facing
from compute_server.face.warp import (crop_validity, similarity_matrix, similarity_scale, transform_points,
                                      warp_to_crop)


# ----------------------------------------------------------------------------- warps
def test_transform_points_scales_depth_and_inverts():
    matrix = similarity_matrix(2.5, 0.3, (10.0, -4.0))
    points = np.array([[1.0, 2.0, -3.0], [50.0, 7.0, 4.0]])
    mapped = transform_points(points, matrix)
    assert similarity_scale(matrix) == pytest.approx(2.5)
    np.testing.assert_allclose(mapped[:, 2], points[:, 2] * 2.5)
    np.testing.assert_allclose(transform_points(mapped, np.linalg.inv(matrix)), points, atol=1e-9)


def test_warp_identity_and_integer_shift_are_exact():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_to_crop(image, np.eye(3), 80), image)
    shifted = warp_to_crop(image, similarity_matrix(1.0, 0.0, (10.0, 5.0)), 40)
    np.testing.assert_array_equal(shifted, image[5:45, 10:50])


def test_warp_pixel_centres_follow_the_half_pixel_convention():
    # Upsampling x2: crop pixel i's centre (i + 0.5) maps to source x = 0.5 (i + 0.5) + 16,
    # where a ramp whose pixel k holds k has the value x - 0.5. A convention slip (integer
    # centres) would shift every value by 0.25; OpenCV's bicubic (a = -0.75) is not exact on
    # ramps, but its error alternates around zero.
    ramp = np.tile(np.arange(64, dtype=np.float32)[None, :], (64, 1))
    crop = warp_to_crop(ramp, similarity_matrix(0.5, 0.0, (16.0, 16.0)), 64)
    source_x = 0.5 * (np.arange(64) + 0.5) + 16.0
    error = crop[32] - (source_x - 0.5)
    assert np.abs(error).max() < 0.06 and abs(float(error.mean())) < 0.005


def test_downscale_averages_instead_of_aliasing():
    checker = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-px checkerboard
    crop = warp_to_crop(checker, similarity_matrix(4.0, 0.0, (0.0, 0.0)), 64)
    assert abs(float(crop.mean()) - 127.5) < 2 and float(crop.std()) < 4  # grey, not moire
    rotated = warp_to_crop(checker, similarity_matrix(3.0, 0.4, (60.0, 0.0)), 48, border="constant")
    inside = rotated[20:28, 20:28]
    assert abs(float(inside.mean()) - 127.5) < 12 and float(inside.std()) < 20


def test_crop_validity_marks_the_photo_and_softens_edges():
    # Crop 100 px at scale 1 starting 50 px left of a 200 x 100 photo.
    matrix = similarity_matrix(1.0, 0.0, (-50.0, 0.0))
    valid = crop_validity((200, 100), matrix, 100)
    assert valid[:, :49].max() == 0.0 and valid[:, 51:].min() == 1.0
    constant = warp_to_crop(np.full((100, 200), 255, np.uint8), matrix, 100, border="constant")
    assert np.abs(constant[:, 45:55] / 255.0 - valid[:, 45:55]).max() < 0.51


# ----------------------------------------------------------------------------- crop convention
def synthetic_face(eye_distance: float = 60.0) -> np.ndarray:
    """(478, 3) landmarks of an idealised frontal face: eyes, mouth and a curved mesh."""
    rng = np.random.default_rng(1)
    points = np.zeros((idx.N_LANDMARKS, 3))
    angles = rng.uniform(0, 2 * np.pi, idx.N_LANDMARKS)
    radii = rng.uniform(0, 1, idx.N_LANDMARKS)
    points[:, 0] = 1.3 * eye_distance * radii * np.cos(angles)
    points[:, 1] = 1.6 * eye_distance * radii * np.sin(angles)
    points[:, 2] = 0.6 * eye_distance * radii ** 2  # a dome: the centre is closest (smaller z)
    for ring, centre in ((idx.LEFT_EYE, (eye_distance / 2, -20.0)), (idx.RIGHT_EYE, (-eye_distance / 2, -20.0))):
        for k, i in enumerate(ring):
            points[i] = (centre[0] + 8 * math.cos(k), centre[1] + 4 * math.sin(k), 5.0)
    points[idx.MOUTH_LEFT_CORNER] = (22.0, 45.0, 5.0)
    points[idx.MOUTH_RIGHT_CORNER] = (-22.0, 45.0, 5.0)
    return points + np.array([300.0, 200.0, 0.0])


def rotate_about(points: np.ndarray, rotation: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    return (points - pivot) @ rotation.T + pivot


def test_crop_levels_eyes_and_fixes_scale():
    face = synthetic_face()
    geometry = face_geometry(face)
    size = 512
    crop_to_source = crop_to_source_transform(face, size)
    eyes_crop = transform_points(np.stack([geometry.eye_right, geometry.eye_left]), np.linalg.inv(crop_to_source))
    assert abs(eyes_crop[0, 1] - eyes_crop[1, 1]) < 1e-6
    expected_side = 2 * DEFAULT_MARGIN * geometry.face_size_px
    assert similarity_scale(crop_to_source) * size == pytest.approx(expected_side)
    # Rolling the face by 25 degrees changes only the crop's rotation, not where eyes land.
    roll = math.radians(25)
    rotation = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    rolled = rotate_about(face, rotation, np.array([300.0, 200.0, 0.0]))
    rolled_crop = crop_to_source_transform(rolled, size)
    rolled_eyes = transform_points(np.stack([rolled[list(idx.RIGHT_EYE)].mean(0), rolled[list(idx.LEFT_EYE)].mean(0)]),
                                   np.linalg.inv(rolled_crop))
    np.testing.assert_allclose(rolled_eyes[:, :2], eyes_crop[:, :2], atol=1e-6)
    assert face_geometry(rolled).roll_rad == pytest.approx(roll)


def test_turned_head_keeps_its_size_and_centres_on_the_skull():
    face = synthetic_face()
    geometry = face_geometry(face)
    head_centre = np.append(geometry.eye_mid[:2], geometry.eye_mid[2] + HEAD_CENTRE_DEPTH * geometry.face_size_px)
    yaw = math.radians(45)
    rotation = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    turned = rotate_about(face, rotation, head_centre)
    turned_geometry = face_geometry(turned)
    assert turned_geometry.face_size_px == pytest.approx(geometry.face_size_px, rel=1e-6)  # 3-D distances
    size = 512
    centre = transform_points(np.array([[size / 2, size / 2]]), crop_to_source_transform(turned, size))[0]
    frontal_centre = transform_points(np.array([[size / 2, size / 2]]), crop_to_source_transform(face, size))[0]
    # The skull's centre projects to the same place in both views; so does the crop centre.
    np.testing.assert_allclose(centre, frontal_centre, atol=0.05 * geometry.face_size_px)
    eye_shift = turned_geometry.eye_mid[0] - geometry.eye_mid[0]
    assert abs(eye_shift) > 0.3 * geometry.face_size_px  # while the face itself moved a lot


def test_square_box_transform_covers_the_expanded_box():
    matrix = square_box_transform((100.0, 50.0, 140.0, 110.0), 300, expand=2.0)
    corners = transform_points(np.array([[0.0, 0.0], [300.0, 300.0]]), matrix)
    np.testing.assert_allclose(corners, [[60.0, 20.0], [180.0, 140.0]])


# ----------------------------------------------------------------------------- mesh triangles
def test_triangles_from_edges_drops_separating_cliques_and_winds_consistently():
    # Triangle 0-1-2 split around an inner vertex 3, with a triangle outside each of its
    # sides (vertices 4, 5, 6): the 3-clique 0-1-2 encloses vertex 3 and is not a face.
    edges = {(0, 1), (1, 2), (0, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (1, 5), (2, 5), (0, 6), (2, 6)}
    triangles = triangles_from_edges(edges)
    assert sorted(tuple(sorted(t)) for t in triangles) == [(0, 1, 3), (0, 1, 4), (0, 2, 3), (0, 2, 6), (1, 2, 3),
                                                           (1, 2, 5)]
    _assert_consistent(triangles)


def _assert_consistent(triangles: np.ndarray) -> None:
    directed = [(int(t[a]), int(t[b])) for t in triangles for a, b in ((0, 1), (1, 2), (2, 0))]
    assert len(directed) == len(set(directed)), "an edge is traversed twice in the same direction"


def test_face_mesh_triangles_form_an_oriented_manifold():
    triangles = face_mesh_triangles()
    assert triangles.shape[1] == 3 and 800 < len(triangles) < 900
    assert set(np.unique(triangles)) == set(range(idx.N_MESH_LANDMARKS))
    _assert_consistent(triangles)


def test_vertex_facing_flags_the_far_side_of_a_turned_dome():
    # A hemisphere facing the camera (-z), sampled on a grid and triangulated.
    n = 15
    u, v = np.meshgrid(np.linspace(-0.95, 0.95, n), np.linspace(-0.95, 0.95, n))
    keep = u ** 2 + v ** 2 < 0.9
    points = np.stack([u[keep], v[keep], -np.sqrt(1 - u[keep] ** 2 - v[keep] ** 2)], axis=1)
    index = -np.ones((n, n), int)
    index[keep] = np.arange(keep.sum())
    triangles = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = index[r, c], index[r, c + 1], index[r + 1, c], index[r + 1, c + 1]
            if min(a, b, d, e) >= 0:
                triangles += [(a, b, e), (a, e, d)]
    facing = vertex_facing(points, np.array(triangles))
    centre = np.argmin(np.linalg.norm(points[:, :2], axis=1))
    assert facing[centre] > 0.95
    yaw = math.radians(80)  # turn it almost side-on: the far rim faces away
    rotation = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    turned = vertex_facing(points @ rotation.T, np.array(triangles))
    far_rim = points[:, 0] < -0.8
    near_rim = points[:, 0] > 0.8
    assert turned[far_rim].max() < 0 < turned[near_rim].min()


def test_landmark_indices_match_mediapipe():
    from compute_server.face.mediapipe_runtime import filtered_native_stderr

    with filtered_native_stderr():
        from mediapipe.python.solutions import face_mesh_connections as connections

    def vertices(edges):
        return {v for e in edges for v in e}

    assert vertices(connections.FACEMESH_LEFT_EYE) == set(idx.LEFT_EYE)
    assert vertices(connections.FACEMESH_RIGHT_EYE) == set(idx.RIGHT_EYE)
    assert vertices(connections.FACEMESH_LEFT_IRIS) | {idx.LEFT_IRIS_CENTER} == set(idx.LEFT_IRIS)
    assert vertices(connections.FACEMESH_RIGHT_IRIS) | {idx.RIGHT_IRIS_CENTER} == set(idx.RIGHT_IRIS)
    assert vertices(connections.FACEMESH_FACE_OVAL) == set(idx.FACE_OVAL)
    assert vertices(connections.FACEMESH_LIPS) == set(idx.LIPS)
    assert {idx.MOUTH_LEFT_CORNER, idx.MOUTH_RIGHT_CORNER} <= set(idx.LIPS)
    oval_edges = {tuple(sorted(e)) for e in connections.FACEMESH_FACE_OVAL}
    loop = list(idx.FACE_OVAL) + [idx.FACE_OVAL[0]]
    assert {tuple(sorted(p)) for p in zip(loop, loop[1:])} == oval_edges


# ----------------------------------------------------------------------------- box search
def test_tiles_cover_the_image_with_half_overlap():
    assert tile_starts(100, 100) == [0]
    assert tile_starts(250, 100) == [0, 50, 100, 150]
    tiles = list(pyramid_tiles(250, 120, 100))
    covered = np.zeros((120, 250), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_merge_boxes_keeps_the_best_of_overlapping():
    boxes = [((0, 0, 10, 10), 0.6), ((1, 1, 11, 11), 0.9), ((50, 50, 60, 60), 0.5)]
    assert merge_boxes(boxes) == [((1, 1, 11, 11), 0.9), ((50, 50, 60, 60), 0.5)]


class FakeDetector:
    """Finds a listed face when its box lies wholly in the image and spans >= 10 % of the
    image side (like BlazeFace's limit). The image's pixels encode their own source
    coordinates (``_coordinate_image``), so it knows where a tile or shrunk level came from.
    """

    def __init__(self, faces: list[tuple[float, float, float, float]]):
        self.faces = faces
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        h, w = image.shape[:2]
        x0, y0 = _decode_xy(image[0, 0])
        x_end, _ = _decode_xy(image[0, -1])
        scale = (x_end - x0) / (w - 1) if w > 1 else 1.0  # source px per image px
        found = []
        for fx0, fy0, fx1, fy1 in self.faces:
            box = ((fx0 - x0) / scale, (fy0 - y0) / scale, (fx1 - x0) / scale, (fy1 - y0) / scale)
            inside = box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h
            if inside and box[2] - box[0] >= 0.1 * max(w, h):
                found.append((box, 0.9))
        return found


def _decode_xy(pixel) -> tuple[float, float]:
    c0, c1, c2 = (int(v) for v in pixel)
    return float(c0 * 16 + c2 // 16), float(c1 * 16 + c2 % 16)


def test_tiled_search_finds_small_faces_and_stops_at_the_size_floor(monkeypatch):
    # The detector sees pixel coordinates through a nearest-neighbour shrink (no averaging).
    import compute_server.face.face_boxes as face_boxes

    monkeypatch.setattr(face_boxes.cv2, "resize", _nearest_resize)
    width, height = 2000, 1200
    image = _coordinate_image(width, height)
    small = (1500.0, 300.0, 1560.0, 360.0)  # 60 px: 3 % of the image side
    detector = FakeDetector([small])
    search = TiledFaceSearch(image, [detector], detector, min_face_px=40)
    found = []
    for level in search.levels():
        found += level
    assert len(found) == 1
    np.testing.assert_allclose(found[0][0], small, atol=6)
    # Levels stop once faces of 40 px are covered: tile side 500 (8 % = 40 px).
    assert detector.calls < 60


def test_tiled_search_stops_early_only_for_verified_faces(monkeypatch):
    import compute_server.face.face_boxes as face_boxes

    monkeypatch.setattr(face_boxes.cv2, "resize", _nearest_resize)
    image = _coordinate_image(2000, 2000)
    big = (500.0, 500.0, 1100.0, 1100.0)
    detector = FakeDetector([big])
    unverified = TiledFaceSearch(image, [detector], detector, min_face_px=40)
    n_levels_unverified = sum(1 for _ in unverified.levels())
    verified = TiledFaceSearch(image, [detector], detector, min_face_px=40)
    n_levels_verified = 0
    for boxes in verified.levels():
        n_levels_verified += 1
        for box, _ in boxes:
            verified.add_verified(box)
    assert n_levels_verified < n_levels_unverified
    assert n_levels_unverified == 3  # 2000 -> 1000 -> 500 px tiles: 8 % of 500 = 40 px


def _coordinate_image(width: int, height: int) -> np.ndarray:
    """Pixels that encode their own (x, y): channel 0/1 = coordinate // 16, channel 2 mixes the rest."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = xs // 16
    image[..., 1] = ys // 16
    image[..., 2] = (xs % 16) * 16 + ys % 16
    return image


def _nearest_resize(image, size, interpolation=None):
    width, height = size
    rows = (np.arange(height) * image.shape[0] / height).astype(int)
    cols = (np.arange(width) * image.shape[1] / width).astype(int)
    return image[rows][:, cols]

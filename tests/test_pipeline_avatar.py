"""avatar.create, render.frames and the PLY export through a real server on loopback
(tiny settings: 96 px, 40 iterations, CPU)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shared.client import Client, JobFailed, ServerError
from shared.splat_format import SPLAT_FIELDS, ply_property_names
from tests.pipeline_helpers import create_params, decode_png, noise_png
from tests.server_harness import inprocess_server


@pytest.fixture(scope="module")
def pipeline_server(tmp_path_factory):
    with inprocess_server(tmp_path_factory.mktemp("pipeline")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(pipeline_server):
    with Client(pipeline_server.endpoint, timeout_s=30) as c:
        yield c


@pytest.fixture(scope="module")
def created(client):
    events = []
    job = client.submit("avatar.create", create_params())
    result = client.wait_job(job, on_progress=events.append, timeout_s=600)
    return {"job": job, "result": result, "events": events}


def test_create_reports_stages_in_order_with_previews(created):
    stages = []
    for event in created["events"]:
        if event.get("stage") and (not stages or stages[-1] != event["stage"]):
            stages.append(event["stage"])
    order = [s for s in stages if s in ("prepare", "fit", "views", "optimize", "save")]
    assert order == ["prepare", "fit", "views", "optimize", "save"]
    previews = [e["preview"] for e in created["events"] if e.get("preview")]
    assert previews and decode_png(previews[0]["data"]).shape[2] == 4
    fractions = [e["fraction"] for e in created["events"] if e.get("fraction") is not None]
    assert fractions == sorted(fractions)


def test_create_publishes_a_complete_avatar(client, created):
    result = created["result"]
    avatar = client.get_avatar(result["avatar"])
    meta, arrays = avatar["metadata"], avatar["arrays"]
    splats = arrays["splats"]
    assert set(SPLAT_FIELDS) <= set(splats)
    n = result["splats"]
    assert splats["means_local"].shape == (n, 3) and splats["binding"].shape == (n,)
    rig = arrays["rig"]
    n_faces, n_verts = meta["counts"]["faces"], meta["counts"]["vertices"]
    assert splats["binding"].min() >= 0 and splats["binding"].max() < n_faces
    assert len(np.unique(splats["binding"])) == n_faces            # every triangle keeps a Gaussian
    assert rig["rest_vertices"].shape == (n_verts, 3) and rig["faces"].shape == (n_faces, 3)
    assert rig["expression_deltas"].shape == (meta["head_model"]["n_expr"], n_verts, 3)
    assert rig["skin_weights"].shape == (n_verts, 5) and np.allclose(rig["skin_weights"].sum(1), 1, atol=1e-4)
    assert arrays["fit"]["expr"].shape == (1, meta["head_model"]["n_expr"])
    assert meta["preset"] == "draft" and meta["seed"] == 3 and meta["sources"][0]["name"] == "astronaut.jpg"
    assert len(meta["head_model"]["expression_names"]) == meta["head_model"]["n_expr"]
    assert decode_png(avatar["files"]["preview.png"]).shape == (96, 96, 4)
    assert result["metrics"]["input_psnr_db"] > 10
    # the hair shell: the scalp fitted to the photo's outline, in the rig's rest surface,
    # the face where the photo fitted it
    from compute_server.head.model import load_head_model

    base = load_head_model().rig_export(np.array(rig["shape"]))
    offset = np.array(rig["static_offset"])
    np.testing.assert_allclose(np.array(rig["rest_vertices"]) - offset, base["rest_vertices"], atol=1e-6)
    face = np.unique(base["faces"][base["face_region"] == base["region_names"].index("face")])
    assert np.abs(offset).max() > 1e-3 and not offset[face].any()


def test_same_seed_gives_the_same_avatar(client, created):
    again = client.wait_job(client.submit("avatar.create", create_params()), timeout_s=600)
    a = client.get_avatar(created["result"]["avatar"], include=["splats.npz"])["arrays"]["splats"]
    b = client.get_avatar(again["avatar"], include=["splats.npz"])["arrays"]["splats"]
    for key in SPLAT_FIELDS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _render(client, avatar, **params):
    frames = {}
    job = client.submit("render.frames", {"avatar": avatar, **params})
    result = client.wait_job(job, on_progress=lambda e: frames.__setitem__(e["frame_index"], e) if e.get("frame") else None,
                             timeout_s=300)
    return job, result, frames


def test_jaw_opening_moves_the_mouth_not_the_forehead(client, created):
    avatar = created["result"]["avatar"]
    jaw = np.zeros((2, 3), np.float32)
    jaw[1, 0] = 0.35
    _, result, frames = _render(client, avatar, params={"jaw_pose": jaw}, camera_preset="portrait")
    closed = decode_png(frames[0]["frame"]["data"]).astype(float)
    opened = decode_png(frames[1]["frame"]["data"]).astype(float)
    diff = np.abs(closed - opened)[..., :3].mean(-1)
    h = diff.shape[0]
    assert diff[int(h * 0.55):int(h * 0.85)].mean() > 4 * diff[int(h * 0.1):int(h * 0.35)].mean() + 0.5


def test_turntable_with_depth_streams_frames_and_serves_ranges(client, created):
    avatar = created["result"]["avatar"]
    job, result, frames = _render(client, avatar, camera_preset="turntable", params={"jaw_pose": np.zeros((4, 3), np.float32)},
                                  size=[64, 48], depth=True, first_frame=10)
    assert result["frames"] == 4 and sorted(frames) == [0, 1, 2, 3]
    assert frames[2]["frame_number"] == 12 and decode_png(frames[2]["frame"]["data"]).shape == (48, 64, 4)
    depth = np.asarray(frames[0]["depth"])
    assert depth.shape == (48, 64) and depth.max() > 0.3 and depth.min() == 0.0
    part = client.call("job.result", {"job": job, "frames": [1, 3]})["result"]["frame_data"]
    assert [p["frame_number"] for p in part] == [11, 12]
    assert bytes(part[1]["frame"]["data"]) == bytes(frames[2]["frame"]["data"])


def test_ply_export_has_the_standard_3dgs_layout(client, created):
    from compute_server.splats.ply import read_ply_columns

    avatar = created["result"]["avatar"]
    _, result, frames = _render(client, avatar, format="ply", camera_preset="portrait")
    columns = read_ply_columns(bytes(frames[0]["frame"]["data"]))
    sh_degree = client.get_avatar(avatar, include=[])["metadata"]["sh_degree"]
    assert list(columns) == ply_property_names(sh_degree)
    assert len(columns["x"]) == created["result"]["splats"]
    quats = np.stack([columns[f"rot_{i}"] for i in range(4)], 1)
    assert np.allclose(np.linalg.norm(quats, axis=1), 1, atol=1e-4)
    assert np.all(np.abs(columns["y"]) < 0.5)   # metres, head-sized


@pytest.mark.parametrize("params, code", [
    ({"avatar": "av_doesnotexist0"}, "not_found"),
    ({"params": {"expr": np.zeros((2, 999), np.float32)}}, "bad_request"),
    ({"params": {"jaw_pose": np.zeros((2, 4), np.float32)}}, "bad_request"),
    ({"cameras": [{"fx": 1}]}, "bad_request"),
    ({"params": {"jaw_pose": np.zeros((100_000, 3), np.float32)}}, "too_large"),
    ({"format": "gif"}, "bad_request"),
])
def test_render_refuses_bad_requests_at_submission(client, created, params, code):
    with pytest.raises(ServerError) as info:
        client.submit("render.frames", {"avatar": created["result"]["avatar"], **params})
    assert info.value.code == code


@pytest.mark.parametrize("overrides, code", [
    ({"images": [{"name": "broken.jpg", "data": b"\xff\xd8\xff\xe0 not really a jpeg"}]}, "bad_image"),
    ({"preset": "ultra"}, "bad_request"),
    ({"diffusion": "sd-does-not-exist"}, "unavailable"),
    ({"head_model": "flame1999"}, "bad_request"),
    ({"images": []}, "bad_request"),
    ({"images": None, "video": {"name": "selfie.mp4", "data": b""}}, "bad_file"),
])
def test_create_refuses_bad_requests_at_submission(client, overrides, code):
    with pytest.raises(ServerError) as info:
        client.submit("avatar.create", create_params(**overrides))
    assert info.value.code == code


def test_a_photo_without_a_face_fails_with_no_face_naming_it(client):
    job = client.submit("avatar.create", create_params(images=[{"name": "static.png", "data": noise_png()}]))
    with pytest.raises(JobFailed) as info:
        client.wait_job(job, timeout_s=120)
    assert info.value.code == "no_face" and "static.png" in info.value.message
    assert client.info()["protocol"] == 1


def test_cancel_during_optimization_takes_effect_within_a_second(client):
    job = client.submit("avatar.create", create_params(options={"iterations": 5000, "image_size": 96}))
    deadline = time.monotonic() + 120
    while client.job_status(job).stage != "optimize":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    asked = time.monotonic()
    client.cancel(job)
    while client.job_status(job).state.value != "cancelled":
        assert time.monotonic() - asked < 1.0
        time.sleep(0.02)


def test_no_holes_at_any_yaw(pipeline_server, created):
    """36 turntable views: no pixel inside the posed mesh's silhouette (less its 1 px rim)
    has alpha below 0.5, ears and back of the head included."""
    from bench.coverage import load_stored_avatar, stored_photo_silhouette, turntable_coverage

    avatar = load_stored_avatar(pipeline_server.config.data_dir, created["result"]["avatar"])
    report = turntable_coverage(avatar, views=36, size=96,
                                photo_silhouette=stored_photo_silhouette(pipeline_server.config.data_dir, avatar))
    assert min(report.mesh_pixels) > 1000
    holes = {f"{y:.0f}": n for y, n in zip(report.yaws_deg, report.hole_pixels) if n}
    assert not holes, f"hole pixels per yaw: {holes}; lowest alpha per yaw: {report.min_alpha}"


def test_the_hole_check_leaves_out_only_what_the_photo_shows_as_no_head(pipeline_server, created):
    """Pixels the avatar was meant to leave clear (rays that never meet the photo's
    silhouette cone) are found from the avatar's own folder: with the whole preview opaque
    every mesh pixel counts; with its top third made background, only a band at the top of
    the side views is left out and the face below still counts."""
    from bench.coverage import load_stored_avatar, stored_photo_silhouette, turntable_coverage

    data_dir = pipeline_server.config.data_dir
    avatar = load_stored_avatar(data_dir, created["result"]["avatar"])
    camera, alpha = stored_photo_silhouette(data_dir, avatar)
    full = turntable_coverage(avatar, views=4, size=96)
    opaque = turntable_coverage(avatar, views=4, size=96, photo_silhouette=(camera, np.ones_like(alpha)))
    assert opaque.mesh_pixels == full.mesh_pixels
    cut = alpha.copy()
    cut[: alpha.shape[0] // 3] = 0.0
    top_cut = turntable_coverage(avatar, views=4, size=96, photo_silhouette=(camera, cut))
    for kept, everything in zip(top_cut.mesh_pixels, full.mesh_pixels):
        assert 0.5 * everything < kept < everything


def test_the_hole_check_sees_a_missing_ear(pipeline_server, created):
    """The check above can fail: make the Gaussians bound to the ears transparent and the
    side views have holes."""
    import torch

    from bench.coverage import load_stored_avatar, turntable_coverage

    avatar = load_stored_avatar(pipeline_server.config.data_dir, created["result"]["avatar"])
    head = avatar.head_model
    ear_faces = torch.nonzero(head.face_region == head.region_names.index("ear")).flatten()
    on_ear = torch.isin(avatar.splats.binding, ear_faces)
    with torch.no_grad():
        avatar.splats.params["opacities"][on_ear] = -20.0
    report = turntable_coverage(avatar, views=8, size=96)
    by_yaw = dict(zip(report.yaws_deg, report.hole_pixels))
    assert by_yaw[90.0] > 20 and by_yaw[270.0] > 20


def test_an_opened_mouth_shows_a_dark_cavity_not_skin_or_lips(client, created):
    """The jaw opened far beyond the photo's: the pixels where the posed mesh shows the
    mouth cavity must be darker than the lips around it and unlike the skin (no stretched
    lip or skin colour, no white block), whatever the photo showed of the mouth."""
    import torch
    from scipy import ndimage

    from compute_server.head.model import HeadParams, load_head_model
    from compute_server.views.surface import render_surface
    from shared.camera import Camera

    avatar_id = created["result"]["avatar"]
    avatar = client.get_avatar(avatar_id)
    fit, rig = avatar["arrays"]["fit"], avatar["arrays"]["rig"]
    params = {key: np.array(fit[key][:1], np.float32) for key in ("expr", "jaw_pose", "eyes_pose", "neck_pose")}
    params["jaw_pose"][0, 0] += 0.35
    size = 192
    _, _, frames = _render(client, avatar_id, params=params, camera_preset="portrait", size=[size, size])
    rgb = decode_png(frames[0]["frame"]["data"])[..., :3].astype(float) / 255.0

    model = load_head_model().with_static_offset(np.array(rig["static_offset"]))
    hp = HeadParams.zeros(model, 1)
    hp.shape = torch.as_tensor(np.array(rig["shape"]), dtype=torch.float32)[None]
    for key, value in params.items():
        setattr(hp, key, torch.as_tensor(value))
    with torch.no_grad():
        vertices = model(hp).vertices[0].numpy()
    camera = Camera.from_wire(avatar["metadata"]["portrait_camera"]).reframed(size, size)
    surface = render_surface(vertices, model.faces.numpy(), [camera])[0]
    region = np.where(surface.mask, model.face_region.numpy()[np.maximum(surface.face_ids, 0)], -1)
    names = model.region_names
    cavity = ndimage.binary_erosion(region == names.index("mouth_interior"), iterations=1)
    opening = (region == names.index("mouth_interior")) | (region == names.index("teeth"))
    near = ndimage.binary_dilation(opening, iterations=4)
    lips = near & (region == names.index("face")) & ~ndimage.binary_dilation(opening, iterations=1)
    skin = (region == names.index("face")) & ~ndimage.binary_dilation(opening, iterations=12)
    assert cavity.sum() >= 10 and lips.sum() >= 10 and skin.sum() >= 100

    def luma(x):
        return x @ np.array([0.299, 0.587, 0.114])

    cavity_rgb, lips_rgb, skin_rgb = (np.median(rgb[m], axis=0) for m in (cavity, lips, skin))
    # the cavity's floor is the tongue (lip-coloured in half shadow), so "dark" is relative
    assert luma(cavity_rgb) < 0.75 * luma(lips_rgb), (cavity_rgb, lips_rgb)
    assert luma(cavity_rgb) < 0.75 * luma(skin_rgb), (cavity_rgb, skin_rgb)
    assert np.abs(cavity_rgb - skin_rgb).max() > 0.15
    # the whole opening (cavity and teeth together) is not a bright block either
    assert luma(np.median(rgb[opening], axis=0)) < luma(skin_rgb)

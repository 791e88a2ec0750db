"""avatar.create from a clip (issue 12): frame selection, the held-out split, per-frame
parameter refinement, and clips with gaps, no face or a single frame through a real server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compute_server.face.clip_crops import axis_aligned_crop, sharpness
from compute_server.head.model import HeadParams, load_head_model
from compute_server.training.init import InitSettings, initialize_splats
from compute_server.training.optimize import OptimizeSettings, optimize_splats
from compute_server.splats.render_avatar import render_avatar
from compute_server.splats.strategy import BindingDensifyStrategy
from compute_server.camera_torch import stack_cameras
from compute_server.tracking.frame_selection import FrameQuality, holdout_stop, select_frames
from compute_server.views.records import TrainingView
from compute_server.views.sampling import head_centre
from shared.camera import orbit_camera
from shared.client import Client, JobFailed
from tests.server_harness import inprocess_server

D0 = Path(__file__).resolve().parents[2] / "shared" / "data" / "driving" / "liveportrait_d0.mp4"
needs_clip = pytest.mark.skipif(not D0.is_file(), reason="needs ../shared/data/driving/liveportrait_d0.mp4")
TINY = {"iterations": 12, "image_size": 64, "train_frames": 6}


# -- frame selection and the split (pure) --------------------------------------------------

def _quality(n=100):
    found = np.ones(n, bool)
    error = np.full(n, 2.0)
    face = np.full(n, 300.0)
    return found, error, face


def test_selection_drops_bad_frames_and_spreads_the_cap_over_the_clip():
    found, error, face = _quality()
    found[10:40] = False            # a long stretch without a face
    error[50] = 40.0                # tracking lost
    face[60] = 90.0                 # the actor leaned far back
    sel = select_frames(FrameQuality(found, error, face), cap=20)
    picked = np.concatenate(sel.bins)
    assert not set(range(10, 40)) & set(picked.tolist())
    assert 50 not in picked and 60 not in picked
    assert sel.dropped == {"no_face": 30, "small_face": 1, "tracking_error": 1}
    assert len(sel.bins) == 20 and all(b.size for b in sel.bins)
    # 20 runs of the 68 usable frames: they cover the clip from start to end
    assert picked.min() < 5 and picked.max() >= 95
    assert sel.usable.sum() == 68


def test_selection_keeps_every_frame_under_the_cap_and_refuses_nothing_found():
    found, error, face = _quality(30)
    sel = select_frames(FrameQuality(found, error, face), cap=150)
    assert [b.tolist() for b in sel.bins] == [[i] for i in range(30)]
    sel = select_frames(FrameQuality(np.zeros(30, bool), error, face), cap=10)
    assert sel.bins == [] and sel.dropped["no_face"] == 30


def test_holdout_trains_on_the_first_part_and_tests_on_the_rest():
    assert holdout_stop(100, 0.2) == 80
    assert holdout_stop(100, 0.0) == 100
    assert holdout_stop(2, 0.2) == 1 and holdout_stop(1, 0.5) == 1
    found, error, face = _quality(100)
    sel = select_frames(FrameQuality(found, error, face), cap=200, holdout=0.2)
    assert sel.train_stop == 80 and np.concatenate(sel.bins).max() == 79
    with pytest.raises(ValueError):
        holdout_stop(10, 1.0)


def test_crops_keep_the_frame_axes_and_blur_lowers_sharpness():
    rng = np.random.default_rng(0)
    points = np.zeros((478, 3))
    points[:, :2] = rng.normal([300.0, 200.0], 40.0, (478, 2))
    m = axis_aligned_crop(points, 128)
    assert m[0, 1] == 0 and m[1, 0] == 0 and m[0, 0] == m[1, 1] > 0
    sharp = rng.random((64, 64))
    blurred = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, 1, (0, 1))) / 4
    assert sharpness(blurred) < 0.5 * sharpness(sharp)


# -- per-frame parameter refinement (synthetic) --------------------------------------------

def test_a_frames_tracked_expression_moves_toward_the_image_during_training():
    """A frame tracked with the wrong expression: training with the Gaussians frozen pulls
    its expression toward the one the image shows (GAF's per-frame refinement at 1e-3)."""
    head = load_head_model()
    zeros = {k: v[0].numpy() for k, v in HeadParams.zeros(head, 1).__dict__.items()}
    with torch.no_grad():
        neutral = head(HeadParams.zeros(head, 1)).vertices[0]
        moved = [float((head(HeadParams(**{**HeadParams.zeros(head, 1).__dict__,
                                            "expr": torch.eye(head.n_expr)[k:k + 1]})).vertices[0] - neutral)
                       .norm(dim=1).max()) for k in range(head.n_expr)]
    k = int(np.argmax(moved))
    truth = {**zeros, "expr": zeros["expr"].copy()}
    truth["expr"][k] = 0.8
    with torch.no_grad():
        vertices = head(HeadParams.from_numpy({n: v[None] for n, v in truth.items()})).vertices[0]
    verts_np = vertices.numpy().astype(np.float64)
    faces = head.faces
    colors = np.clip(0.5 + 3.0 * (verts_np - verts_np.mean(0)) * np.array([1.0, -0.7, 0.5]), 0, 1)
    model = initialize_splats(verts_np, faces.numpy(), head.face_region.numpy(), head.region_names, colors,
                              InitSettings(count=0, sh_degree=0), np.random.default_rng(0))
    camera = orbit_camera(0, 0, 0.55, target=head_centre(verts_np), width=48, height=48, fov_y_deg=25)
    viewmats, Ks = stack_cameras([camera])
    with torch.no_grad():
        out = render_avatar(model, vertices, faces, viewmats, Ks, 48, 48, background=torch.zeros(3))
    tracked = {**truth, "expr": truth["expr"].copy()}
    tracked["expr"][k] = 0.3
    view = TrainingView(image=out.rgb[0].numpy(), mask=out.alpha[0].numpy().clip(0, 1), camera=camera,
                        head_params=tracked, kind="input", name="frame 0")
    frozen = OptimizeSettings(iterations=12, lr_means=1e-12, lr_means_final=1e-12, lr_scales=0.0, lr_quats=0.0,
                              lr_sh0=0.0, lr_shN=0.0, lr_opacities=0.0, random_background=False, normal_weight=0.0,
                              pos_weight=0.0, scale_weight=0.0, preview_every=0, refine_pose=True,
                              densify=BindingDensifyStrategy(refine_start=10**6, refine_stop=0))
    result = optimize_splats(model, head, [view], frozen)
    after = result.head_params[0]
    assert abs(after["expr"][k] - 0.8) < abs(0.3 - 0.8) - 0.004  # moved toward the image
    assert after["expr"][k] - 0.3 < 0.05                          # at GAF's small learning rate (1e-3 a step)
    assert set(after) >= {"rotation", "translation"}
    assert np.abs(after["translation"]).max() < 1e-4              # 1e-6 per step: pose barely moves


def test_the_progress_preview_shows_a_held_out_frame_beside_its_render():
    """With a preview view (a held-out clip frame), each progress preview is that frame's real
    image on the left and the avatar's render of it on the right, at the view's own camera."""
    import io

    from PIL import Image

    head = load_head_model()
    zeros = {k: v[0].numpy() for k, v in HeadParams.zeros(head, 1).__dict__.items()}
    with torch.no_grad():
        vertices = head(HeadParams.zeros(head, 1)).vertices[0]
    verts_np = vertices.numpy().astype(np.float64)
    model = initialize_splats(verts_np, head.faces.numpy(), head.face_region.numpy(), head.region_names,
                              np.full_like(verts_np, 0.6), InitSettings(count=0, sh_degree=0),
                              np.random.default_rng(0))
    camera = orbit_camera(0, 0, 0.55, target=head_centre(verts_np), width=40, height=40, fov_y_deg=25)
    rng = np.random.default_rng(1)
    train = TrainingView(image=np.full((40, 40, 3), 0.5, np.float32), mask=np.ones((40, 40), np.float32),
                         camera=camera, head_params=zeros, kind="input", name="frame 0")
    heldout = TrainingView(image=rng.random((40, 40, 3)).astype(np.float32), mask=np.ones((40, 40), np.float32),
                           camera=camera, head_params=zeros, kind="input", name="frame 9 (held out)")
    previews = []
    settings = OptimizeSettings(iterations=1, preview_every=1, preview_size=40, normal_weight=0.0,
                                densify=BindingDensifyStrategy(refine_start=10**6, refine_stop=0))
    optimize_splats(model, head, [train], settings, preview_view=heldout,
                    progress=lambda f, m, png: previews.append(png) if png else None)
    assert previews
    shown = np.asarray(Image.open(io.BytesIO(previews[0])).convert("RGBA"), np.float32) / 255
    assert shown.shape == (40, 80, 4)
    np.testing.assert_allclose(shown[:, :40, :3], heldout.image, atol=1 / 255 + 1e-6)   # the real frame, left
    assert shown[:, 40:, 3].max() > 0.5 and np.abs(shown[:, 40:, :3] - heldout.image).mean() > 0.1  # the render


# -- through a real server -----------------------------------------------------------------

@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with inprocess_server(tmp_path_factory.mktemp("video_avatar")) as srv:
        with Client(srv.endpoint, timeout_s=30) as c:
            yield c


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> bytes:
    from tests.test_face_video import write_video

    write_video(path, frames, fps=fps)
    return path.read_bytes()


def _d0_frames(count: int, side: int = 192) -> list[np.ndarray]:
    from compute_server.face.video import iter_video_frames

    return [f.image for f in iter_video_frames(str(D0), max_frames=count, max_side=side)]


@needs_clip
@pytest.mark.slow
def test_a_clip_with_long_stretches_without_a_face_warns_and_the_rest_makes_a_whole_avatar(client, tmp_path,
                                                                                          monkeypatch):
    """A clip with 0.9 s of wall: a warning names the gap and the rest is used. The avatar it
    makes is a clip avatar in full: the scalp fitted to the lead frame's outline in its rig,
    and (the bar of 20 frames lowered for this short clip) an expression colour that
    render.frames applies per frame: an animated PLY frame's f_dc is sh_dc + term . code."""
    from compute_server.pipeline import video_avatar
    from compute_server.splats.ply import read_ply_columns
    from shared.splat_format import expression_code

    monkeypatch.setattr(video_avatar, "EXPRESSION_COLOUR_MIN_VIEWS", 5)
    frames = _d0_frames(40)
    for i in range(8, 30):                       # 22 frames (0.9 s) of wall
        frames[i] = np.full_like(frames[i], 127)
    data = _write_video(tmp_path / "gaps.mp4", frames)
    events = []
    job = client.submit("avatar.create", {"video": {"name": "gaps.mp4", "data": data}, "preset": "draft",
                                          "options": dict(TINY)})
    result = client.wait_job(job, on_progress=events.append, timeout_s=300)
    assert any("no face for long stretches" in w and "gaps.mp4" in w for w in result["warnings"]), (result["warnings"], result["clip"])
    used = result["clip"]["train_frame_indices"]
    assert result["train_frames"] == len(used) == 6 and not set(used) & set(range(8, 30))
    assert result["clip"]["skipped"]["no_face"] == 22
    stages = [e.get("stage") for e in events]
    assert "track" in stages and "optimize" in stages
    assert any(e.get("train_frames") == 6 for e in events)
    avatar = client.get_avatar(result["avatar"], include=["rig.npz", "splats.npz", "expression_colour.npz"])
    metadata = avatar["metadata"]
    assert metadata["clip"]["train_frames"] == 6 and len(metadata["sources"]) == 6
    # the scalp fitted to the lead frame's outline, as for a photo: in the rig's rest
    # surface, the face where tracking put it
    from compute_server.head.model import load_head_model

    rig = avatar["arrays"]["rig"]
    base = load_head_model().rig_export(np.array(rig["shape"]))
    offset = np.array(rig["static_offset"])
    np.testing.assert_allclose(np.array(rig["rest_vertices"]) - offset, base["rest_vertices"], atol=1e-6)
    face = np.unique(base["faces"][base["face_region"] == base["region_names"].index("face")])
    assert np.abs(offset).max() > 1e-3 and not offset[face].any()
    # the expression colour: its own file (the add-on does not fetch it), used by renders
    n_expr = metadata["head_model"]["n_expr"]
    splats = {k: np.array(v) for k, v in avatar["arrays"]["splats"].items()}
    assert "expression_colour" not in splats
    term = np.array(avatar["arrays"]["expression_colour"]["expression_colour"])
    assert term.shape == (result["splats"], n_expr + 3, 3) and np.abs(term).max() > 0
    expr = np.zeros((2, n_expr), np.float32)
    expr[1] = 0.5
    jaw = np.zeros((2, 3), np.float32)
    jaw[1, 0] = 0.3
    shown = {}
    render = client.submit("render.frames", {"avatar": result["avatar"], "params": {"expr": expr, "jaw_pose": jaw},
                                             "format": "ply", "camera_preset": "portrait"})
    client.wait_job(render, on_progress=lambda e: shown.__setitem__(e["frame_index"], e) if e.get("frame") else None,
                    timeout_s=120)
    for i in range(2):
        columns = read_ply_columns(bytes(shown[i]["frame"]["data"]))
        f_dc = np.stack([columns[f"f_dc_{c}"] for c in range(3)], 1)
        expected = splats["sh_dc"] + np.einsum("nck,c->nk", term, expression_code(expr[i], jaw[i]))
        np.testing.assert_allclose(f_dc, expected, atol=1e-5)
    assert not np.allclose(f_dc, splats["sh_dc"], atol=1e-4)     # the open, smiling frame is coloured apart


@needs_clip
@pytest.mark.slow
def test_a_single_frame_clip_becomes_an_avatar_with_a_warning(client, tmp_path):
    data = _write_video(tmp_path / "one.mp4", _d0_frames(1))
    job = client.submit("avatar.create", {"video": {"name": "one.mp4", "data": data}, "preset": "draft",
                                          "options": {**TINY, "holdout": 0.2}})
    result = client.wait_job(job, timeout_s=300)
    assert result["train_frames"] == 1 and any("single frame" in w for w in result["warnings"])


def test_a_clip_without_any_face_fails_with_no_face(client, tmp_path):
    grey = [np.full((96, 128, 3), v, np.uint8) for v in range(60, 72)]
    data = _write_video(tmp_path / "wall.mp4", grey)
    job = client.submit("avatar.create", {"video": {"name": "wall.mp4", "data": data}, "preset": "draft",
                                          "options": dict(TINY)})
    with pytest.raises(JobFailed) as info:
        client.wait_job(job, timeout_s=120)
    assert info.value.code == "no_face" and "wall.mp4" in info.value.message


@needs_clip
@pytest.mark.slow
def test_a_long_clip_is_cut_down_with_a_warning(client, tmp_path, monkeypatch):
    from compute_server.pipeline import video_avatar

    monkeypatch.setattr(video_avatar, "MAX_TRACKED_FRAMES", 10)
    data = _write_video(tmp_path / "long.mp4", _d0_frames(16))
    job = client.submit("avatar.create", {"video": {"name": "long.mp4", "data": data}, "preset": "draft",
                                          "options": dict(TINY)})
    result = client.wait_job(job, timeout_s=300)
    assert result["clip"]["frames"] == 10
    assert any("only the first 10" in w for w in result["warnings"])


def test_holdout_is_checked_at_submission(client):
    from shared.client import ServerError

    with pytest.raises(ServerError) as info:
        client.submit("avatar.create", {"video": {"name": "x.mp4", "data": b"\x00" * 64},
                                        "options": {"holdout": 1.5}})
    assert info.value.code == "bad_request" and "holdout" in info.value.message


# -- several photos of one person go through the same path ---------------------------------

@needs_clip
@pytest.mark.slow
def test_several_photos_become_the_frames_of_one_avatar(client):
    """Three photos of one person: the first leads (the avatar's main photo and reference
    pose), every photo is a trained view with its own refined parameters, and no clip is
    reported."""
    import io

    from PIL import Image

    frames = _d0_frames(30, side=256)
    photos = []
    for index in (29, 12, 0):
        buf = io.BytesIO()
        Image.fromarray(frames[index]).save(buf, "PNG")
        photos.append({"name": f"d0_{index}.png", "data": buf.getvalue()})
    job = client.submit("avatar.create", {"images": photos, "preset": "draft",
                                          "options": {"iterations": 12, "image_size": 64}})
    result = client.wait_job(job, timeout_s=600)
    assert "train_frames" not in result and "clip" not in result
    metadata = client.get_avatar(result["avatar"])["metadata"]
    assert metadata["photos"]["count"] == 3
    assert [s["name"] for s in metadata["sources"]] == [p["name"] for p in photos]
    assert metadata["photos"]["main"] == photos[0]["name"]
    # three photos are too few to learn how colour follows the expression
    assert "expression_colour" not in client.get_avatar(result["avatar"])["arrays"]


@needs_clip
@pytest.mark.slow
def test_the_video_path_learns_on_its_frames_and_on_held_out_ones(client, tmp_path):
    """The clip path's training does its job: against the same clip trained for one
    iteration (the Gaussians as initialized from the main frame), training raises the PSNR on
    the training frames and on held-out frames it never saw. If the loss, the backward pass
    or the optimizer broke, both would stay where they started."""
    data = _write_video(tmp_path / "take.mp4", _d0_frames(16, side=160))
    scores = {}
    for iterations in (1, LEARN_ITERATIONS):
        job = client.submit("avatar.create", {"video": {"name": "take.mp4", "data": data}, "preset": "draft",
                                              "options": {**TINY, "iterations": iterations, "holdout": 0.25}})
        result = client.wait_job(job, timeout_s=600)
        scores[iterations] = (result["metrics"]["input_psnr_db"], result["clip"]["heldout"]["psnr_db"])
    (train_0, held_0), (train_n, held_n) = scores[1], scores[LEARN_ITERATIONS]
    print(f"training frames {train_0:.2f} -> {train_n:.2f} dB, held-out frames {held_0:.2f} -> {held_n:.2f} dB")
    assert train_n - train_0 > MIN_VIDEO_TRAIN_GAIN_DB
    assert held_n - held_0 > MIN_VIDEO_HELDOUT_GAIN_DB


# Measured (d0's first 16 frames at 160 px, 6 training and 4 held-out frames at 64 px, the
# draft recipe, 60 iterations against 1, 2026-12-07): training frames 21.00 -> 22.51 dB
# (+1.51), held-out frames 21.00 -> 22.35 dB (+1.35); the run is seeded and repeats. The
# margins are half of that.
LEARN_ITERATIONS = 60
MIN_VIDEO_TRAIN_GAIN_DB = 0.75
MIN_VIDEO_HELDOUT_GAIN_DB = 0.65

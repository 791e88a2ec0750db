"""Scoring and tables of the ground-truth benchmark (bench/quality.py) on synthetic views:
no avatar is made, no Blender runs."""

from __future__ import annotations

import numpy as np
import pytest

from bench.quality import ViewScore, below_neck_cut, score_view, summarize
from bench.quality_avatars import RenderedView
from bench.quality_cameras import Similarity
from shared.camera import Camera, look_at

SIZE = 32


def front_camera() -> Camera:
    """Looks at the origin from +Z, 2 units away, 'up' = +Y."""
    return Camera(look_at((0.0, 0.0, 2.0), (0.0, 0.0, 0.0)), 40.0, 40.0, SIZE / 2, SIZE / 2, SIZE, SIZE)


def flat_scene(colour=(204 / 255, 128 / 255, 102 / 255)):
    """A square card facing the camera at depth 2, covering rows/cols 8..24."""
    rgba = np.zeros((SIZE, SIZE, 4), np.float32)
    rgba[8:24, 8:24] = (*colour, 1.0)
    depth = np.where(rgba[..., 3] > 0.5, 2.0, 0.0)
    return rgba, depth


def test_below_neck_cut_marks_rows_under_the_mapped_plane():
    rgba, depth = flat_scene()
    identity = Similarity.identity()
    below = below_neck_cut(depth, front_camera(), 0.0, identity, margin_px=0)
    assert below[16:24, 8:24].all() and not below[:16].any() and not below[:, :8].any()
    # scan units -> avatar units: the plane y = 0.1 (scan) is y = 0.2 (avatar) under scale 2
    scaled = below_neck_cut(depth, front_camera(), 0.1, Similarity(2.0, np.eye(3), np.zeros(3)), margin_px=0)
    rows = np.flatnonzero(scaled.any(axis=1))
    assert rows[0] == 12  # y = 0.2 at depth 2 with f = 40 is v = 16 - 0.2 / 2 * 40 = 12: centre 12.5 is below
    grown = below_neck_cut(depth, front_camera(), 0.0, identity, margin_px=2)
    # the margin grows only into pixels without depth (the soft fringe), never over the surface above
    assert grown[24:26, 8:24].all() and grown[16:24, 6:26].all() and not grown[:16, 8:24].any()


def test_score_view_is_perfect_for_identical_images_and_counts_missing_silhouette():
    rgba, depth = flat_scene()
    gt = (rgba * 255).round().astype(np.uint8)
    cut_below_everything = -10.0
    score, gt_image, avatar_image = score_view(gt, RenderedView(rgba, depth), front_camera(),
                                               Similarity.identity(), cut_below_everything, None, 30.0, 20.0, "x")
    assert (score.yaw_deg, score.pitch_deg, score.mapping, score.lpips) == (30.0, 20.0, "x", None)
    assert score.psnr_db > 100.0 and score.ssim == pytest.approx(1.0, abs=1e-5)
    assert score.psnr_interior_db > 100.0 and score.silhouette_iou == 1.0
    np.testing.assert_allclose(avatar_image, gt_image, atol=1e-6)
    # half of the card missing in the avatar: those pixels count as errors (white vs clay)
    half = rgba.copy()
    half[16:] = 0.0
    half_score, *_ = score_view(gt, RenderedView(half, np.where(half[..., 3] > 0.5, 2.0, 0.0)),
                                front_camera(), Similarity.identity(), cut_below_everything, None)
    assert half_score.psnr_db < 10.0 and half_score.ssim < 0.9
    assert half_score.silhouette_iou == pytest.approx(0.5) and half_score.psnr_interior_db > 100.0
    # avatar geometry below the ground truth's cut is neither scored nor shown
    cut_at_zero = 0.0
    gt_top = gt.copy()
    gt_top[16:] = 0
    cut_score, _, avatar_cut = score_view(gt_top, RenderedView(rgba, depth), front_camera(),
                                          Similarity.identity(), cut_at_zero, None)
    assert cut_score.psnr_db > 30.0 and cut_score.silhouette_iou == 1.0 and np.allclose(avatar_cut[20], 1.0)


def test_summary_rows_per_bucket_and_pitch():
    scores = [ViewScore(y, p, m, 20.0 - abs(y) / 10, 0.9 - abs(y) / 1000, None, 30.0, 0.9)
              for m in ("aligned", "camera") for p in (0.0, 20.0) for y in (0, -15, 15, -90, 90)]
    rows = summarize(scores, "aligned")
    assert [(r["bucket"], r["pitch"], r["views"]) for r in rows] == [
        ("0", "+0", 1), ("15-30", "+0", 2), ("75-90", "+0", 2), ("0", "+20", 1), ("15-30", "+20", 2),
        ("75-90", "+20", 2), ("all novel", "all", 9)]
    assert rows[2]["psnr_db"] == pytest.approx(11.0) and rows[0]["lpips"] is None
    assert rows[2]["silhouette_iou"] == pytest.approx(0.9)
    expected = np.mean([20.0 - abs(y) / 10 for y in (-15, 15, -90, 90)] * 2 + [20.0])
    assert rows[-1]["psnr_db"] == pytest.approx(expected)

"""Foreground image metrics of the quality benchmarks (bench/metrics.py) on known images."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.metrics import (composite, evaluation_mask, interior_mask, load_lpips, mask_bbox, masked_psnr, masked_ssim,
                           silhouette_iou)


def test_psnr_on_the_mask_only():
    rng = np.random.default_rng(0)
    reference = rng.random((32, 40, 3))
    image = reference.copy()
    mask = np.zeros((32, 40), bool)
    mask[8:24, 10:30] = True
    image[mask] += 0.1                      # error 0.1 everywhere on the mask
    image[~mask] = 1.0 - reference[~mask]   # large errors off the mask must not count
    assert masked_psnr(image, reference, mask) == pytest.approx(20.0, abs=1e-9)  # -10 log10(0.01)
    assert masked_psnr(reference, reference, mask) == math.inf
    assert math.isnan(masked_psnr(image, reference, np.zeros_like(mask)))


def test_ssim_is_one_for_identical_and_drops_with_noise_on_the_mask():
    rng = np.random.default_rng(1)
    reference = np.clip(rng.random((48, 48, 3)) * 0.5 + 0.25, 0, 1)
    mask = np.zeros((48, 48), bool)
    mask[12:36, 12:36] = True
    assert masked_ssim(reference, reference, mask) == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(reference + rng.normal(scale=0.2, size=reference.shape), 0, 1)
    away = reference.copy()
    away[:4] = noisy[:4]  # noise far from the mask leaves the masked SSIM untouched
    assert masked_ssim(noisy, reference, mask) < 0.7
    assert masked_ssim(away, reference, mask) == pytest.approx(1.0, abs=1e-5)


def test_composite_and_evaluation_mask():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]
    rgba[0, 1] = [0, 0, 255, 128]
    out = composite(rgba, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(out[0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[0, 1], [1 - 128 / 255, 1 - 128 / 255, 1.0])
    np.testing.assert_allclose(out[1, 1], [1, 1, 1])
    gt_alpha = np.array([[1.0, 0.0], [0.0, 0.0]])
    render_alpha = np.array([[0.0, 0.9], [0.8, 0.2]])
    assert evaluation_mask(gt_alpha, render_alpha).tolist() == [[True, True], [True, False]]


def test_interior_mask_and_silhouette_iou():
    gt_alpha = np.zeros((20, 20))
    gt_alpha[2:12, 2:12] = 1.0            # 100 pixels
    render_alpha = np.zeros((20, 20))
    render_alpha[2:12, 7:17] = 0.9        # 100 pixels, 50 shared
    assert silhouette_iou(gt_alpha, render_alpha) == pytest.approx(50 / 150)
    assert silhouette_iou(gt_alpha, gt_alpha) == 1.0
    assert math.isnan(silhouette_iou(np.zeros((4, 4)), np.zeros((4, 4))))
    inner = interior_mask(gt_alpha, render_alpha, erode_px=2)
    assert inner.sum() == (10 - 4) * (5 - 4)  # the 10 x 5 overlap minus a 2-pixel border
    assert interior_mask(gt_alpha, render_alpha, erode_px=0).sum() == 50


def test_mask_bbox():
    mask = np.zeros((50, 60), bool)
    mask[10:20, 30:35] = True
    rows, cols = mask_bbox(mask, margin=3)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (7, 23, 27, 38)
    rows, cols = mask_bbox(mask, margin=40)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 50, 0, 60)


def test_lpips_reports_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)   # import machinery: "not importable"
    status = load_lpips()
    assert status.fn is None and status.reason == "the lpips package is not installed"


def _fake_lpips_package(root: Path) -> Path:
    """An importable ``lpips`` package without its weights (what a bare install of the
    package looks like before its linear layers are on disk)."""
    package = root / "lpips"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    return package


def test_lpips_names_each_missing_weight_file_and_downloads_nothing(tmp_path, monkeypatch):
    package = _fake_lpips_package(tmp_path / "site")
    hub = tmp_path / "hub"
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    linear = package / "weights" / "v0.1" / "alex.pth"
    backbone = hub / "checkpoints" / "alexnet-owt-7be5be79.pth"

    status = load_lpips()
    assert status.fn is None
    assert status.reason == f"LPIPS weights not on this machine: {linear}, {backbone}"
    assert not hub.exists() and not linear.parent.exists()      # nothing fetched

    linear.parent.mkdir(parents=True)
    linear.write_bytes(b"")                                     # an empty file is not a weight file
    assert load_lpips().reason == f"LPIPS weights not on this machine: {linear}, {backbone}"
    linear.write_bytes(b"weights")
    assert load_lpips().reason == f"LPIPS weights not on this machine: {backbone}"


@pytest.mark.skipif(load_lpips().fn is None, reason="lpips or its weights are not on this machine")
def test_lpips_scores_real_images_when_its_weights_are_present():
    """With the real package and weights: 0 for identical images, more for a blur, more
    still for the negative, and only the mask's bounding box counts."""
    import skimage.data
    from scipy import ndimage

    status = load_lpips()
    image = skimage.data.astronaut()[:128, 192:320].astype(np.float64) / 255.0
    mask = np.ones((128, 128), bool)
    blurred = ndimage.gaussian_filter(image, sigma=(2, 2, 0))
    same, blur, negative = (status.fn(x, image, mask) for x in (image, blurred, 1 - image))
    assert same == pytest.approx(0.0, abs=1e-4)
    assert 0.02 < blur < negative
    corner = np.zeros_like(mask)
    corner[:16, :16] = True
    far_change = image.copy()
    far_change[64:] = 1 - image[64:]                            # outside the corner's box (+ 8 px margin)
    assert status.fn(far_change, image, corner) == pytest.approx(0.0, abs=1e-4)

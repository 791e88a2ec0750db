"""The back-view benchmark's measure: texture energy and the score it reports."""

from __future__ import annotations

import numpy as np

from bench.back_views import score, texture_energy


def test_texture_energy_is_the_local_standard_deviation_inside_the_mask():
    rng = np.random.default_rng(0)
    flat = np.full((40, 40), 0.5)
    noisy = rng.uniform(0, 1, (40, 40))
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    assert texture_energy(flat, mask) == 0.0
    assert abs(texture_energy(noisy, mask) - np.sqrt(1 / 12)) < 0.03      # uniform noise: std 0.289
    # windows that reach outside the mask do not count: an edge just outside it adds nothing
    edged = flat.copy()
    edged[:, :4] = 0.0
    assert texture_energy(edged, mask) == 0.0
    assert np.isnan(texture_energy(noisy, np.zeros((40, 40), bool)))


def test_a_smooth_back_scores_low_and_a_copied_texture_high():
    rng = np.random.default_rng(1)
    hair = np.repeat(rng.uniform(0.1, 0.4, (64, 64, 1)), 3, axis=2)
    mask = np.ones((64, 64), bool)
    smooth = [(np.full((64, 64, 3), 0.25), mask)]
    copied = [(hair[::-1].copy(), mask)]
    skin = [(np.full((64, 64, 3), 0.8), mask)]
    assert score("p", hair, mask, smooth).energy_ratio < 0.05
    assert 0.9 < score("p", hair, mask, copied).energy_ratio < 1.1
    assert score("p", hair, mask, copied).colour_distance < 0.01
    assert score("p", hair, mask, skin).colour_distance > 0.8

"""The scaling study's fits, plot and measurement plumbing (bench/scaling.py), small."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest
import torch

from bench import scaling


def test_power_law_and_line_fits_recover_known_curves():
    x = np.array([5e3, 1e4, 2e4, 5e4, 1e5])
    c, k = scaling.fit_power_law(x, 3e-6 * x ** 0.8)
    assert k == pytest.approx(0.8, abs=1e-9) and c == pytest.approx(3e-6, rel=1e-9)
    a, b = scaling.fit_line([1, 2, 4, 8, 16, 32], [0.2 + 0.05 * n for n in (1, 2, 4, 8, 16, 32)])
    assert a == pytest.approx(0.2, abs=1e-12) and b == pytest.approx(0.05, abs=1e-12)
    assert scaling.Series("s", "x", [128, 256], [0.01, 0.04]).exponent() == pytest.approx(2.0)
    assert math.isnan(scaling.Series("s", "x", [128], [0.01]).exponent())


def test_missing_matplotlib_is_a_clear_message(monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(SystemExit, match="pip install -c constraints.txt matplotlib"):
        scaling.require_matplotlib()


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    series = [scaling.Series("iteration", "Gaussians", [5000, 20000], [0.1, 0.3]),
              scaling.Series("render", "Gaussians", [5000, 20000], [0.05, 0.08])]
    path = scaling.plot({"cost vs Gaussian count": series}, ([1, 4], [0.2, 0.5]), "test", tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plans_grow_with_the_device():
    cpu, quick = scaling.plan(torch.device("cpu"), False), scaling.plan(torch.device("cpu"), True)
    assert max(cpu["counts"]) == 100_000 and max(cpu["sizes"]) == 512
    assert len(quick["counts"]) == 2 and all(len(v) <= 2 for v in quick.values() if isinstance(v, list))
    cuda = scaling.plan(torch.device("cuda"), False)
    assert max(cuda["counts"]) == 400_000 and (1920, 1080) in cuda["render_sizes"]


def test_one_iteration_and_one_render_are_measured_on_the_head():
    device = torch.device("cpu")
    scene = scaling.load_scene(device)
    seconds = scaling.seconds_per_iteration(scene, 300, 32, device, iterations=12)
    assert seconds > 0 and math.isfinite(seconds)
    model = scaling.splats_on_head(scene, 300, device)
    assert model.count >= 300
    render_seconds = scaling.seconds_per_render(scene, model, 32, 24, device, repeats=1)
    assert render_seconds > 0 and math.isfinite(render_seconds)

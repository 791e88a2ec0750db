"""bench/render.py: the clip poses every frame, and a tiny run prints the table through a
real server."""

from __future__ import annotations

import numpy as np

from bench.render import jaw_clip, main


def test_jaw_clip_moves_the_jaw_on_every_inner_frame():
    clip = jaw_clip(5, n_expr=7)
    assert clip["expr"].shape == (5, 7) and clip["eyes_pose"].shape == (5, 6)
    assert len(np.unique(clip["jaw_pose"][:, 0])) >= 3 and clip["jaw_pose"][:, 0].max() > 0.2


def test_a_tiny_run_prints_both_sizes(capsys):
    main(["--iterations", "2", "--image-size", "64", "--repeats", "1", "--frames", "1"])
    out = capsys.readouterr().out
    assert "| 512x512 |" in out and "| 1920x1080 |" in out and "Gaussians" in out

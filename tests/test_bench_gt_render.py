"""The ground-truth renderer (bench/gt_render.py) with real Blender (bpy) on the real scan,
tiny: its silhouettes must be where shared.camera says the cut scan is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("bpy")

from bench.gt_render import GroundTruthSpec, render_ground_truth  # noqa: E402
from bench.quality_align import scan_geometry  # noqa: E402
from bench.quality_cameras import held_out_views  # noqa: E402
from compute_server.render import rasterize_mesh  # noqa: E402

SCAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "heads" / "leeperrysmith" / "LeePerrySmith.glb"

pytestmark = [pytest.mark.blender,
              pytest.mark.skipif(not SCAN.exists(), reason="the shared head scan is not in ../shared/data")]


def test_silhouettes_match_the_camera_convention_and_the_neck_is_cut(tmp_path):
    geometry = scan_geometry(SCAN)
    height = float(geometry.head_vertices[:, 1].max() - geometry.neck_cut_y)
    views = held_out_views(geometry.head_centre, 3.0 * height, yaws_deg=(0, 90), pitches_deg=(-20,), size=48)
    spec = GroundTruthSpec(str(SCAN), geometry.neck_cut_y, [v.camera.to_wire() for v in views], samples=2)
    paths = render_ground_truth(spec, tmp_path, log=lambda *a: None)
    assert [p.name for p in paths] == ["view_000.png", "view_001.png"] and (tmp_path / "manifest.json").exists()
    vertices = torch.as_tensor(geometry.vertices, dtype=torch.float32)
    above = geometry.vertices[:, 1] >= geometry.neck_cut_y
    straddling_or_above = geometry.faces[above[geometry.faces].any(axis=1)]
    for view, path in zip(views, paths):
        rgba = np.asarray(Image.open(path))
        assert rgba.shape == (48, 48, 4)
        rendered = rgba[..., 3] > 127
        cam = view.camera
        viewmats = torch.as_tensor(cam.world_to_camera, dtype=torch.float32)[None]
        Ks = torch.as_tensor(cam.K, dtype=torch.float32)[None]

        def coverage(faces: np.ndarray) -> np.ndarray:
            return rasterize_mesh(vertices, torch.as_tensor(faces), viewmats, Ks, 48, 48).mask[0].numpy() > 0.5

        head, upper, whole = coverage(geometry.head_faces), coverage(straddling_or_above), coverage(geometry.faces)
        iou = (rendered & head).sum() / (rendered | head).sum()
        assert iou > 0.9, f"{path.name}: silhouette IoU {iou:.3f} with the projected head"
        assert (rendered & ~upper).sum() <= 0.03 * rendered.sum()  # nothing beyond the faces the cut keeps
        shoulders = whole & ~upper
        assert shoulders.sum() > 20  # the shoulders would be in the frame...
        assert (rendered & shoulders).sum() <= 0.03 * shoulders.sum()  # ...but were cut away
        colours = rgba[rendered][:, :3].astype(float)
        assert colours[:, 0].mean() > colours[:, 2].mean()  # lit skin-tone clay, not black or grey

"""Spherical harmonics, projection and splat normals against gsplat's pure-torch code and geometry."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from compute_server.errors import UserError
from compute_server.splats import raster_gsplat
from compute_server.splats.normals import (camera_centers_from_viewmats, normalize_rendered_normals,
                                           normals_to_camera, orient_towards, splat_normals_world)
from compute_server.splats.raster_torch import project_splats, quat_to_rotmat
from compute_server.splats.rasterize import rasterize_splats
from compute_server.splats.sh import SH_C0, colors_for_cameras, eval_sh, rgb_to_sh_dc
from tests.test_splat_raster import F64, make_cameras, random_scene


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_eval_sh_matches_gsplat_torch_impl(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(200, 3, generator=g, dtype=F64) * 3.0  # not unit: both normalize
    coeffs = torch.randn(200, 16, 3, generator=g, dtype=F64)
    torch.testing.assert_close(eval_sh(degree, coeffs, dirs), _spherical_harmonics(degree, dirs, coeffs),
                               atol=1e-12, rtol=1e-12)


def test_sh_dc_round_trip_and_view_dependence():
    rgb = torch.tensor([[0.1, 0.5, 0.9]], dtype=F64)
    coeffs = torch.zeros(1, 4, 3, dtype=F64)
    coeffs[:, 0] = rgb_to_sh_dc(rgb)
    assert math.isclose(float(coeffs[0, 0, 0]), (0.1 - 0.5) / SH_C0)
    viewmats, _ = make_cameras(2, 8, 8)
    means = torch.zeros(1, 3, dtype=F64)
    torch.testing.assert_close(colors_for_cameras(coeffs, means, viewmats, 1), rgb.expand(2, 1, 3))
    coeffs[0, 3] = 1.0  # the -x band: different colour from different sides
    views = colors_for_cameras(coeffs, means, viewmats, 1)
    assert not torch.allclose(views[0], views[1])
    assert (colors_for_cameras(-10 * coeffs, means, viewmats, 1) >= 0).all()  # clamped at 0 like gsplat


def test_projection_matches_gsplat_torch_impl():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci
    scene = random_scene(200, 3, 64, 48, seed=5)
    ours = project_splats(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                          scene["viewmats"], scene["Ks"], 64, 48, eps2d=0.3)
    covars, _ = _quat_scale_to_covar_preci(scene["quats"], scene["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(scene["means"], covars, scene["viewmats"],
                                                                scene["Ks"], 64, 48, eps2d=0.3)
    both = (ours.radii_xy > 0).all(-1) & (radii > 0).all(-1)
    assert both.sum() > 300
    torch.testing.assert_close(ours.means2d[both], means2d[both], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ours.conics[both], conics[both], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ours.depths, depths)
    # gsplat 1.5's kernels shrink the 3.33-sigma box by opacity: ours is never larger.
    assert (ours.radii_xy[both] <= radii[both]).all()
    assert (ours.radii_xy[both] < radii[both]).any()


def _flat_quat_towards(normal: torch.Tensor) -> torch.Tensor:
    """wxyz quaternion rotating local +z onto ``normal`` (unit, not -z)."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=normal.dtype)
    half = torch.nn.functional.normalize(z + normal, dim=-1)
    return torch.cat([(z * half).sum(-1, keepdim=True), torch.cross(z.expand_as(half), half, dim=-1)], -1)


def test_splat_normals_are_shortest_axis_and_orientation():
    g = torch.Generator().manual_seed(1)
    normals_true = torch.nn.functional.normalize(torch.randn(50, 3, generator=g, dtype=F64), dim=-1)
    quats = _flat_quat_towards(normals_true) * 2.5  # unnormalized on purpose
    scales = torch.tensor([0.03, 0.02, 0.001], dtype=F64).expand(50, 3)
    normals = splat_normals_world(quats, scales)
    torch.testing.assert_close(normals, normals_true, atol=1e-9, rtol=0)
    # The shortest axis may be local x or y as well.
    rot = quat_to_rotmat(quats)
    torch.testing.assert_close(splat_normals_world(quats, scales[:, [2, 0, 1]]), rot[:, :, 0])
    torch.testing.assert_close(splat_normals_world(quats, scales[:, [0, 2, 1]]), rot[:, :, 1])
    means = torch.randn(50, 3, generator=g, dtype=F64)
    centre = torch.tensor([0.0, 0.0, 5.0], dtype=F64)
    facing = orient_towards(-normals, means, centre)
    assert ((facing * (centre - means)).sum(-1) >= 0).all()
    viewmats, _ = make_cameras(3, 8, 8)
    centres = camera_centers_from_viewmats(viewmats)
    torch.testing.assert_close(centres, torch.linalg.inv(viewmats)[:, :3, 3])
    per_cam = orient_towards(normals, means, centres)
    assert per_cam.shape == (3, 50, 3)
    assert ((per_cam * (centres[:, None] - means[None])).sum(-1) >= 0).all()


def test_rendered_normal_channels_of_a_disc_face_the_camera():
    """A disc of flat splats facing the camera renders camera-space normal (0, 0, -1)."""
    viewmats, Ks = make_cameras(1, 24, 24)
    centre = camera_centers_from_viewmats(viewmats)[0]
    to_cam = torch.nn.functional.normalize(centre, dim=-1)
    g = torch.Generator().manual_seed(0)
    tangent = torch.nn.functional.normalize(torch.cross(to_cam, torch.tensor([0.0, 1.0, 0.0], dtype=F64), dim=0), dim=0)
    bitangent = torch.cross(to_cam, tangent, dim=0)
    uv = (torch.rand(400, 2, generator=g, dtype=F64) - 0.5) * 0.8
    means = uv[:, :1] * tangent + uv[:, 1:] * bitangent
    quats = _flat_quat_towards(-to_cam.expand(400, 3))  # wrong way round: orient_towards fixes it
    scales = torch.tensor([0.04, 0.04, 0.002], dtype=F64).expand(400, 3)
    normals = orient_towards(splat_normals_world(quats, scales), means, centre)
    feats = torch.cat([torch.rand(400, 3, generator=g, dtype=F64).expand(1, 400, 3),
                       normals_to_camera(normals, viewmats)], -1)
    bg = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]], dtype=F64)
    out, alpha, _ = rasterize_splats(means, quats, scales, torch.full((400,), 0.8, dtype=F64), feats, viewmats,
                                     Ks, 24, 24, backgrounds=bg)
    rendered, valid = normalize_rendered_normals(out[..., 3:], alpha)
    assert valid.float().mean() > 0.15 and not valid.all()
    torch.testing.assert_close(rendered[valid], torch.tensor([0.0, 0.0, -1.0], dtype=F64).expand(int(valid.sum()), 3),
                               atol=1e-6, rtol=0)
    assert (rendered[~valid] == 0).all()


def test_missing_gsplat_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # import gsplat -> ImportError
    with pytest.raises(UserError) as info:
        raster_gsplat.load_gsplat_rasterization()
    assert info.value.code == "unavailable"  # a documented protocol code
    assert "headsplat[gpu]" in info.value.message and "backend='torch'" in info.value.message

"""Per-point attributes of the splat object (no bpy): what the mesh stores and the
geometry-nodes preview reads.

Two groups of attributes, all on the point domain:

- the 3DGS fields at the rest pose, named and stored like a 3DGS PLY (``f_dc_0..2``,
  ``f_rest_*`` channel-major, ``opacity`` logit, ``scale_0..2`` log, ``rot_0..3`` w,x,y,z)
  in the splat object's space (armature space: ``HEAD_TO_BLENDER`` applied to head
  space), so exporters and other 3DGS tools find what they expect;
- the binding the posing tree needs (``hs_*``): the bound triangle and its three corner
  vertex indices (so the tree samples three positions instead of walking faces), the
  local mean, rotation and log scale from ``splats.npz``, plus a display colour, alpha,
  preview radius (in triangle-local units, see ``preview_radius``) and a level-of-detail
  rank.

The posing maths is ``shared.splat_format.pose_splats`` (GaussianAvatars' triangle
frames); geometry_nodes.py implements the same maths as nodes, and a test compares the
two on the evaluated head mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._shared import camera as camera_mod, rotations, splat_format

# Splats drawn in the viewport when the user has not chosen a density: bigger avatars start
# at a lower level of detail (docs/results.md, Blender add-on, has the frame rates behind it).
DEFAULT_VIEWPORT_SPLATS = 100_000
PREVIEW_ALPHA_CUTOFF = 0.25  # a splat's preview sphere is where its alpha exceeds this

ATTR_FACE = "hs_face"
ATTR_CORNERS = ("hs_v0", "hs_v1", "hs_v2")
ATTR_MEAN_LOCAL = "hs_mean_local"
ATTR_QUAT_LOCAL = "hs_quat_local"
ATTR_LOG_SCALE_LOCAL = "hs_log_scale_local"
ATTR_RADIUS_LOCAL = "hs_radius_local"
ATTR_COLOR = "hs_color"
ATTR_ALPHA = "hs_alpha"
ATTR_LOD = "hs_lod"
# What the true splats' material reads per Gaussian, as instance attributes (EEVEE reads
# at most 8 per material, each up to 4 floats): the display-referred degree-0 colour
# (SH_C0 f_dc + 0.5, unclipped) and the opacity, and the 45 higher SH coefficients
# (head space) packed two to a float (``pack_sh``).
ATTR_RGBA = "hs_rgba"
ATTR_SH_PACKS = tuple(f"hs_sh_pack_{i}" for i in range(7))
SH_LEVELS = 4096  # quantisation levels of a packed coefficient (12 bits: two fit a float32 exactly)
# Each Gaussian's local transform [R S | mean] (R S: local rotation times local scale;
# triangle-local units) as one 4x4 matrix: the true splats pose it with one matrix
# product by the triangle frame [k t, k b, k n | centroid].
ATTR_XFORM_LOCAL = "hs_xform_local"
# 1 / sigma_i^2 of the local scales: the eps2d blur's growth of each posed axis.
ATTR_INV_SIGMA2 = "hs_inv_sigma2"
MAX_INV_SIGMA2 = 1e30  # float32-safe for splats of (near) zero scale
# Written by the posing tree on its output (evaluated geometry only).
ATTR_POSED_ROTATION = "hs_rotation"
ATTR_POSED_SCALE = "hs_scale"

_H = camera_mod.HEAD_TO_BLENDER[:3, :3]


def local_transforms(quats_local: np.ndarray, log_scales_local: np.ndarray, means_local: np.ndarray) -> np.ndarray:
    """(N, 4, 4) float32 [R S | mean]: column i of R S is the local rotation's axis i
    times exp(log scale i)."""
    n = len(quats_local)
    transforms = np.zeros((n, 4, 4), np.float64)
    transforms[:, :3, :3] = rotations.quat_to_matrix(quats_local) * np.exp(
        log_scales_local.astype(np.float64))[:, None, :]
    transforms[:, :3, 3] = means_local
    transforms[:, 3, 3] = 1.0
    return transforms.astype(np.float32)


def matrix_attribute_values(matrices: np.ndarray) -> np.ndarray:
    """(N, 4, 4) -> (N, 16) in the order Blender's FLOAT4X4 attributes store (column-major)."""
    return np.ascontiguousarray(np.transpose(matrices, (0, 2, 1)).reshape(len(matrices), 16), np.float32)


def pack_sh(sh_rest: np.ndarray) -> np.ndarray:
    """(N, K, 3) higher SH coefficients (K <= 15) -> (N, 7, 4) float32, the values of
    ``ATTR_SH_PACKS``. Each coefficient c is quantised against the splat's largest
    |coefficient| s to q = round((c / s + 1) (L - 1) / 2) in [0, L - 1] (L = SH_LEVELS;
    error at most s / (L - 1)), and two of them share a float as hi L + lo (below 2^24,
    so exact in float32; the material unpacks them with floor). Pack i's RGB holds
    coefficients 2i + 1 (hi) and 2i + 2 (lo); the alphas hold coefficient 15's r, g (pack 0)
    and b (pack 1, hi) and s (pack 2). Missing coefficients (degree < 3) are 0."""
    sh_rest = np.asarray(sh_rest, dtype=np.float64)
    n, k = sh_rest.shape[:2]
    if k > 15:
        raise ValueError(f"at most 15 higher SH coefficients per splat (degree 3), got {k}")
    coefficients = np.zeros((n, 15, 3))
    coefficients[:, :k] = sh_rest
    scale = np.abs(coefficients).reshape(n, -1).max(axis=1)
    safe = np.where(scale > 0, scale, 1.0)
    q = np.rint((coefficients / safe[:, None, None] + 1.0) * (SH_LEVELS - 1) / 2.0).clip(0, SH_LEVELS - 1)
    packs = np.zeros((n, 7, 4))
    packs[:, :, :3] = q[:, 0:14:2] * SH_LEVELS + q[:, 1:14:2]
    packs[:, 0, 3] = q[:, 14, 0] * SH_LEVELS + q[:, 14, 1]
    packs[:, 1, 3] = q[:, 14, 2] * SH_LEVELS + np.rint((SH_LEVELS - 1) / 2.0)
    packs[:, 2, 3] = scale
    return packs.astype(np.float32)


def unpack_sh(packs: np.ndarray) -> np.ndarray:
    """(N, 7, 4) -> (N, 15, 3): what the material decodes (for tests)."""
    packs = np.asarray(packs, dtype=np.float64)
    scale = packs[:, 2, 3]
    hi_lo = []
    for value in (packs[:, :, :3], packs[:, 0:2, 3]):
        hi = np.floor(value / SH_LEVELS)
        hi_lo.append((hi, value - hi * SH_LEVELS))
    (rgb_hi, rgb_lo), (alpha_hi, alpha_lo) = hi_lo
    q = np.zeros((len(packs), 15, 3))
    q[:, 0:14:2], q[:, 1:14:2] = rgb_hi, rgb_lo
    q[:, 14] = np.stack([alpha_hi[:, 0], alpha_lo[:, 0], alpha_hi[:, 1]], axis=1)
    return q * (2.0 * scale / (SH_LEVELS - 1))[:, None, None] - scale[:, None, None]


def inverse_variances(log_scales_local: np.ndarray) -> np.ndarray:
    """(N, 3) float32 1 / sigma_i^2 of the local scales, capped at MAX_INV_SIGMA2."""
    return np.minimum(np.exp(-2.0 * log_scales_local.astype(np.float64)), MAX_INV_SIGMA2).astype(np.float32)


_H_QUAT = rotations.matrix_to_quat(_H)


@dataclass
class SplatPoints:
    """positions: (N, 3) float32 rest means in object space.
    attributes: name -> (Blender attribute type, array (N,) or (N, C)); types are FLOAT,
    INT, FLOAT_VECTOR, FLOAT_COLOR (RGBA), QUATERNION (w, x, y, z) and FLOAT4X4 (16,
    column-major: ``matrix_attribute_values``)."""

    positions: np.ndarray
    attributes: dict[str, tuple[str, np.ndarray]]

    @property
    def count(self) -> int:
        return int(self.positions.shape[0])


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) display sRGB in [0, 1] -> scene-linear (Blender shades colour attributes as linear)."""
    rgb = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def lod_rank(opacities: np.ndarray, scales: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) float32 in [0, 1): the order in which splats are kept as the density rises.

    A splat is kept at density d when rank < d. The order is a weighted random sample
    without replacement (Efraimidis-Spirakis keys), weighted by opacity x projected area,
    so low densities keep the splats that cover the most, spread over the whole head.
    opacities: (N,) in [0, 1]; scales: (N, 3) metres.
    """
    n = len(opacities)
    if n == 0:
        return np.zeros(0, np.float32)
    area = np.exp(2.0 * np.mean(np.log(np.maximum(scales.astype(np.float64), 1e-12)), axis=1))
    weight = np.maximum(opacities.astype(np.float64) * area, 1e-30)
    u = np.random.default_rng(seed).random(n)
    key = -np.log(np.maximum(u, 1e-300)) / weight  # exponential race: smaller = kept earlier
    order = np.argsort(key, kind="stable")
    rank = np.empty(n, np.float64)
    rank[order] = np.arange(n) / n
    return rank.astype(np.float32)


def preview_radius(scales: np.ndarray, opacities: np.ndarray) -> np.ndarray:
    """(N,) radius of the sphere that stands in for each Gaussian in the preview.

    The sphere is the Gaussian's iso-contour where its alpha falls to PREVIEW_ALPHA_CUTOFF
    (r = sigma sqrt(2 ln(opacity / cutoff))), with sigma the geometric mean of the two
    largest axes (3DGS splats are often flat discs: the smallest axis would shrink them
    to dots). Splats fainter than the cutoff get radius 0. scales: (N, 3); opacities: (N,).
    """
    sorted_log = np.sort(np.log(np.maximum(np.asarray(scales, dtype=np.float64), 1e-12)), axis=1)
    sigma = np.exp(sorted_log[:, 1:].mean(axis=1))
    ratio = np.maximum(np.asarray(opacities, dtype=np.float64) / PREVIEW_ALPHA_CUTOFF, 1.0)
    return (sigma * np.sqrt(2.0 * np.log(ratio))).astype(np.float32)


def default_density(n_splats: int, budget: int | None = None) -> float:
    """The viewport density for an avatar of ``n_splats``: all of them up to ``budget``
    (``DEFAULT_VIEWPORT_SPLATS`` when None, read at call time so one setting governs it)."""
    budget = DEFAULT_VIEWPORT_SPLATS if budget is None else budget
    return 1.0 if n_splats <= budget else float(budget) / float(n_splats)


def splat_points(splats: splat_format.LocalSplats, rest_vertices: np.ndarray, faces: np.ndarray,
                 *, lod_seed: int = 0) -> SplatPoints:
    """The splat object's points for bound splats on the rest mesh.

    splats: N triangle-bound Gaussians; rest_vertices: (V, 3) head space; faces: (F, 3).
    """
    world = splat_format.pose_splats(splats, rest_vertices, faces)
    columns = splat_format.world_splats_to_ply_columns(world)
    positions = (world.means.astype(np.float64) @ _H.T).astype(np.float32)
    quats_object = rotations.quat_multiply(_H_QUAT, world.quats.astype(np.float64))
    quats_object = np.where(quats_object[:, :1] < 0, -quats_object, quats_object).astype(np.float32)
    attributes: dict[str, tuple[str, np.ndarray]] = {}
    for name, values in columns.items():
        if name in ("x", "y", "z", "nx", "ny", "nz"):
            continue  # the position is the vertex itself; 3DGS normals are unused zeros
        if name.startswith("rot_"):
            values = quats_object[:, int(name[4:])]
        attributes[name] = ("FLOAT", np.ascontiguousarray(values, dtype=np.float32))

    corners = np.asarray(faces, dtype=np.int32)[splats.binding]
    attributes[ATTR_FACE] = ("INT", splats.binding.astype(np.int32))
    for i, name in enumerate(ATTR_CORNERS):
        attributes[name] = ("INT", np.ascontiguousarray(corners[:, i]))
    attributes[ATTR_MEAN_LOCAL] = ("FLOAT_VECTOR", splats.means_local.astype(np.float32))
    attributes[ATTR_QUAT_LOCAL] = ("QUATERNION", (splats.quats_local / np.linalg.norm(
        splats.quats_local, axis=1, keepdims=True).clip(1e-12)).astype(np.float32))
    attributes[ATTR_LOG_SCALE_LOCAL] = ("FLOAT_VECTOR", splats.log_scales_local.astype(np.float32))
    attributes[ATTR_RADIUS_LOCAL] = ("FLOAT", preview_radius(np.exp(splats.log_scales_local), world.opacities))
    rgba = np.ones((splats.count, 4), np.float32)
    rgba[:, :3] = srgb_to_linear(splat_format.sh_dc_to_rgb(splats.sh_dc))
    attributes[ATTR_COLOR] = ("FLOAT_COLOR", rgba)
    attributes[ATTR_XFORM_LOCAL] = ("FLOAT4X4", matrix_attribute_values(local_transforms(
        splats.quats_local, splats.log_scales_local, splats.means_local)))
    attributes[ATTR_INV_SIGMA2] = ("FLOAT_VECTOR", inverse_variances(splats.log_scales_local))
    rgba = np.empty((splats.count, 4), np.float32)
    rgba[:, :3] = splat_format.SH_C0 * splats.sh_dc + 0.5
    rgba[:, 3] = world.opacities
    attributes[ATTR_RGBA] = ("FLOAT_COLOR", rgba)
    packs = pack_sh(splats.sh_rest)
    for i, name in enumerate(ATTR_SH_PACKS):
        attributes[name] = ("FLOAT_COLOR", np.ascontiguousarray(packs[:, i]))
    attributes[ATTR_ALPHA] = ("FLOAT", world.opacities.astype(np.float32))
    attributes[ATTR_LOD] = ("FLOAT", lod_rank(world.opacities, world.scales, seed=lod_seed))
    return SplatPoints(positions, attributes)


def posed_reference(splats: splat_format.LocalSplats, vertices_object: np.ndarray, faces: np.ndarray):
    """Reference posing in object space: ``pose_splats`` on mesh vertices that are
    already in the splat object's space ((V, 3)). Returns means (N, 3), quats (N, 4)
    (w >= 0) and scales (N, 3). The triangle frames are rotation-equivariant, so posing
    in object space equals posing in head space followed by HEAD_TO_BLENDER."""
    world = splat_format.pose_splats(splats, vertices_object, faces)
    quats = np.where(world.quats[:, :1] < 0, -world.quats, world.quats)
    return world.means, quats, world.scales

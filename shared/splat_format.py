"""Triangle-bound Gaussian splats as plain arrays: field layout, triangle frames and posing.

An avatar's Gaussians live in the local frame of the head-mesh triangle they are bound
to (GaussianAvatars; GAF eq. 1-3): for triangle f with posed vertices (v0, v1, v2)

    R_f = [t, b, n]   (columns)  t = unit(v1 - v0), n = unit((v1 - v0) x (v2 - v0)), b = n x t
    T_f = (v0 + v1 + v2) / 3
    k_f = (|v1 - v0| + h) / 2     with h the triangle's height over edge v0-v1

    mean_world  = k_f R_f mean_local + T_f
    rot_world   = R_f rot_local
    scale_world = k_f exp(log_scale_local)

so the splats move, turn and stretch with the mesh. The frame is right-handed with the
outward normal as local +Z. This module is the numpy reference (the add-on and the PLY
export use it); ``compute_server.splats.binding`` is the batched torch version, and a test
keeps the two equal.

Raw parameters are stored the way 3DGS PLY files store them: log scales, opacity logits,
SH coefficients with colour = SH_C0 * f_dc + 0.5 for degree 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rotations import quat_multiply, matrix_to_quat, quat_to_matrix

SH_C0 = 0.28209479177387814

# Per-splat arrays of an avatar, with their trailing shapes (K = (sh_degree + 1) ** 2).
SPLAT_FIELDS = {
    "means_local": (3,),         # float32, triangle-local units (multiples of k_f)
    "log_scales_local": (3,),    # float32, log of the local scale
    "quats_local": (4,),         # float32, (w, x, y, z), unit
    "opacity_logits": (),        # float32, sigmoid -> opacity
    "sh_dc": (3,),               # float32, degree-0 SH coefficient per colour channel
    "sh_rest": (None, 3),        # float32, (K - 1, 3) higher-order SH coefficients
    "binding": (),               # int32, index of the parent triangle
}

# Optional (N, C, 3) float32: the expression-dependent colour (issue 12). A Gaussian's sh_dc
# at a frame is sh_dc + expression_colour . code, with code = expression_code(expr, jaw_pose):
# the E expression weights, then the jaw's axis-angle rotation (radians) times
# JAW_CODE_SCALE, so C = E + 3. At the neutral face (code 0) the colour is sh_dc. It is an
# avatar's own file, not part of splats.npz: it is several times larger than the splats
# and a client that draws the neutral colours (the Blender add-on) need not download it.
EXPRESSION_COLOUR_FIELD = "expression_colour"
EXPRESSION_COLOUR_FILE = "expression_colour.npz"
JAW_CODE_SCALE = 3.0   # an opened jaw (about 0.3 rad) weighs like one full expression


def expression_code(expr: np.ndarray, jaw_pose: np.ndarray) -> np.ndarray:
    """(..., E + 3) float32: what the expression colour reads from (..., E) expression
    weights and (..., 3) jaw rotations."""
    expr, jaw = np.asarray(expr, np.float32), np.asarray(jaw_pose, np.float32)
    return np.concatenate([expr, JAW_CODE_SCALE * jaw], axis=-1)


class SplatFormatError(ValueError):
    """Splat arrays that do not fit together."""


@dataclass
class LocalSplats:
    """Gaussians in their triangles' local frames; N rows in every array."""

    means_local: np.ndarray
    log_scales_local: np.ndarray
    quats_local: np.ndarray
    opacity_logits: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray
    binding: np.ndarray
    # (N, C, 3) or None: how each Gaussian's sh_dc moves with the expression (see
    # EXPRESSION_COLOUR_FIELD); avatars learned from many frames of a clip carry it
    expression_colour: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = None
        for name, trailing in SPLAT_FIELDS.items():
            dtype = np.int32 if name == "binding" else np.float32
            value = np.ascontiguousarray(getattr(self, name), dtype=dtype)
            if name == "sh_rest" and value.ndim == 2 and value.shape[1] == 0:
                value = value.reshape(value.shape[0], 0, 3)
            expected_ndim = 1 + len(trailing)
            if value.ndim != expected_ndim or any(t is not None and t != s for t, s in zip(trailing, value.shape[1:])):
                raise SplatFormatError(f"splat field '{name}' has shape {value.shape}, expected (N, {trailing})")
            if n is None:
                n = value.shape[0]
            elif value.shape[0] != n:
                raise SplatFormatError(f"splat field '{name}' has {value.shape[0]} rows, expected {n}")
            setattr(self, name, value)
        if self.expression_colour is not None:
            value = np.ascontiguousarray(self.expression_colour, dtype=np.float32)
            if value.ndim != 3 or value.shape[0] != n or value.shape[2] != 3:
                raise SplatFormatError(f"splat field '{EXPRESSION_COLOUR_FIELD}' has shape {value.shape}, "
                                       f"expected ({n}, C, 3)")
            self.expression_colour = value
        k = self.sh_rest.shape[1] + 1
        degree = int(round(np.sqrt(k))) - 1
        if (degree + 1) ** 2 != k or degree > 3:
            raise SplatFormatError(f"sh_rest has {k - 1} coefficients per channel; expected 0, 3, 8 or 15")

    @property
    def count(self) -> int:
        return int(self.binding.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(np.sqrt(self.sh_rest.shape[1] + 1))) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The SPLAT_FIELDS (splats.npz); the expression colour is stored apart (EXPRESSION_COLOUR_FILE)."""
        return {name: getattr(self, name) for name in SPLAT_FIELDS}

    def dc_for(self, code: np.ndarray | None) -> np.ndarray:
        """(N, 3) the degree-0 SH coefficients at an expression ``code`` (C,) (see
        EXPRESSION_COLOUR_FIELD); sh_dc itself without a code or an expression colour."""
        if code is None or self.expression_colour is None:
            return self.sh_dc
        return self.sh_dc + np.einsum("nck,c->nk", self.expression_colour, np.asarray(code, np.float32))

    @classmethod
    def from_arrays(cls, arrays: dict) -> "LocalSplats":
        """From splats.npz's arrays, with EXPRESSION_COLOUR_FIELD among them where the avatar has one."""
        missing = [name for name in SPLAT_FIELDS if name not in arrays]
        if missing:
            raise SplatFormatError(f"splat arrays are missing {', '.join(missing)}")
        extra = arrays.get(EXPRESSION_COLOUR_FIELD)
        return cls(**{name: np.asarray(arrays[name]) for name in SPLAT_FIELDS},
                   expression_colour=None if extra is None else np.asarray(extra))

    def check_binding(self, n_faces: int) -> None:
        if self.count and (self.binding.min() < 0 or self.binding.max() >= n_faces):
            raise SplatFormatError(f"splat binding refers to triangles outside 0..{n_faces - 1}")


@dataclass
class WorldSplats:
    """Gaussians posed into head space for one frame (activated values)."""

    means: np.ndarray        # (N, 3) metres
    quats: np.ndarray        # (N, 4) unit (w, x, y, z)
    scales: np.ndarray       # (N, 3) metres
    opacities: np.ndarray    # (N,) in [0, 1]
    sh_dc: np.ndarray        # (N, 3)
    sh_rest: np.ndarray      # (N, K - 1, 3)


def triangle_frames(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local frames of every triangle.

    vertices: (V, 3) posed positions; faces: (F, 3) vertex indices.
    Returns rotations (F, 3, 3) with columns (tangent, bitangent, normal), centroids (F, 3)
    and scales k (F,) in the vertices' units. Degenerate triangles get a finite frame
    (identity-like) and a tiny scale instead of NaNs.
    """
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    e0 = tri[:, 1] - tri[:, 0]
    e1 = tri[:, 2] - tri[:, 0]
    eps = 1e-12
    len0 = np.linalg.norm(e0, axis=-1)
    tangent = e0 / np.maximum(len0, eps)[:, None]
    cross = np.cross(e0, e1)
    double_area = np.linalg.norm(cross, axis=-1)
    normal = cross / np.maximum(double_area, eps)[:, None]
    bitangent = np.cross(normal, tangent)
    rotations = np.stack([tangent, bitangent, normal], axis=-1)
    centroids = tri.mean(axis=1)
    height = double_area / np.maximum(len0, eps)
    scales = 0.5 * (len0 + height)
    return rotations, centroids, scales


def pose_splats(local: LocalSplats, vertices: np.ndarray, faces: np.ndarray) -> WorldSplats:
    """Local splats -> head space for posed ``vertices`` (V, 3) of the bound mesh ``faces`` (F, 3)."""
    local.check_binding(len(faces))
    rotations, centroids, scales = triangle_frames(vertices, faces)
    b = local.binding
    rot_b = rotations[b]
    k_b = scales[b]
    means = np.einsum("nij,nj->ni", rot_b, local.means_local.astype(np.float64)) * k_b[:, None] + centroids[b]
    frame_quats = matrix_to_quat(rot_b)
    quats = quat_multiply(frame_quats, local.quats_local.astype(np.float64))
    quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
    world_scales = np.exp(local.log_scales_local.astype(np.float64)) * k_b[:, None]
    return WorldSplats(
        means=means.astype(np.float32),
        quats=quats.astype(np.float32),
        scales=world_scales.astype(np.float32),
        opacities=(1.0 / (1.0 + np.exp(-local.opacity_logits.astype(np.float64)))).astype(np.float32),
        sh_dc=local.sh_dc,
        sh_rest=local.sh_rest,
    )


def splat_normals(quats: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals: each Gaussian's shortest axis in the frame of ``quats`` (N, 4).

    GaussianShader's definition, used by GeoDiff4D's normal regularization; the sign is
    arbitrary (the shortest axis has no inside/outside).
    """
    rot = quat_to_matrix(quats)
    shortest = np.argmin(scales, axis=-1)
    return np.take_along_axis(rot, shortest[:, None, None].repeat(3, axis=1), axis=2)[..., 0].astype(np.float32)


def sh_dc_to_rgb(sh_dc: np.ndarray) -> np.ndarray:
    """Degree-0 colour in [0, 1] from the DC coefficients (3DGS convention)."""
    return np.clip(SH_C0 * np.asarray(sh_dc, dtype=np.float32) + 0.5, 0.0, 1.0)


def rgb_to_sh_dc(rgb: np.ndarray) -> np.ndarray:
    return ((np.asarray(rgb, dtype=np.float32) - 0.5) / SH_C0).astype(np.float32)


def ply_property_names(sh_degree: int) -> list[str]:
    """Vertex property names of a standard 3DGS PLY, in the order viewers expect."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def world_splats_to_ply_columns(world: WorldSplats) -> dict[str, np.ndarray]:
    """Column arrays (float32) for a standard 3DGS PLY from posed splats.

    f_rest is channel-major (all red coefficients, then green, then blue), scales are logs,
    opacity is a logit and rot is (w, x, y, z), exactly as the reference 3DGS writer does.
    """
    n = world.means.shape[0]
    opac = np.clip(world.opacities.astype(np.float64), 1e-7, 1 - 1e-7)
    normals = splat_normals(world.quats, world.scales) if n else np.zeros((0, 3), np.float32)
    rest = np.transpose(world.sh_rest, (0, 2, 1)).reshape(n, -1)
    columns = {"x": world.means[:, 0], "y": world.means[:, 1], "z": world.means[:, 2],
               "nx": normals[:, 0], "ny": normals[:, 1], "nz": normals[:, 2]}
    for c in range(3):
        columns[f"f_dc_{c}"] = world.sh_dc[:, c]
    for i in range(rest.shape[1]):
        columns[f"f_rest_{i}"] = rest[:, i]
    columns["opacity"] = np.log(opac / (1 - opac))
    log_scales = np.log(np.maximum(world.scales.astype(np.float64), 1e-12))
    for c in range(3):
        columns[f"scale_{c}"] = log_scales[:, c]
    for c in range(4):
        columns[f"rot_{c}"] = world.quats[:, c]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in columns.items()}

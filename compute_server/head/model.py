"""The head model every stage poses: FLAME-structured parameters -> posed mesh, joints, landmarks.

Why one class for every model: fitting, tracking, splat binding and the Blender rig must
not care whether the avatar rides on real FLAME or on the built-in open head. Both load
into a ``HeadModelData`` record and become the same ``HeadModel`` (a torch module whose
arrays are buffers, so ``.to(device)`` / ``.double()`` move them), posed by ``lbs``.

Parameters follow FLAME / GaussianAvatars / VHAP: ``shape``, ``expr``, ``rotation``
(global, about the root joint), ``neck_pose``, ``jaw_pose``, ``eyes_pose`` (left eye then
right eye), ``translation`` (metres, added last). Joints: root, neck, jaw, left_eye,
right_eye. Head space: metres, +Y up, +Z out of the face, +X towards the subject's left.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from .lbs import blend_shapes, lbs, skin, vertices_to_joints, vertices_to_landmarks
from .model_data import JOINT_NAMES, HeadModelData

PARAM_WIDTHS = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}


@dataclass
class HeadParams:
    """Per-frame head parameters; every field is a tensor with a leading batch dim B.

    shape (B, S), expr (B, E), rotation/neck_pose/jaw_pose (B, 3) axis-angle radians,
    eyes_pose (B, 6) (left eye then right eye), translation (B, 3) metres. A field with
    batch 1 is broadcast against the others in ``HeadModel.forward`` (a shared identity
    over the frames of a video is ``shape`` of batch 1).
    """

    shape: Tensor
    expr: Tensor
    rotation: Tensor
    neck_pose: Tensor
    jaw_pose: Tensor
    eyes_pose: Tensor
    translation: Tensor

    @classmethod
    def zeros(cls, model: "HeadModel", batch: int = 1, device=None, dtype: torch.dtype = torch.float32) -> "HeadParams":
        """Neutral parameters (mean shape, no expression, rest pose) for ``model``."""
        z = lambda w: torch.zeros(batch, w, device=device, dtype=dtype)  # noqa: E731
        return cls(z(model.n_shape), z(model.n_expr), z(3), z(3), z(3), z(6), z(3))

    def _map(self, fn) -> "HeadParams":
        return HeadParams(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device=None, dtype: torch.dtype | None = None) -> "HeadParams":
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "HeadParams":
        return self._map(lambda t: t.detach())

    def clone(self) -> "HeadParams":
        return self._map(lambda t: t.clone())

    def requires_grad_(self, flag: bool = True) -> "HeadParams":
        for f in fields(self):
            getattr(self, f.name).requires_grad_(flag)
        return self

    @property
    def batch_size(self) -> int:
        return max(int(getattr(self, f.name).shape[0]) for f in fields(self))

    def index(self, idx) -> "HeadParams":
        """Select frames (int, slice, list or index tensor); batch-1 fields are kept as they are."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)

        def pick(t: Tensor) -> Tensor:
            return t if t.shape[0] == 1 and self.batch_size > 1 else t[idx]
        return self._map(pick)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """float32 arrays keyed like the VHAP / motion files."""
        return {f.name: getattr(self, f.name).detach().cpu().numpy().astype(np.float32) for f in fields(self)}

    @classmethod
    def from_numpy(cls, arrays: dict, device=None, dtype: torch.dtype = torch.float32) -> "HeadParams":
        """Inverse of ``to_numpy``; 1-D arrays become batch 1. Every field must be present."""
        missing = [f.name for f in fields(cls) if f.name not in arrays]
        if missing:
            raise KeyError(f"head parameters are missing {', '.join(missing)}")
        out = {}
        for f in fields(cls):
            value = np.asarray(arrays[f.name], dtype=np.float32)
            out[f.name] = torch.as_tensor(value.reshape(1, -1) if value.ndim == 1 else value, device=device).to(dtype)
        return cls(**out)


@dataclass
class HeadMesh:
    """A posed head: vertices (B, V, 3), joints (B, 5, 3) and landmarks (B, L, 3), head space."""

    vertices: Tensor
    joints: Tensor
    landmarks: Tensor


class HeadModel(torch.nn.Module):
    """A FLAME-structured head model (real FLAME or the built-in head) as a torch module.

    Build it with ``load_head_model`` (``registry.py``) or from a ``HeadModelData``.
    """

    joint_names = JOINT_NAMES

    def __init__(self, data: HeadModelData, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.name = data.name
        self.n_shape, self.n_expr = data.n_shape, data.n_expr
        self.n_verts, self.n_faces = data.n_verts, data.n_faces
        self.expression_names = list(data.expression_names)
        self.shape_names = list(data.shape_names)
        self.region_names = list(data.region_names)
        self.source_path, self.source_sha256 = data.source_path, data.source_sha256
        self.notes = list(data.notes)
        f = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
        i = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
        self.register_buffer("v_template", f(data.v_template))
        self.register_buffer("shapedirs", f(data.shapedirs))
        self.register_buffer("exprdirs", f(data.exprdirs))
        self.register_buffer("posedirs", f(data.posedirs.T.copy()))  # (P, V*3), smplx layout
        self.register_buffer("J_regressor", f(data.J_regressor))
        self.register_buffer("lbs_weights", f(data.lbs_weights))
        self.register_buffer("parents", i(data.parents))
        self.register_buffer("faces", i(data.faces))
        self.register_buffer("face_region", i(data.face_region))
        self.register_buffer("lmk_face_idx", i(data.lmk_face_idx))
        self.register_buffer("lmk_bary", f(data.lmk_bary))
        self.register_buffer("landmark_mp_index", i(data.landmark_mp_index))
        # an identity's own surface beyond the model's shape space (a hair shell), added to
        # the rest vertices after the joints are regressed: see ``with_static_offset``
        self.register_buffer("static_offset", torch.zeros_like(self.v_template), persistent=False)
        self._register_landmark_subset()

    def _register_landmark_subset(self) -> None:
        """Buffers to pose only the vertices the landmarks sit on (``pose_landmarks``).

        Joints are linear in the blend-shape coefficients, so their regression is folded
        into joint-level blend shapes once; fitting then skins a few hundred vertices
        instead of the whole mesh.
        """
        corners = self.faces[self.lmk_face_idx]                               # (L, 3)
        subset, local = torch.unique(corners.reshape(-1), return_inverse=True)
        n_sub = subset.numel()
        self.register_buffer("_lmk_vertices", subset, persistent=False)
        self.register_buffer("_lmk_corners", local.reshape(-1, 3), persistent=False)
        self.register_buffer("_sub_template", self.v_template[subset], persistent=False)
        self.register_buffer("_sub_offset", self.static_offset[subset], persistent=False)
        self.register_buffer("_sub_shapedirs", self.shapedirs[subset], persistent=False)
        self.register_buffer("_sub_exprdirs", self.exprdirs[subset], persistent=False)
        posedirs = self.posedirs.reshape(self.posedirs.shape[0], -1, 3)[:, subset].reshape(self.posedirs.shape[0],
                                                                                       n_sub * 3)
        self.register_buffer("_sub_posedirs", posedirs, persistent=False)
        self.register_buffer("_sub_weights", self.lbs_weights[subset], persistent=False)
        self.register_buffer("_J_template", self.J_regressor @ self.v_template, persistent=False)
        self.register_buffer("_J_shapedirs", torch.einsum("jv,vck->jck", self.J_regressor, self.shapedirs),
                             persistent=False)
        self.register_buffer("_J_exprdirs", torch.einsum("jv,vck->jck", self.J_regressor, self.exprdirs),
                             persistent=False)

    # ---- posing -------------------------------------------------------------------------
    def forward(self, params: HeadParams) -> HeadMesh:
        """Pose the model: HeadParams (batch B, see its docstring) -> HeadMesh (B, ...)."""
        vertices, joints = self._pose(params, self.static_offset)
        return HeadMesh(vertices=vertices, joints=joints, landmarks=self.landmarks_from_vertices(vertices))

    def _pose(self, params: HeadParams, static_offset: Tensor) -> tuple[Tensor, Tensor]:
        p = self._broadcast(params)
        full_pose = torch.cat([p.rotation, p.neck_pose, p.jaw_pose, p.eyes_pose], dim=1)
        return lbs(p.shape, p.expr, full_pose, self.v_template, self.shapedirs, self.exprdirs, self.posedirs,
                   self.J_regressor, self.parents, self.lbs_weights, p.translation, static_offset)

    @torch.no_grad()
    def rest_offset_for(self, params: HeadParams, posed_offset: Tensor) -> Tensor:
        """The change of static offset (V, 3) that moves the mesh posed by ``params`` (one
        frame) by ``posed_offset`` (V, 3). Skinning is linear in the rest surface and the
        offset leaves the joints alone, so each vertex's offset is turned by its own blend
        of joint rotations: three unit offsets measure it, and it is inverted per vertex."""
        base = self._pose(params, self.static_offset)[0][0]
        columns = []
        for axis in range(3):
            unit = torch.zeros_like(self.static_offset)
            unit[:, axis] = 1.0
            columns.append(self._pose(params, self.static_offset + unit)[0][0] - base)
        blend = torch.stack(columns, dim=-1)                               # (V, 3, 3)
        posed = torch.as_tensor(np.asarray(posed_offset), dtype=blend.dtype, device=blend.device)
        return torch.linalg.solve(blend, posed[..., None])[..., 0]

    def pose_landmarks(self, params: HeadParams) -> tuple[Tensor, Tensor]:
        """Landmarks (B, L, 3) and posed joints (B, 5, 3) without posing the whole mesh.

        Equal to ``forward(params).landmarks`` / ``.joints`` (tested), several times faster:
        the fitting and tracking energies only look at landmarks.
        """
        p = self._broadcast(params)
        full_pose = torch.cat([p.rotation, p.neck_pose, p.jaw_pose, p.eyes_pose], dim=1)
        v_shaped = (self._sub_template[None] + blend_shapes(p.shape, self._sub_shapedirs)
                    + blend_shapes(p.expr, self._sub_exprdirs))
        rest_joints = (self._J_template[None] + blend_shapes(p.shape, self._J_shapedirs)
                       + blend_shapes(p.expr, self._J_exprdirs))
        vertices, joints = skin(v_shaped + self._sub_offset[None], rest_joints, full_pose, self._sub_posedirs, self.parents,
                                self._sub_weights, p.translation)
        corners = self._lmk_corners                                           # (L, 3)
        tri = vertices.index_select(1, corners.reshape(-1)).reshape(vertices.shape[0], *corners.shape, 3)
        return torch.einsum("blkc,lk->blc", tri, self.lmk_bary.to(vertices.dtype)), joints

    def with_static_offset(self, offset) -> "HeadModel":
        """A copy of this model whose rest surface is moved by ``offset`` (V, 3) metres (the
        rig's ``static_offset``): posed, animated and exported with the head, while the joints
        stay where the shape puts them, so a fitted pose means the same on both models."""
        offset = torch.as_tensor(np.asarray(offset), dtype=self.v_template.dtype, device=self.v_template.device)
        if offset.shape != self.v_template.shape:
            raise ValueError(f"static offset must be {tuple(self.v_template.shape)}, got {tuple(offset.shape)}")
        copy = deepcopy(self)
        copy.static_offset = offset.clone()
        copy._sub_offset = copy.static_offset[copy._lmk_vertices]
        return copy

    def canonical_vertices(self, shape: Tensor, expr: Tensor) -> Tensor:
        """Template + shape and expression blend shapes + the static offset, unposed:
        (B, S), (B, E) -> (B, V, 3)."""
        return self._blended(shape, expr) + self.static_offset[None]

    def _blended(self, shape: Tensor, expr: Tensor) -> Tensor:
        shape, expr = self._check_coefficients(shape, expr)
        batch = max(shape.shape[0], expr.shape[0])
        return (self.v_template[None]
                + torch.einsum("bk,vck->bvc", shape.expand(batch, -1), self.shapedirs)
                + torch.einsum("bk,vck->bvc", expr.expand(batch, -1), self.exprdirs))

    def landmarks_from_vertices(self, vertices: Tensor) -> Tensor:
        """Landmark positions (B, L, 3) on vertices (B, V, 3) of this model's topology."""
        return vertices_to_landmarks(vertices, self.faces, self.lmk_face_idx, self.lmk_bary)

    def rest_joints(self, shape: Tensor) -> Tensor:
        """Rest-pose joint positions (B, 5, 3) for shape coefficients (B, S) (no expression)."""
        zeros = torch.zeros(shape.shape[0], self.n_expr, dtype=shape.dtype, device=shape.device)
        return vertices_to_joints(self.J_regressor, self._blended(shape, zeros))

    def _check_coefficients(self, shape: Tensor, expr: Tensor) -> tuple[Tensor, Tensor]:
        if shape.ndim != 2 or shape.shape[1] != self.n_shape:
            raise ValueError(f"{self.name} head model takes shape (B, {self.n_shape}), got {tuple(shape.shape)}")
        if expr.ndim != 2 or expr.shape[1] != self.n_expr:
            raise ValueError(f"{self.name} head model takes expr (B, {self.n_expr}), got {tuple(expr.shape)}")
        for t in (shape, expr):
            if t.dtype != self.v_template.dtype:
                raise ValueError(f"parameters are {t.dtype} but the model is {self.v_template.dtype}; "
                                 "convert one of them (model.to(dtype) or params.to(dtype=...))")
        return shape, expr

    def _broadcast(self, params: HeadParams) -> HeadParams:
        self._check_coefficients(params.shape, params.expr)
        for key, width in PARAM_WIDTHS.items():
            value = getattr(params, key)
            if value.ndim != 2 or value.shape[1] != width:
                raise ValueError(f"head parameter '{key}' must be (B, {width}), got {tuple(value.shape)}")
            if value.dtype != self.v_template.dtype:
                raise ValueError(f"head parameter '{key}' is {value.dtype} but the model is {self.v_template.dtype}")
        batch = params.batch_size
        out = {}
        for f in fields(params):
            value = getattr(params, f.name)
            if value.shape[0] not in (1, batch):
                raise ValueError(f"head parameter '{f.name}' has batch {value.shape[0]}, expected 1 or {batch}")
            out[f.name] = value.expand(batch, -1)
        return HeadParams(**out)

    # ---- export / description ----------------------------------------------------------
    def rig_export(self, shape: np.ndarray) -> dict:
        """Numpy arrays the Blender add-on builds its armature + shape-keyed mesh from.

        shape: (S,) identity coefficients. Returns rest_vertices (V, 3) float32 (template +
        shape, zero expression and pose), faces (F, 3) int32, expression_deltas (E, V, 3)
        float32 (expressions are linear, so the deltas do not depend on the coefficients),
        expression_names, joint_rest (5, 3) float32 regressed from rest_vertices,
        joint_parents (5,) int32 (-1 for the root), joint_names, skin_weights (V, 5) float32,
        face_region (F,) int32, region_names, pose_corrective_deltas (P, V, 3) float32 with
        P = 36 (see pose_correctives_note), has_pose_correctives, and the model name.
        """
        shape = np.asarray(shape, dtype=np.float64).reshape(-1)
        if shape.shape[0] != self.n_shape:
            raise ValueError(f"{self.name} head model takes {self.n_shape} shape coefficients, got {shape.shape[0]}")
        np64 = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
        shapedirs, template = np64(self.shapedirs), np64(self.v_template)
        rest = template + np.einsum("vck,k->vc", shapedirs, shape)
        posedirs = np64(self.posedirs).reshape(-1, self.n_verts, 3)
        return {
            "model_name": self.name,
            "rest_vertices": rest.astype(np.float32),
            "faces": self.faces.cpu().numpy().astype(np.int32),
            "expression_deltas": np.ascontiguousarray(np.moveaxis(np64(self.exprdirs), 2, 0)).astype(np.float32),
            "expression_names": list(self.expression_names),
            "joint_rest": (np64(self.J_regressor) @ rest).astype(np.float32),
            "joint_parents": self.parents.cpu().numpy().astype(np.int32),
            "joint_names": list(self.joint_names),
            "skin_weights": np64(self.lbs_weights).astype(np.float32),
            "face_region": self.face_region.cpu().numpy().astype(np.int32),
            "region_names": list(self.region_names),
            "pose_corrective_deltas": posedirs.astype(np.float32),
            "has_pose_correctives": bool(np.any(posedirs != 0)),
            "pose_correctives_note": POSE_CORRECTIVES_NOTE,
        }

    def describe(self) -> dict:
        """Plain-data summary for avatar metadata and server.info."""
        n_landmarks = int(self.lmk_face_idx.shape[0])
        return {
            "name": self.name,
            "n_shape": self.n_shape,
            "n_expr": self.n_expr,
            "n_verts": self.n_verts,
            "n_faces": self.n_faces,
            "expression_names": list(self.expression_names),
            "shape_names": list(self.shape_names),
            "joint_names": list(self.joint_names),
            "region_names": list(self.region_names),
            "n_landmarks": n_landmarks,
            "can_fit_landmarks": n_landmarks > 0,
            "source_path": self.source_path,
            "source_sha256": self.source_sha256,
            "notes": list(self.notes),
        }

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, verts={self.n_verts}, faces={self.n_faces}, "
                f"shape={self.n_shape}, expr={self.n_expr}, landmarks={int(self.lmk_face_idx.shape[0])}")


POSE_CORRECTIVES_NOTE = (
    "pose_corrective_deltas[k] is the vertex offset per unit of pose feature k, where feature "
    "k = (R_j - I)[r, c] with j = 1 + k // 9 (neck, jaw, left_eye, right_eye), r = (k % 9) // 3, "
    "c = k % 3 and R_j the joint's local rotation matrix (FLAME's pose blend shapes). A rig "
    "without drivers for them loses only these small corrective offsets (skinning itself is exact)."
)


def load_head_model(spec: str | None = None, *, device="cpu", landmark_embedding: str | None = None,
                    with_teeth: bool = False, n_shape: int | None = None, n_expr: int | None = None,
                    dtype: torch.dtype = torch.float32) -> HeadModel:
    """Load a head model: None/"builtin" -> the built-in open head; a FLAME .pkl path -> FLAME.

    Raises ``UserError("bad_model", ...)`` naming the file and the problem. See
    ``registry.load_head_model`` for the options.
    """
    from .registry import load_head_model as _load
    return _load(spec, device=device, landmark_embedding=landmark_embedding, with_teeth=with_teeth,
                 n_shape=n_shape, n_expr=n_expr, dtype=dtype)


def available_head_models(configured_specs: list[str]) -> list[dict]:
    """The built-in model plus each configured FLAME file, with its load status (server.info)."""
    from .registry import available_head_models as _available
    return _available(configured_specs)

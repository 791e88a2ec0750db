"""The avatar as the add-on needs it, read from an ``avatar.get`` reply (no bpy).

docs/formats.md ("Avatar folder") is the contract: ``rig.npz`` holds the mesh the splats
are bound to with its expression shape keys, joints and skin weights; ``splats.npz`` the
Gaussians in their triangles' local frames; ``avatar.json`` (the reply's ``metadata``)
names the expression components and carries the portrait camera. Checking everything
here, with sentences that name the broken field, keeps the Blender side simple.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._shared import camera as camera_mod, rig_math, splat_format

REQUIRED_FILES = ("rig.npz", "splats.npz")


class AvatarDataError(ValueError):
    """An avatar reply that does not follow docs/formats.md."""


@dataclass
class RigData:
    """The head mesh and its controls, head space (metres, +Y up, +Z out of the face).

    rest_vertices (V, 3) float32; faces (F, 3) int32; expression_deltas (E, V, 3) float32
    (one shape key each, linear); expression_names (E,); joint_rest (5, 3) float32;
    skin_weights (V, 5) float32; face_region (F,) int32 indexing region_names.
    """

    rest_vertices: np.ndarray
    faces: np.ndarray
    expression_deltas: np.ndarray
    expression_names: list[str]
    joint_rest: np.ndarray
    skin_weights: np.ndarray
    face_region: np.ndarray
    region_names: list[str] = field(default_factory=list)
    head_model: str = ""

    @property
    def n_vertices(self) -> int:
        return int(self.rest_vertices.shape[0])


@dataclass
class AvatarData:
    """One avatar ready to import: ids and names, the rig, the splats, the portrait camera."""

    avatar_id: str
    name: str
    metadata: dict
    rig: RigData
    splats: splat_format.LocalSplats
    portrait_camera: camera_mod.Camera | None


def _array(bundle: dict, key: str, where: str, *, ndim: int, dtype) -> np.ndarray:
    if key not in bundle:
        raise AvatarDataError(f"{where} has no '{key}' array (see docs/formats.md, 'Avatar folder')")
    value = np.asarray(bundle[key])
    if value.ndim != ndim:
        raise AvatarDataError(f"{where}['{key}'] must have {ndim} dimensions, got shape {value.shape}")
    return np.ascontiguousarray(value, dtype=dtype)


def rig_from_arrays(rig: dict, metadata: dict) -> RigData:
    """Check and convert the arrays of ``rig.npz`` (plus names from ``avatar.json``)."""
    where = "rig.npz"
    vertices = _array(rig, "rest_vertices", where, ndim=2, dtype=np.float32)
    faces = _array(rig, "faces", where, ndim=2, dtype=np.int32)
    deltas = _array(rig, "expression_deltas", where, ndim=3, dtype=np.float32)
    joints = _array(rig, "joint_rest", where, ndim=2, dtype=np.float32)
    weights = _array(rig, "skin_weights", where, ndim=2, dtype=np.float32)
    n_verts = vertices.shape[0]
    if vertices.shape[1] != 3 or faces.shape[1] != 3:
        raise AvatarDataError(f"{where}: rest_vertices and faces must have 3 columns")
    if faces.size and (faces.min() < 0 or faces.max() >= n_verts):
        raise AvatarDataError(f"{where}: faces refer to vertices outside 0..{n_verts - 1}")
    if deltas.shape[1:] != (n_verts, 3):
        raise AvatarDataError(f"{where}: expression_deltas must be (E, {n_verts}, 3), got {deltas.shape}")
    if joints.shape != (len(rig_math.JOINT_NAMES), 3):
        raise AvatarDataError(f"{where}: joint_rest must be (5, 3) for joints {', '.join(rig_math.JOINT_NAMES)}")
    if weights.shape != (n_verts, len(rig_math.JOINT_NAMES)):
        raise AvatarDataError(f"{where}: skin_weights must be ({n_verts}, 5), got {weights.shape}")
    if "joint_parents" in rig and tuple(np.asarray(rig["joint_parents"]).tolist()) != rig_math.JOINT_PARENTS:
        raise AvatarDataError(f"{where}: joint_parents must be {list(rig_math.JOINT_PARENTS)} (FLAME's joint tree)")
    face_region = (np.ascontiguousarray(rig["face_region"], dtype=np.int32) if "face_region" in rig
                   else np.zeros(len(faces), np.int32))
    head_model = metadata.get("head_model") or {}
    names = [str(n) for n in head_model.get("expression_names") or []]
    if len(names) != deltas.shape[0] or len(set(names)) != len(names):
        names = [f"expr_{i:03d}" for i in range(deltas.shape[0])]
    return RigData(vertices, faces, deltas, names, joints, weights, face_region,
                   [str(n) for n in head_model.get("region_names") or []], str(head_model.get("name", "")))


def avatar_from_reply(reply: dict) -> AvatarData:
    """An ``avatar.get`` result (``{"avatar", "metadata", "arrays", "files"}``) -> AvatarData."""
    arrays = reply.get("arrays") or {}
    metadata = dict(reply.get("metadata") or {})
    avatar_id = str(reply.get("avatar") or metadata.get("avatar") or "")
    for name in REQUIRED_FILES:
        if not isinstance(arrays.get(name[:-4]), dict):
            raise AvatarDataError(f"avatar {avatar_id} has no {name}; it was not made by avatar.create "
                                  "(or by an older server): create it again")
    rig = rig_from_arrays(arrays["rig"], metadata)
    try:
        splats = splat_format.LocalSplats.from_arrays(arrays["splats"])
        splats.check_binding(len(rig.faces))
    except splat_format.SplatFormatError as exc:
        raise AvatarDataError(f"splats.npz: {exc}") from None
    camera = None
    if isinstance(metadata.get("portrait_camera"), dict):
        try:
            camera = camera_mod.Camera.from_wire(metadata["portrait_camera"])
        except ValueError:
            camera = None  # a camera is a convenience; the avatar imports without it
    return AvatarData(avatar_id, str(metadata.get("name") or avatar_id), metadata, rig, splats, camera)

"""Novel views with other expressions (GeoDiff4D animates the photo's expression; we
pose the fitted mesh with a few expressions) and their reprojected start images.

Why: a single photo shows one expression; an open jaw or closed eyes reveal surface the
photo never saw (mouth interior, eyelids). A ``ViewTarget`` carries a camera, the head
parameters of the view and the mesh posed with them; its ``TrainingView.head_params``
tell the optimizer to pose the avatar that way for this view. The start image for such
a view is the baseline's reprojection of the photo-pose mesh, carried over to the posed
mesh through the surface correspondence (same triangle, same barycentrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shared.camera import Camera

from ..render.normal_maps import vertex_normals
from ..views.masks import head_depth, novel_view_masks
from ..views.records import TrainingView
from ..views.surface import SurfaceView, render_surface, visible_in
from ..views.synthesis import SynthesisInput

# name -> ({expression component: weight}, extra jaw opening in radians about the jaw's +X axis)
EXPRESSION_VARIANTS: dict[str, tuple[dict[str, float], float]] = {
    "jaw_open": ({}, 0.3),
    "smile": ({"smile_left": 0.8, "smile_right": 0.8}, 0.04),
    "brows_up": ({"brow_raise_inner": 0.8, "brow_raise_outer_left": 0.8, "brow_raise_outer_right": 0.8}, 0.0),
    "eyes_closed": ({"blink_left": 1.0, "blink_right": 1.0}, 0.0),
    "jaw_half_open": ({}, 0.12),
    "eyes_left": ({}, 0.0),
    "eyes_right": ({}, 0.0),
}
# name -> gaze turn in radians about the head's +Y axis, both eyes (the eyeball under the lids shows)
EYE_TURNS: dict[str, float] = {"eyes_left": 0.35, "eyes_right": -0.35}


@dataclass
class ViewTarget:
    """One view to synthesize. vertices (V, 3): the mesh posed with ``head_params`` in
    head space; None means the photo's own pose (``SynthesisInput.vertices``)."""

    camera: Camera
    head_params: dict
    vertices: np.ndarray | None = None
    name: str = ""
    variant: str = "photo"


def variant_params(head_params: dict, expression_names: list[str], variant: str) -> dict | None:
    """The photo's head parameters with ``variant`` applied (None when the head model has
    none of the variant's named components and it moves no joint)."""
    weights, jaw_rad = EXPRESSION_VARIANTS[variant]
    eye_turn_rad = EYE_TURNS.get(variant, 0.0)
    usable = {n: w for n, w in weights.items() if n in expression_names}
    if not usable and jaw_rad == 0.0 and eye_turn_rad == 0.0:
        return None
    out = {k: np.array(v, dtype=np.float32, copy=True) for k, v in head_params.items()}
    for name, weight in usable.items():
        out["expr"][expression_names.index(name)] = weight
    out["jaw_pose"][0] += jaw_rad
    out["eyes_pose"][1] += eye_turn_rad   # two axis-angles (one per eye): both turn about +Y
    out["eyes_pose"][4] += eye_turn_rad
    return out


@torch.no_grad()
def pose_vertices(head_model, head_params: dict) -> np.ndarray:
    """The head model's mesh (V, 3) for one set of head parameters (numpy, head space)."""
    from ..head.model import HeadParams

    device = head_model.faces.device
    params = HeadParams.from_numpy({k: np.asarray(v, dtype=np.float32)[None] for k, v in head_params.items()},
                                   device=device)
    return head_model(params).vertices[0].cpu().numpy().astype(np.float64)


def expression_targets(head_model, inp: SynthesisInput, cameras: list[Camera],
                       variants: tuple[str, ...] = ("jaw_open", "smile", "eyes_closed")) -> list[ViewTarget]:
    """For each applicable variant, the photo's expression changed that way, seen by every
    camera in ``cameras`` (GeoDiff4D: fixed pose, animated expression)."""
    targets = []
    for variant in variants:
        params = variant_params(inp.head_params, list(inp.expression_names), variant)
        if params is None:
            continue
        vertices = pose_vertices(head_model, params)
        for i, camera in enumerate(cameras):
            targets.append(ViewTarget(camera, params, vertices, name=f"{variant} view {i}", variant=variant))
    return targets


def baseline_at(inp: SynthesisInput, camera: Camera) -> tuple[TrainingView, SurfaceView]:
    """The baseline's painting of the photo-pose mesh at ``camera`` and that mesh's surface
    there: what ``reprojected_variant_view`` carries over, the same for every variant."""
    return inp.reprojected(camera, inp.head_params, 0.0), render_surface(inp.vertices, inp.faces, [camera])[0]


def reprojected_variant_view(inp: SynthesisInput, target: ViewTarget, weight: float,
                             base: tuple[TrainingView, SurfaceView] | None = None) -> TrainingView:
    """The baseline's novel view (``SynthesisInput.reprojected``, whatever its
    policy) carried over to a mesh posed differently from the photo.

    The baseline paints the photo-pose mesh at ``target.camera``. Each pixel of the posed
    mesh (``target.vertices``) is a surface point; the same point of the photo-pose mesh
    (same triangle, same barycentrics) is looked up in that painting if the target camera
    sees it there, else the pixel gets the completed vertex colour and is not ``known``
    (an open mouth shows what no photo pixel can). For the photo's own pose the warp is the
    identity and the view equals the baseline's (a test keeps the two in step).
    ``base``: ``baseline_at(inp, target.camera)`` when several targets share a camera.
    """
    faces = inp.faces
    camera = target.camera
    base, base_surface = base if base is not None else baseline_at(inp, camera)
    photo_normals = vertex_normals(torch.as_tensor(inp.vertices, dtype=torch.float32),
                                   torch.as_tensor(faces, dtype=torch.long)).numpy()
    attrs = np.concatenate([inp.vertices, photo_normals, inp.vertex_colors.colors], axis=1)
    posed = render_surface(target.vertices, faces, [camera], vertex_attrs=attrs)[0]
    ys, xs = np.nonzero(posed.mask)
    points, normals, fill = (posed.attrs[ys, xs, s] for s in (slice(0, 3), slice(3, 6), slice(6, 9)))
    seen, px = visible_in(points, normals, camera, base_surface, min_facing=-1.0)
    ix = np.clip(px[:, 0].astype(np.int64), 0, camera.width - 1)
    iy = np.clip(px[:, 1].astype(np.int64), 0, camera.height - 1)
    colours = np.where(seen[:, None], base.image[iy, ix], fill)
    h, w = posed.mask.shape
    image = np.zeros((h, w, 3), np.float32)
    known = np.zeros((h, w), np.float32)
    # the same visual hull as the baseline's, by each pixel's point on the photo-pose mesh
    mask, loss_mask, hull = novel_view_masks(posed.mask, ys, xs, points, camera, inp.camera, inp.matte,
                                             head_depth(inp.vertices), photo_valid=inp.valid)
    colours[hull.no_head] = 0.0
    image[ys, xs] = colours
    known[ys, xs] = np.where(seen & ~hull.entry_outside, base.known[iy, ix], 0.0)
    return TrainingView(image=image, mask=mask, camera=camera, head_params=target.head_params, weight=weight,
                        loss_mask=loss_mask, normals=posed.normals_camera.astype(np.float32),
                        known=known, kind="reprojected", name=target.name,
                        meta={"known_fraction": float(known.sum() / max(mask.sum(), 1.0)), "variant": target.variant})

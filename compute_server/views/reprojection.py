"""Novel views of the head painted from the photo: reprojection, mirror, fill.

For every pixel of a target view that sees the head mesh, the surface point is projected
into the photo; if the photo sees that point unoccluded, its colour is taken (sharp, at
the photo's resolution). Otherwise the point's mirror image across the face's symmetry
plane is tried. What remains gets the smoothly completed vertex colours. The result is
the no-diffusion novel view (and the starting image the diffusion backends refine).
"""

from __future__ import annotations

import numpy as np

from shared.camera import Camera

from .masks import head_depth, novel_view_masks
from .records import TrainingView
from .scalp_texture import ScalpTexture, textured_colours
from .shading import Shading, mirrored_normals
from .surface import SurfaceView, bilinear_sample, render_surface, visible_in
from .vertex_colors import VertexColors

_MIRROR = np.array([-1.0, 1.0, 1.0])
MIN_FACING = 0.3       # cosine: surface seen at a grazing angle in the photo is too smeared to copy
MATTE_EROSION_PX = 2   # photo pixels at the matte's edge mix in the background


def _trusted_matte(matte: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.minimum_filter(matte, size=2 * MATTE_EROSION_PX + 1)


def reprojected_view(vertices: np.ndarray, faces: np.ndarray, colors: VertexColors, *, source_image: np.ndarray,
                     source_matte: np.ndarray, source_camera: Camera, source_surface: SurfaceView,
                     target_camera: Camera, head_params: dict, weight: float, name: str = "",
                     use_mirror: bool = True, scalp_texture: ScalpTexture | None = None,
                     scalp_faces: np.ndarray | None = None, shading: Shading | None = None,
                     relit_faces: np.ndarray | None = None, nape_faces: np.ndarray | None = None,
                     source_valid: np.ndarray | None = None) -> TrainingView:
    """Paint the posed mesh (V, 3) as seen by ``target_camera`` from the source photo.

    The mesh must be posed as in the photo (the same vertices the source_surface was
    rendered from). Returns a TrainingView whose mask and loss_mask are the mesh's
    coverage in the target view judged by the photo's silhouette
    (``masks.novel_view_masks``) and whose ``known`` marks photo-derived pixels. With a
    ``scalp_texture`` and ``scalp_faces`` (F,) bool, scalp the photo cannot see gets that
    texture instead of the smooth vertex colours (and ``nape_faces`` (F,) bool its fade
    below the scalp's border at the back, ``scalp_texture.textured_colours``). With the
    photo's ``shading`` and ``relit_faces`` (F,) bool, colours copied from the mirror side
    onto those faces are relit (see ``views.shading``). ``source_valid`` (H, W): where the
    source crop holds the photo's pixels (its padding says nothing about the head).
    """
    target = render_surface(vertices, faces, [target_camera], vertex_attrs=colors.colors)[0]
    h, w = target.mask.shape
    image = np.zeros((h, w, 3), np.float32)
    known = np.zeros((h, w), np.float32)
    ys, xs = np.nonzero(target.mask)
    pts = target.points[ys, xs]
    nrm = target.normals_world[ys, xs]
    filled = textured_colours(scalp_texture, pts, target.face_ids[ys, xs], target.attrs[ys, xs], scalp_faces,
                              nape_faces)
    colors_out = filled.copy()
    matte = _trusted_matte(source_matte)
    direct, px = visible_in(pts, nrm, source_camera, source_surface, min_facing=MIN_FACING)
    direct &= bilinear_sample(matte, px) > 0.5
    colors_out[direct] = _blend_by_facing(bilinear_sample(source_image, px[direct]), filled[direct],
                                          pts[direct], nrm[direct], source_camera)
    if use_mirror:
        mirror_pts, mirror_nrm = pts * _MIRROR, nrm * _MIRROR
        mirrored, mpx = visible_in(mirror_pts, mirror_nrm, source_camera, source_surface, min_facing=MIN_FACING)
        mirrored &= ~direct
        mirrored &= bilinear_sample(matte, mpx) > 0.5
        mirror_rgb = bilinear_sample(source_image, mpx[mirrored])
        if shading is not None and relit_faces is not None:
            relit = relit_faces[target.face_ids[ys, xs][mirrored]]
            ratio = shading.ratio(mirror_nrm[mirrored][relit], nrm[mirrored][relit])
            mirror_rgb[relit] = np.clip(mirror_rgb[relit] * ratio, 0.0, 1.0)
        colors_out[mirrored] = _blend_by_facing(mirror_rgb, filled[mirrored], mirror_pts[mirrored],
                                                mirror_nrm[mirrored], source_camera)
        from_photo = direct | mirrored
    else:
        from_photo = direct
    mask, loss_mask, hull = novel_view_masks(target.mask, ys, xs, pts, target_camera, source_camera, source_matte,
                                             head_depth(vertices), photo_valid=source_valid)
    colors_out[hull.no_head] = 0.0
    image[ys, xs] = colors_out
    known[ys, xs] = from_photo & ~hull.entry_outside
    return TrainingView(image=image, mask=mask, camera=target_camera, head_params=head_params, weight=weight,
                        loss_mask=loss_mask, normals=target.normals_camera.astype(np.float32), known=known,
                        kind="reprojected", name=name,
                        meta={"known_fraction": float(known.sum() / max(mask.sum(), 1.0))})


def _blend_by_facing(photo_rgb: np.ndarray, fill_rgb: np.ndarray, points: np.ndarray, normals: np.ndarray,
                     camera: Camera) -> np.ndarray:
    """Photo colours where the photo saw the surface head-on, fading to the smooth fill as
    the photo's view becomes grazing, so there is no seam where reprojection stops."""
    to_camera = camera.position[None] - points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-9)
    facing = np.sum(to_camera * normals, axis=1)
    t = np.clip((facing - MIN_FACING) / 0.3, 0.0, 1.0)
    weight = (t * t * (3 - 2 * t))[:, None]
    return weight * photo_rgb + (1 - weight) * fill_rgb


def mirror_camera(camera: Camera) -> Camera:
    """The camera that sees the mirror image (x -> -x in head space) of what ``camera`` sees,
    as a horizontally flipped picture."""
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    return Camera(flip @ camera.world_to_camera @ flip, camera.fx, camera.fy, camera.width - camera.cx, camera.cy,
                  camera.width, camera.height, camera.near, camera.far)


def mirror_axis_angle(aa: np.ndarray) -> np.ndarray:
    """A rotation (..., 3) mirrored across the x = 0 plane: axial vectors map to (x, -y, -z)."""
    return np.asarray(aa) * np.array([1.0, -1.0, -1.0], dtype=np.float32)


def mirror_head_params(params: dict, expression_names: list[str]) -> dict:
    """Head parameters of the mirrored head: left/right expression components and eyes swap."""
    out = {k: np.array(v, dtype=np.float32, copy=True) for k, v in params.items()}
    for key in ("rotation", "neck_pose", "jaw_pose"):
        out[key] = mirror_axis_angle(out[key])
    eyes = out["eyes_pose"].reshape(-1, 2, 3)
    out["eyes_pose"] = mirror_axis_angle(eyes[:, ::-1]).reshape(out["eyes_pose"].shape)
    out["translation"] = out["translation"] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    names = list(expression_names)
    expr = out["expr"]
    swapped = expr.copy()
    for i, name in enumerate(names):
        for a, b in (("left", "right"), ("right", "left")):
            if a in name:
                partner = name.replace(a, b)
                if partner in names:
                    swapped[..., i] = expr[..., names.index(partner)]
    out["expr"] = swapped
    return out


def mirrored_view(view: TrainingView, expression_names: list[str], weight: float,
                  shading: Shading | None = None, relit: np.ndarray | None = None) -> TrainingView:
    """The photo flipped left-right, seen by the mirrored camera: a second real-looking view
    of a (nearly symmetric) head, which helps the side the photo shows less of. With the
    photo's ``shading``, the pixels ``relit`` (H, W) bool (and with mesh normals) are relit
    for the normal their colour lands on, so the lit cheek is not copied onto the
    shadowed one."""
    flip = lambda a: None if a is None else np.ascontiguousarray(a[:, ::-1])  # noqa: E731
    normals = None
    image = view.image
    if view.normals is not None:
        normals = flip(view.normals) * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
        if shading is not None and relit is not None:
            on_mesh = relit & (np.linalg.norm(view.normals, axis=-1) > 0.5)
            n_world = view.normals[on_mesh] @ view.camera.world_to_camera[:3, :3]
            image = image.copy()
            image[on_mesh] = np.clip(image[on_mesh] * shading.ratio(n_world, mirrored_normals(n_world)), 0.0, 1.0)
    return TrainingView(image=flip(image), mask=flip(view.mask), camera=mirror_camera(view.camera),
                        head_params=mirror_head_params(view.head_params, expression_names), weight=weight,
                        loss_mask=flip(view.loss_mask), normals=normals, known=flip(view.known), kind="mirror",
                        name=f"{view.name} (mirrored)")

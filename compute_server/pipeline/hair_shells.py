"""The head model with its scalp and neck fitted to one real view's outline
(``views.hair_shell``, ``views.neck_fit``), for every path that makes an avatar from real
images: a photo, several photos, a clip.

Why here and not in views: the fits become the head model's static offset, so every view,
mask and training step after it sees the same scalp and neck, and the rig saved for Blender
carries them. The fits need the view's posed mesh and its coverage in the view's camera,
which the pipeline has at hand; views.hair_shell and views.neck_fit only do the geometry.
"""

from __future__ import annotations

import numpy as np

from ..head.model import HeadParams
from ..views.hair_shell import HairShell, fit_hair_shell
from ..views.neck_fit import fit_neck
from ..views.surface import render_surface
from . import previews


def with_shell_from_view(head_model, params: dict, camera, matte: np.ndarray,
                         valid: np.ndarray | None = None) -> tuple[object, HairShell | None]:
    """The head model with its scalp and neck fitted to the outline of one view (canonical
    head parameters ``params``, its ``camera``, the person's ``matte`` (H, W) and where the
    image holds real pixels, ``valid``), and the scalp's shell (None where the view gives no
    outline of the scalp). Both fits read the same posed mesh; they move different regions."""
    faces = head_model.faces.cpu().numpy()
    face_region = head_model.face_region.cpu().numpy()
    vertices = previews.posed_vertices(head_model, params).cpu().numpy().astype(np.float64)
    surface = render_surface(vertices, faces, [camera])[0]
    shell = fit_hair_shell(vertices, faces, face_region, head_model.region_names, camera,
                           matte, surface.mask, surface.face_ids, valid)
    neck = fit_neck(vertices, faces, face_region, head_model.region_names, camera, matte, valid)
    fits = [fitted for fitted in (shell, neck) if fitted is not None]
    if not fits:
        return head_model, None
    offset = sum(fitted.offset for fitted in fits)
    hp = HeadParams.from_numpy({k: np.asarray(v, np.float32).reshape(1, -1) for k, v in params.items()},
                               device=head_model.faces.device)
    change = head_model.rest_offset_for(hp, offset.astype(np.float32))
    return head_model.with_static_offset(head_model.static_offset + change), shell


def with_hair_shell(head_model, portrait, fit, index: int = 0) -> tuple[object, HairShell | None]:
    """``with_shell_from_view`` for photo ``index`` of a portrait fit."""
    return with_shell_from_view(head_model, fit.head_params(index), fit.images[index].camera, portrait.matte,
                                getattr(portrait, "valid", None))

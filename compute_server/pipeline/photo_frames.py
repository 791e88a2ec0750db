"""Several photos of one person as the frames of a clip (issue 12: "each photo is a frame").

Why: with a front, a left and a right photo, the old photo path trained every photo and its
mirror image at full weight and painted the completion views from the first photo alone,
also at full weight where a side photo had seen the real surface; where they disagreed the
optimizer averaged them (a ghost of one photo's profile on another's side). The clip path
already does what several real views need: completion only where no photo saw the surface,
no mirrors of real views, and each view's expression and pose refined while training.
Here the photos become that path's frames. The first photo leads (it seeds the Gaussians'
colours and the completion views, and is the avatar's reference pose), as in the
single-photo path: the user gives the front photo first.
"""

from __future__ import annotations

import numpy as np

from ..views.real_views import real_view
from ..views.records import TrainingView
from ..views.surface import SurfaceView
from . import previews
from .video_avatar import ClipFrames


def posed_vertices(head_model, params: dict) -> np.ndarray:
    """The head mesh's vertices (V, 3) as float64 numpy, for one set of canonical head
    parameters (``previews.posed_vertices``, which renders with them, in the views' dtype)."""
    return previews.posed_vertices(head_model, params).cpu().numpy().astype(np.float64)


def photo_view(head_model, portrait, fit, index: int) -> tuple[TrainingView, np.ndarray, SurfaceView]:
    """Photo ``index`` as a training view (``views.real_views``): its fitted parameters and
    camera; with the posed vertices and the mesh surface it was made on."""
    params = fit.head_params(index)
    vertices = posed_vertices(head_model, params)
    view, surface = real_view(portrait.image, portrait.matte, getattr(portrait, "valid", None), fit.images[index].camera,
                              vertices, head_model.faces.cpu().numpy(), head_model.face_region.cpu().numpy(),
                              head_model.region_names, params, portrait.name)
    return view, vertices, surface


def photo_training_frames(head_model, portraits: list, fit) -> ClipFrames:
    """One TrainingView per photo (its fitted parameters and camera), in the user's order, with
    the count of photos that saw each triangle."""
    seen = np.zeros(head_model.n_faces, np.int64)
    views = []
    for i, portrait in enumerate(portraits):
        view, _, surface = photo_view(head_model, portrait, fit, i)
        view.meta = {"photo": i}
        views.append(view)
        seen_ids = surface.face_ids[surface.mask & (view.mask > 0.5)]
        seen[np.unique(seen_ids[seen_ids >= 0])] += 1
    warnings = [w for p in portraits for w in p.warnings]
    return ClipFrames(views=views, sources=portraits, fit=fit, seen_faces=seen,
                      report={"photos": len(portraits)},
                      warnings=warnings, is_clip=False)

"""A real image of the person (a photo, a clip frame) as a training view.

Why one place: photos and clip frames are trained the same way (the loss on the person's
matte within the head region, the crop's padding and black bars saying nothing, the scalp's
soft rim counting little, the mesh's normals for the normal term); when the two paths built
their views apart, a rule added to one was missed in the other.
"""

from __future__ import annotations

import numpy as np

from shared.camera import Camera

from .masks import head_region, real_view_loss_mask, scalp_zone
from .records import TrainingView
from .surface import SurfaceView, render_surface


def real_view(image: np.ndarray, matte: np.ndarray, valid: np.ndarray | None, camera: Camera, vertices: np.ndarray,
              faces: np.ndarray, face_region: np.ndarray, region_names: list[str], head_params: dict, name: str,
              meta: dict | None = None) -> tuple[TrainingView, SurfaceView]:
    """The training view of ``image`` (H, W, 3) float with the person's ``matte`` (H, W), the
    crop's ``valid`` pixels (None: all), seen by ``camera`` on the mesh posed as ``vertices``
    (V, 3) with ``head_params``; and the mesh surface it was made on."""
    surface = render_surface(vertices, faces, [camera])[0]
    region = head_region(surface.mask, camera, vertices, faces, face_region, region_names)
    mask = (matte * (1.0 if valid is None else valid) * region).astype(np.float32)
    loss_mask = real_view_loss_mask(matte, valid, scalp_zone(surface.mask, surface.face_ids, face_region, region_names))
    view = TrainingView(image=image, mask=mask, camera=camera, head_params=head_params, weight=1.0,
                        loss_mask=loss_mask, normals=surface.normals_camera.astype(np.float32), kind="input",
                        name=name, meta=meta if meta is not None else {})
    return view, surface

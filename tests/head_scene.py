"""The built-in head as test scenes: posed and seen by one camera (the outline-fit tests), or
at rest with a smooth colour per vertex (the trainer's tests)."""

from __future__ import annotations

import numpy as np
import torch

from compute_server.head.model import HeadParams, load_head_model
from compute_server.views.sampling import head_centre
from compute_server.views.surface import render_surface
from shared.camera import orbit_camera


def posed_head_scene(size: int, distance: float = 1.0, fov_y_deg: float = 25.0) -> dict:
    """The built-in head turned a little (a fitted offset must turn with it), its camera
    from the front, and the mesh's coverage there."""
    model = load_head_model()
    params = HeadParams.zeros(model, 1)
    params.rotation[0] = torch.tensor([0.05, 0.25, 0.03])
    params.neck_pose[0] = torch.tensor([0.1, 0.0, 0.0])
    with torch.no_grad():
        vertices = model(params).vertices[0].numpy().astype(np.float64)
    camera = orbit_camera(0, 0, distance, target=head_centre(vertices), width=size, height=size, fov_y_deg=fov_y_deg)
    faces, region = model.faces.numpy(), model.face_region.numpy()
    surface = render_surface(vertices, faces, [camera])[0]
    return {"model": model, "params": params, "vertices": vertices, "faces": faces, "region": region,
            "camera": camera, "surface": surface}


def vertices_of(scene: dict, names) -> np.ndarray:
    """Indices of the vertices of the regions ``names``."""
    model = scene["model"]
    ids = [model.region_names.index(n) for n in names if n in model.region_names]
    return np.unique(scene["faces"][np.isin(scene["region"], ids)])


def rest_head_coloured() -> tuple:
    """(model, head params as numpy arrays, vertices (V, 3), faces, face regions, vertex
    colours (V, 3)): the built-in head at rest, coloured by a smooth ramp over its extent so
    that every view of it has structure to learn."""
    model = load_head_model()
    params = {k: v[0] for k, v in HeadParams.zeros(model).to_numpy().items()}
    with torch.no_grad():
        vertices = model(HeadParams.zeros(model, 1)).vertices[0].numpy().astype(np.float64)
    colours = np.clip(0.5 + 3.0 * (vertices - vertices.mean(0)), 0, 1)
    return model, params, vertices, model.faces.numpy(), model.face_region.numpy(), colours

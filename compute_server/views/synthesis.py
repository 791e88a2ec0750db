"""View synthesizers: the novel training views an avatar is optimized against besides
its photos.

A synthesizer gets everything known about the photo and the fitted head
(``SynthesisInput``) and a list of target cameras, and returns ``TrainingView`` records.
The ``none`` backend (``ReprojectionSynthesizer``) paints the mesh from the photo by
reprojection, mirror symmetry and smooth fill; diffusion backends
(``compute_server.diffusion``) start from those same views and repaint what the photo
could not see, conditioned on the mesh's normal maps (GAF).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from shared.camera import Camera

from .reprojection import reprojected_view
from .records import TrainingView
from .scalp_texture import ScalpTexture, photo_scalp_texture, textured_colours
from .shading import Shading, photo_shading, relit_faces
from .surface import SurfaceView, render_surface
from .vertex_colors import VertexColors, complete_vertex_colors

Progress = Callable[[float, str], None]


@dataclass
class SynthesisInput:
    """What a synthesizer may use. Arrays are numpy, head space, the photo's pose.

    image: (H, W, 3) the aligned photo crop in [0, 1]; matte: (H, W); camera: its camera.
    head_params: the photo's fitted head parameters (one frame, HEAD_PARAM_KEYS).
    vertices: (V, 3) the mesh posed like the photo; faces: (F, 3); rest_vertices: (V, 3)
    the neutral mesh of this identity; face_region (F,), region_names: the model's regions.
    vertex_colors: the completed colours; surface: the photo camera's SurfaceView.
    expression_names: the head model's components. seed: for anything random.
    scalp_texture: hair texture for the scalp the photo cannot see (None: smooth fill).
    shading: the photo's low-frequency light, taken out of mirrored colours (None: kept).
    valid: (H, W) where the crop holds the photo's own pixels (None: everywhere); beyond
    the photo's frame nothing is known about the head.
    """

    image: np.ndarray
    matte: np.ndarray
    camera: Camera
    head_params: dict
    vertices: np.ndarray
    faces: np.ndarray
    rest_vertices: np.ndarray
    face_region: np.ndarray
    region_names: list[str]
    vertex_colors: VertexColors
    surface: SurfaceView
    expression_names: list[str]
    seed: int = 0
    scalp_texture: ScalpTexture | None = None
    shading: Shading | None = None
    valid: np.ndarray | None = None

    def scalp_faces(self) -> np.ndarray | None:
        """(F,) bool: the faces of the scalp region (None for a model without one)."""
        if "scalp" not in self.region_names:
            return None
        return self.face_region == self.region_names.index("scalp")

    def surface_colours(self, points: np.ndarray, face_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """(N, 3) the colours the novel views give surface points (N, 3) on faces (N,) at
        barycentrics (N, 3) where the photo cannot see them: the completed vertex colours,
        the scalp's hair texture on the scalp and fading out over the nape
        (``training.init``'s fill)."""
        colours = np.einsum("nk,nkc->nc", bary, self.vertex_colors.colors[self.faces[face_ids]])
        return textured_colours(self.scalp_texture, points, face_ids, colours, self.scalp_faces(), self.nape_faces())

    def nape_faces(self) -> np.ndarray | None:
        """(F,) bool: the neck's faces, where the hair texture fades out below the scalp."""
        if "neck" not in self.region_names:
            return None
        return self.face_region == self.region_names.index("neck")

    def reprojected(self, camera: Camera, head_params: dict, weight: float, name: str = "") -> TrainingView:
        """The no-diffusion view of this head from ``camera`` (the photo reprojected, its
        mirror, the scalp texture, the completed colours): the ``none`` backend's view and
        the starting image of every diffusion backend."""
        return reprojected_view(self.vertices, self.faces, self.vertex_colors, source_image=self.image,
                                source_matte=self.matte, source_camera=self.camera, source_surface=self.surface,
                                target_camera=camera, head_params=head_params, weight=weight, name=name,
                                scalp_texture=self.scalp_texture, scalp_faces=self.scalp_faces(),
                                nape_faces=self.nape_faces(),
                                shading=self.shading, relit_faces=relit_faces(self.face_region, self.region_names),
                                source_valid=self.valid)


def synthesis_input(image: np.ndarray, matte: np.ndarray, camera: Camera, head_params: dict, vertices: np.ndarray,
                    rest_vertices: np.ndarray, faces: np.ndarray, face_region: np.ndarray, region_names: list[str],
                    expression_names: list[str], *, seed: int = 0, surface: SurfaceView | None = None,
                    colour_matte: np.ndarray | None = None, valid: np.ndarray | None = None) -> SynthesisInput:
    """Everything the synthesizers use, from one photo of a fitted head: its light
    (``views.shading``), the completed vertex colours (relit where mirrored), the hair
    texture of its scalp. Arrays as in ``SynthesisInput``; ``colour_matte`` (H, W) is the
    matte the vertex colours are sampled under (default ``matte``); ``valid`` (H, W) the
    crop's own photo pixels."""
    if surface is None:
        surface = render_surface(vertices, faces, [camera])[0]
    shading = photo_shading(image, matte, camera, surface, face_region, region_names)
    colors = complete_vertex_colors(vertices, faces, face_region, region_names, rest_vertices, image,
                                    matte if colour_matte is None else colour_matte, camera, surface, shading)
    texture = photo_scalp_texture(image, matte, camera, surface, vertices, faces, face_region, region_names, seed)
    return SynthesisInput(image=image, matte=matte, camera=camera, head_params=head_params, vertices=vertices,
                          faces=faces, rest_vertices=rest_vertices, face_region=face_region,
                          region_names=region_names, vertex_colors=colors, surface=surface,
                          expression_names=expression_names, seed=seed, scalp_texture=texture, shading=shading,
                          valid=valid)


class ViewSynthesizer(Protocol):
    """Makes training views for target cameras. ``name`` is what server.info lists."""

    name: str

    def synthesize(self, inp: SynthesisInput, cameras: list[Camera], *, weight: float,
                   progress: Progress | None = None) -> list[TrainingView]: ...


class ReprojectionSynthesizer:
    """The ``none`` backend: reprojection + mirror + smooth fill, no learned prior."""

    name = "none"

    def synthesize(self, inp: SynthesisInput, cameras: list[Camera], *, weight: float,
                   progress: Progress | None = None) -> list[TrainingView]:
        views = []
        for i, camera in enumerate(cameras):
            views.append(inp.reprojected(camera, inp.head_params, weight, name=f"novel view {i}"))
            if progress:
                progress((i + 1) / len(cameras), f"novel view {i + 1} of {len(cameras)}")
        return views


@dataclass
class PriorRequest:
    """Current renders of the avatar at random novel cameras, for a denoising prior.

    renders: (K, H, W, 3) in [0, 1] over a white background; alphas: (K, H, W);
    normal_maps: (K, H, W, 3) the mesh's camera-space normals (OpenCV axes), 0 off the mesh;
    mesh_masks: (K, H, W) mesh coverage; cameras: the K cameras; reference_image /
    reference_mask: the photo crop and its matte; step: optimizer iteration; seed.
    """

    renders: np.ndarray
    alphas: np.ndarray
    normal_maps: np.ndarray
    mesh_masks: np.ndarray
    cameras: list[Camera]
    reference_image: np.ndarray
    reference_mask: np.ndarray
    step: int
    seed: int


class DenoisingPrior(Protocol):
    """GAF's iteratively-denoised pseudo ground truth, used inside the optimization.

    refresh_every: iterations between refreshes; views_per_refresh: K; weight: loss weight
    of the pseudo views relative to the photo. ``pseudo_ground_truth`` noises the renders'
    latents to a random t and denoises them conditioned on the normal maps; it must call
    ``check_cancel`` at every denoising step.
    """

    refresh_every: int
    views_per_refresh: int
    weight: float

    def pseudo_ground_truth(self, request: PriorRequest, check_cancel: Callable[[], None]) -> np.ndarray: ...


def synthesizer_names() -> list[str]:
    return [ReprojectionSynthesizer.name]

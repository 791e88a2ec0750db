"""The built-in model's face: MediaPipe points -> symmetric, upright, neutral face in head space.

Steps (each a pure function elsewhere in this package):
1. detect the 478 landmarks on the source portrait and scale to metres by the
   interpupillary distance;
2. an initial frame (x from the right to the left iris, y from chin to forehead);
3. find the symmetry plane and mirror partners, rotate the plane onto x = 0, symmetrise;
4. pitch: the forehead-top (MediaPipe 10) to chin (152) line is made vertical, which puts
   the face in a natural upright posture (the soft-tissue profile is close to vertical);
5. relax the source smile to a neutral closed mouth and symmetrise again;
6. origin: x on the symmetry plane, y at the iris centres, z at the iris centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import face_source, symmetry
from .face_topology import FaceTopology, face_topology
from .neutralize import NeutralMouthSettings, neutralize_mouth

FOREHEAD_TOP = 10   # MediaPipe: top of the forehead on the midline
CHIN_BOTTOM = 152   # MediaPipe: lowest chin point on the midline


@dataclass(frozen=True)
class FaceSettings:
    interpupillary_m: float = 0.063
    mouth: NeutralMouthSettings = NeutralMouthSettings()


@dataclass(frozen=True)
class FaceShape:
    """The prepared face: points (478, 3) metres in head space (468 mesh + 10 iris),
    partner (478,) mirror partner of every point, topology (triangles and loops)."""

    points: np.ndarray
    partner: np.ndarray
    topology: FaceTopology


def initial_frame(points: np.ndarray) -> np.ndarray:
    """Rotate head-axis points (N, 3) so x runs right iris -> left iris and y chin -> forehead."""
    x = points[face_source.IRIS_CENTRE_LEFT] - points[face_source.IRIS_CENTRE_RIGHT]
    x /= np.linalg.norm(x)
    y = points[FOREHEAD_TOP] - points[CHIN_BOTTOM]
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    return points @ np.stack([x, y, np.cross(x, y)]).T


def upright(points: np.ndarray) -> np.ndarray:
    """Rotate about +X so the forehead-top to chin line is vertical (points symmetric about x = 0)."""
    d = points[FOREHEAD_TOP] - points[CHIN_BOTTOM]
    angle = np.arctan2(d[2], d[1])  # lean of the line towards +Z
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return points @ rotation.T


def prepare_face(points_normalised: np.ndarray, image_size: tuple[int, int],
                 settings: FaceSettings = FaceSettings()) -> FaceShape:
    """Normalised landmarks (478, 3) of the source portrait -> FaceShape (see module docstring)."""
    width, height = image_size
    points = face_source.landmarks_to_head_axes(points_normalised, width, height, settings.interpupillary_m)
    points = initial_frame(points)
    points, partner = symmetry.align_symmetry_plane(points)
    points = upright(symmetry.symmetrize(points, partner))
    topology = face_topology(points[:, :2])
    points = symmetry.symmetrize(neutralize_mouth(points, topology, settings.mouth), partner)
    irises = points[[face_source.IRIS_CENTRE_RIGHT, face_source.IRIS_CENTRE_LEFT]].mean(axis=0)
    points = points - np.array([0.0, irises[1], irises[2]])
    return FaceShape(points=points, partner=partner, topology=topology)


def build_face() -> FaceShape:
    """Run the whole face preparation on the bundled source portrait."""
    image = face_source.source_portrait()
    return prepare_face(face_source.detect_landmarks(image), (image.shape[1], image.shape[0]))

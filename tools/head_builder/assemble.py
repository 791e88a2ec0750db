"""Assemble the built-in head's geometry: face + closure + sockets + mouth cavity, eyeballs, teeth.

The skin (face, cranium/ears/neck closure, eye sockets, mouth cavity) is one closed,
consistently oriented surface; eyeballs and teeth rows are separate closed components.
Vertex order: the 468 MediaPipe face points first (so face-mesh index = vertex index),
then closure, sockets, cavity, right eyeball, left eyeball, teeth.

Head-space origin of the built-in model: on the symmetry plane, at the height of the iris
centres, halfway between the nose tip and the back of the head (a head-centred origin
makes orbiting cameras simple).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compute_server.head import mesh_topology as mt

from . import eyes, mouth, symmetry
from .closure import ClosureSettings, build_closure
from .face_shape import FaceShape
from .head_volume import HeadVolume, HeadVolumeSettings, build_head_volume

REGION_NAMES = ["face", "scalp", "neck", "ear", "eyeball", "iris", "mouth_interior", "teeth", "eye_socket", "neck_base"]
NOSE_TIP = 1

# what each vertex belongs to
PART_FACE, PART_CLOSURE, PART_SOCKET, PART_CAVITY, PART_EYE_RIGHT, PART_EYE_LEFT, PART_TEETH = range(7)


@dataclass(frozen=True)
class GeometrySettings:
    volume: HeadVolumeSettings = HeadVolumeSettings()
    closure: ClosureSettings = ClosureSettings()
    eyes: eyes.EyeSettings = eyes.EyeSettings()
    mouth: mouth.MouthSettings = mouth.MouthSettings()


@dataclass
class HeadGeometry:
    """The assembled neutral head (see module docstring for vertex order).

    vertices (V, 3), faces (F, 3) outward, face_region (F,) into REGION_NAMES, vertex_part
    (V,) PART_* code, teeth_lower (V,) / cavity_lower (V,) bool, eye_centres (2, 3) (right,
    left), landmark_vertex (478,) vertex of each MediaPipe landmark, face (the FaceShape,
    moved to the model origin), volume (the head volume, model origin), closure_part (F,)
    head-volume primitive of closure faces (-1 elsewhere), socket_rim (V,) for socket
    vertices the lid-rim vertex they continue (-1 elsewhere), socket_depth (V,) 0 at the rim
    to 1 at the back of the socket."""

    vertices: np.ndarray
    faces: np.ndarray
    face_region: np.ndarray
    vertex_part: np.ndarray
    teeth_lower: np.ndarray
    cavity_lower: np.ndarray
    eye_centres: np.ndarray
    landmark_vertex: np.ndarray
    face: FaceShape
    volume: HeadVolume
    closure_part: np.ndarray
    socket_rim: np.ndarray
    socket_depth: np.ndarray

    @property
    def skin_faces(self) -> np.ndarray:
        """Faces of the closed skin surface (face, closure, sockets, cavity)."""
        part = self.vertex_part[self.faces[:, 0]]
        return self.faces[part <= PART_CAVITY]


def _origin_shift(points: np.ndarray, settings: HeadVolumeSettings) -> np.ndarray:
    back_z = points[168, 2] + 0.004 - settings.head_length_m
    return np.array([0.0, 0.0, -0.5 * (points[NOSE_TIP, 2] + back_z)])


class _Parts:
    """Accumulates mesh parts: vertices with per-vertex attributes, faces with regions."""

    def __init__(self):
        self.vertices, self.part, self.faces, self.regions, self.closure_part = [], [], [], [], []
        self.attrs = {"socket_rim": [], "socket_depth": [], "cavity_lower": [], "teeth_lower": []}
        self.n = 0

    def add_vertices(self, vertices: np.ndarray, part: int, **attrs) -> int:
        """Append vertices (K, 3); returns the index of the first one."""
        k = len(vertices)
        defaults = {"socket_rim": -1, "socket_depth": 0.0, "cavity_lower": False, "teeth_lower": False}
        for key, default in defaults.items():
            self.attrs[key].append(np.broadcast_to(attrs.get(key, default), (k,)))
        self.vertices.append(vertices)
        self.part.append(np.full(k, part))
        first, self.n = self.n, self.n + k
        return first

    def add_faces(self, faces: np.ndarray, region, closure_part=-1) -> None:
        """Append faces (G, 3) in global indices with their region index (scalar or (G,))."""
        self.faces.append(np.asarray(faces, dtype=np.int64))
        self.regions.append(np.broadcast_to(region, (len(faces),)))
        self.closure_part.append(np.broadcast_to(closure_part, (len(faces),)))


def build_geometry(face: FaceShape, settings: GeometrySettings = GeometrySettings()) -> HeadGeometry:
    """Everything but the rig: see the module docstring."""
    s = settings
    topo = face.topology
    points = face.points + _origin_shift(face.points, s.volume)
    centres = eyes.eyeball_centres(points, s.eyes)
    face_pts = eyes.lids_onto_eyeballs(points[:468], topo.faces, (topo.eye_right, topo.eye_left), centres,
                                       topo.oval, s.eyes)
    points = np.concatenate([symmetry.symmetrize(face_pts, face.partner[:468]), points[468:]])
    face = FaceShape(points=points, partner=face.partner, topology=topo)
    volume = build_head_volume(points, topo.oval, s.volume)

    parts = _Parts()
    _add_skin(parts, points, topo, centres, volume, s)
    n_skin_faces = sum(len(f) for f in parts.faces)
    landmark_vertex = np.r_[np.arange(468), np.zeros(10, np.int64)]
    for k, iris in enumerate((eyes.IRIS_RIGHT, eyes.IRIS_LEFT)):
        ball = eyes.build_eyeball(points, iris, centres[k], s.eyes)
        first = parts.add_vertices(ball.vertices, PART_EYE_RIGHT + k)
        parts.add_faces(ball.faces + first, np.where(ball.is_iris, REGION_NAMES.index("iris"),
                                                     REGION_NAMES.index("eyeball")))
        for mp_index, local in ball.landmark_vertex.items():
            landmark_vertex[mp_index] = first + local
    teeth = mouth.build_builtin_teeth(points, topo.mouth, s.mouth)
    first = parts.add_vertices(teeth.vertices, PART_TEETH, teeth_lower=teeth.is_lower)
    parts.add_faces(teeth.faces + first, REGION_NAMES.index("teeth"))

    vertices = np.concatenate(parts.vertices)
    faces = np.concatenate(parts.faces)
    skin = mt.orient_consistently(faces[:n_skin_faces])
    if mt.signed_volume(vertices, skin) < 0:
        raise ValueError("head skin is oriented inwards")
    faces[:n_skin_faces] = skin
    attrs = {key: np.concatenate(value) for key, value in parts.attrs.items()}
    return HeadGeometry(vertices=vertices, faces=faces, face_region=np.concatenate(parts.regions),
                        vertex_part=np.concatenate(parts.part), teeth_lower=attrs["teeth_lower"].astype(bool),
                        cavity_lower=attrs["cavity_lower"].astype(bool), eye_centres=np.array(centres),
                        landmark_vertex=landmark_vertex, face=face, volume=volume,
                        closure_part=np.concatenate(parts.closure_part), socket_rim=attrs["socket_rim"].astype(np.int64),
                        socket_depth=attrs["socket_depth"].astype(np.float64))


def _add_skin(parts: _Parts, points: np.ndarray, topo, centres, volume: HeadVolume, s: GeometrySettings) -> None:
    """Face, closure, eye sockets and mouth cavity: the one closed skin surface."""
    parts.add_vertices(points[:468], PART_FACE)
    parts.add_faces(topo.faces, REGION_NAMES.index("face"))
    closure = build_closure(points, topo.faces, topo.oval, volume, s.closure)
    parts.add_vertices(closure.vertices, PART_CLOSURE)
    parts.add_faces(closure.faces, _closure_regions(closure.part, closure, points, volume), closure.part)
    for rim, centre in zip((topo.eye_right, topo.eye_left), centres):
        socket_v, socket_f, rim_of, depth_of = eyes.build_socket(points, rim, centre, parts.n, s.eyes)
        parts.add_vertices(socket_v, PART_SOCKET, socket_rim=rim_of, socket_depth=depth_of)
        parts.add_faces(socket_f, REGION_NAMES.index("eye_socket"))
    cavity = mouth.build_cavity(points, topo.mouth, parts.n, s.mouth)
    parts.add_vertices(cavity.vertices, PART_CAVITY, cavity_lower=cavity.is_lower)
    parts.add_faces(cavity.faces, REGION_NAMES.index("mouth_interior"))


def _closure_regions(parts: np.ndarray, closure, points: np.ndarray, volume: HeadVolume) -> np.ndarray:
    """Region of each closure face from its head-volume primitive (jaw: face above the jaw
    ellipsoid's centre, neck below it), except that skin behind the ears and above the
    nape is scalp whichever primitive made it (``_behind_ears_above_nape``)."""
    all_points = np.concatenate([points[:468], closure.vertices])
    centroids = all_points[closure.faces].mean(axis=1)
    names = np.array(["scalp", "face", "neck", "ear", "neck_base"])[parts]
    names = np.where((parts == 1) & (centroids[:, 1] < volume.jaw.centre[1]), "neck", names)
    hair = _behind_ears_above_nape(centroids, volume) & np.isin(names, ["face", "neck"])
    names = np.where(hair, "scalp", names)
    return np.array([REGION_NAMES.index(str(x)) for x in names])


def _behind_ears_above_nape(points: np.ndarray, volume: HeadVolume) -> np.ndarray:
    """(N,) bool: behind the ears' back edge and above the nape hairline, which on most
    heads runs about one ear height below the ears' centres (a little under the earlobes).

    Why: regions steer the colour completion of unseen skin. The jaw and neck primitives
    reach up the back of the head to ear level; labelled face or neck, the back of every
    head came out skin-coloured below the crown instead of continuing the hair.
    """
    s = volume.settings
    ear_centre = np.mean([ear.centre for ear in volume.ears], axis=0)
    behind = points[:, 2] < ear_centre[2] - 0.5 * s.ear_width_m
    above_nape = points[:, 1] > ear_centre[1] - s.ear_height_m
    return behind & above_nape

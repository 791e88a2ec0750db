"""Generate the built-in head model asset.

    python -m tools.head_builder.generate --out compute_server/head/assets/builtin_head.npz

Steps: face from MediaPipe on the bundled portrait (``face_shape``), geometry
(``assemble``), rig (``rig``), identity and expression components (``identity``,
``expressions``), landmark embedding, validation, and a byte-reproducible .npz
(``model_data.save_model_npz``). Deterministic: the same library versions give the same
file. Pose correctives (FLAME's posedirs) are zero for the built-in model: its jaw and
neck deformations come from the smooth skinning weights alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from compute_server.head.model_data import HeadModelData, save_model_npz

from . import assemble, expressions, face_shape, identity, rig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, "compute_server", "head", "assets", "builtin_head.npz")
GENERATOR_VERSION = 1


def landmark_embedding(faces: np.ndarray, landmark_vertex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric embedding of vertex landmarks: for each vertex, one face that contains it
    and the one-hot barycentric weight of that corner. Returns (lmk_face_idx (L,), lmk_bary (L, 3))."""
    first_face = {}
    for f, tri in enumerate(faces.tolist()):
        for corner, v in enumerate(tri):
            first_face.setdefault(v, (f, corner))
    face_idx = np.array([first_face[int(v)][0] for v in landmark_vertex], dtype=np.int64)
    bary = np.zeros((len(landmark_vertex), 3))
    bary[np.arange(len(landmark_vertex)), [first_face[int(v)][1] for v in landmark_vertex]] = 1.0
    return face_idx, bary


def build_model_data(log=lambda msg: None) -> HeadModelData:
    """Run the whole generator -> HeadModelData (float64)."""
    t0 = time.perf_counter()
    face = face_shape.build_face()
    log(f"face: {len(face.points)} landmarks, {len(face.topology.faces)} triangles ({time.perf_counter() - t0:.1f} s)")
    geo = assemble.build_geometry(face)
    log(f"geometry: {len(geo.vertices)} vertices, {len(geo.faces)} faces ({time.perf_counter() - t0:.1f} s)")
    head_rig = rig.build_rig(geo)
    shape_names, shapedirs = identity.build_identity(geo)
    expression_names, exprdirs = expressions.build_expressions(geo)
    log(f"components: {len(shape_names)} identity, {len(expression_names)} expression ({time.perf_counter() - t0:.1f} s)")
    lmk_face_idx, lmk_bary = landmark_embedding(geo.faces, geo.landmark_vertex)
    n = len(geo.vertices)
    return HeadModelData(
        name="builtin",
        v_template=geo.vertices,
        shapedirs=shapedirs,
        exprdirs=exprdirs,
        posedirs=np.zeros((n * 3, 36)),
        J_regressor=head_rig.J_regressor,
        parents=head_rig.parents,
        lbs_weights=head_rig.lbs_weights,
        faces=geo.faces,
        face_region=geo.face_region,
        region_names=list(assemble.REGION_NAMES),
        expression_names=expression_names,
        shape_names=shape_names,
        lmk_face_idx=lmk_face_idx,
        lmk_bary=lmk_bary,
        landmark_mp_index=np.arange(len(geo.landmark_vertex)),
        notes=[
            f"HeadSplat built-in open head, generator version {GENERATOR_VERSION}",
            "face: MediaPipe face-mesh topology, positions from MediaPipe's landmarker on scikit-image's "
            "public-domain astronaut portrait, symmetrised and relaxed to a neutral mouth",
            "identity coefficients are in standard deviations; expression coefficient 1 = full expression",
            "pose correctives (posedirs) are zero",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate HeadSplat's built-in open head model.")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output .npz (default: the package asset)")
    args = parser.parse_args(argv)
    data = build_model_data(log=lambda msg: print(msg, file=sys.stderr))
    save_model_npz(data, args.out, generator_version=np.array(GENERATOR_VERSION))
    print(f"wrote {args.out}: {data.n_verts} vertices, {data.n_faces} faces, {data.n_shape} identity and "
          f"{data.n_expr} expression components, {len(data.landmark_mp_index)} landmarks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generator of the built-in open head model (``compute_server/head/assets/builtin_head.npz``).

The built-in head is made entirely by this package, deterministically and offline, so
HeadSplat works without the licensed FLAME files: the face is MediaPipe's face-mesh
topology with 3-D positions from MediaPipe's own landmarker run on scikit-image's public
domain astronaut portrait, symmetrised and relaxed to a neutral expression; a generated
cranium, ears, neck, eye sockets, eyeballs, mouth cavity and teeth close it into a full
head; joints, skin weights, identity and expression components are computed on it.

Regenerate the asset with ``python -m tools.head_builder.generate --out
compute_server/head/assets/builtin_head.npz``. This is a build tool, kept outside
``compute_server`` on purpose: the server never imports it and only reads the committed asset
(``compute_server/head/registry.py``); ``tests/test_head_builtin_generate.py`` regenerates the
asset and compares it with the committed one. The mesh maths it shares with the runtime
(Laplacians, harmonic interpolation) is ``compute_server/head/mesh_fields.py``.
"""

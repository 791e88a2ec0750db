"""Generator of the built-in open head model (``assets/builtin_head.npz``).

The built-in head is made entirely by this package, deterministically and offline, so
HeadSplat works without the licensed FLAME files: the face is MediaPipe's face-mesh
topology with 3-D positions from MediaPipe's own landmarker run on scikit-image's public
domain astronaut portrait, symmetrised and relaxed to a neutral expression; a generated
cranium, ears, neck, eye sockets, eyeballs, mouth cavity and teeth close it into a full
head; joints, skin weights, identity and expression components are computed on it.

Regenerate the asset with ``python -m compute_server.head.builtin.generate --out
compute_server/head/assets/builtin_head.npz``. Nothing here runs at server start: the
server only reads the committed asset (``registry.py``).
"""

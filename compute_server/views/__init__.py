"""Training views for the avatar optimizer: the input portrait, its mirror, and synthesized
novel views (reprojection + symmetry baseline here; diffusion backends in ``diffusion/``)."""

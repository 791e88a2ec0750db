"""The trainer: where the Gaussians start (``init``) and how they are fitted to the training
views (``optimize``).

Why a package of its own: it composes the splat library (``splats/``: model, binding,
rasterizers, losses, densification) with the training views (``views/``), the head model
and the diffusion prior. Keeping it out of ``splats/`` lets the splat library depend on
nothing above it, as gsplat keeps its ``simple_trainer`` apart from the library.
"""

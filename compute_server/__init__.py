"""HeadSplat compute server: fits a head model to portraits and videos, synthesizes unseen
views, optimizes triangle-bound 3D Gaussians and renders shots for the Blender add-on."""

from shared import __version__  # one version for the whole distribution

__all__ = ["__version__"]

"""Triangle-bound 3D Gaussians: model, rasterizers, densification, optimization, export."""

"""Mesh rasterization: normal maps, masks, depth and face ids of the posed head mesh."""

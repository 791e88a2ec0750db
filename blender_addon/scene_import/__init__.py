"""Building an avatar in a Blender scene: rig (rig.py), splat object (splats.py) posed by
geometry nodes (geometry_nodes.py) with its material (materials.py); build.py puts them
together. avatar_data.py and splat_layout.py are pure numpy (no bpy)."""

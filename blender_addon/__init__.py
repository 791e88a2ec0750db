"""HeadSplat for Blender: photoreal Gaussian head avatars you keyframe like any other rig.

This file only registers; the work lives in small modules (see registration.py). Importing
the package does not import bpy, so the pure modules (session, shot, splat_layout,
avatar_data, local_server) are usable and testable outside Blender.
"""

# Read by Blender for the legacy add-on zip (Blender 4.2+ reads blender_manifest.toml for
# the extension zip instead). build_addon.py keeps the version in step with the manifest.
bl_info = {
    "name": "HeadSplat",
    "author": "HeadSplat",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D View > Sidebar > HeadSplat",
    "description": "Create photoreal Gaussian head avatars from a portrait, keyframe them and render shots "
                   "with a HeadSplat compute server",
    "doc_url": "https://example.invalid/headsplat/docs",
    "category": "Animation",
}


def register() -> None:
    from . import registration

    registration.register()


def unregister() -> None:
    from . import registration

    registration.unregister()

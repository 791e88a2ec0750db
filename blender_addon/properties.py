"""Properties the add-on stores: per scene (saved in the .blend: settings and the jobs
to reattach) and per window manager (this session only: the server's avatar list).

Animation controls are NOT here: they are the rig's shape keys and pose bones, so the
Dope Sheet, Graph Editor, NLA and drivers work on them (the FLAME add-on's sliders on the
WindowManager could not be keyframed).
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty,
)

# Explicit numbers: a .blend stores an enum's number, so Auto (added later) takes a new one
# and files saved with Draft/Standard/High keep their choice.
PRESETS = [("AUTO", "Auto", "Follow the connected server's device: Draft on a CPU (where Standard takes about an "
                             "hour), Standard on a CUDA GPU", 3),
           ("DRAFT", "Draft", "Fast, lower quality (minutes on a CPU)", 0),
           ("STANDARD", "Standard", "The default balance of time and quality", 1),
           ("HIGH", "High", "Best quality, slowest", 2)]
RENDER_FORMATS = [("PNG", "PNG", "8-bit RGBA PNG frames"),
                  ("PNG16", "PNG 16-bit", "16-bit RGBA PNG frames"),
                  ("EXR", "OpenEXR", "Half-float RGBA EXR frames")]
FINAL_JOB_STATES = ("done", "failed", "cancelled", "lost")

_diffusion_items_cache: list = []


def _diffusion_items(self, context):
    """Diffusion models the connected server offers ('none' always)."""
    from . import connection

    items = [("none", "None", "No view synthesis: fit the portrait views only")]
    for model in connection.state().info.get("diffusion_models") or []:
        name = str(model.get("name", ""))
        if name and name != "none":
            items.append((name, name, str(model.get("description", "")) or f"Diffusion model {name}"))
    _diffusion_items_cache[:] = items  # Blender needs the strings kept alive
    return _diffusion_items_cache


class HEADSPLAT_PG_job(bpy.types.PropertyGroup):
    """A server job this scene started: enough to show progress and to reattach after
    the .blend is reopened (``context`` is a JSON map the job's handler needs)."""

    job_id: StringProperty(name="Job")
    kind: StringProperty(name="Kind")
    label: StringProperty(name="Label")
    state: StringProperty(name="State", default="submitting")
    stage: StringProperty(name="Stage")
    fraction: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    eta_s: FloatProperty(name="ETA", default=-1.0)
    message: StringProperty(name="Message")
    context: StringProperty(name="Context", default="{}")
    result: StringProperty(name="Result", description="Short summary of the job's result")
    created: FloatProperty(name="Created")
    cancel_requested: BoolProperty(name="Cancel Requested", default=False)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_JOB_STATES


class HEADSPLAT_PG_scene(bpy.types.PropertyGroup):
    # create
    source_path: StringProperty(name="Portrait", subtype="FILE_PATH",
                                description="Image or short selfie video of one person")
    preset: EnumProperty(name="Preset", items=PRESETS, default="AUTO")
    avatar_name: StringProperty(name="Name", description="Display name of the new avatar")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same inputs and seed give the same avatar")
    diffusion: EnumProperty(name="Diffusion", items=_diffusion_items,
                            description="View synthesis model on the server (fills in unseen sides of the head)")
    # motion
    motion_path: StringProperty(name="Motion", subtype="FILE_PATH",
                                description="A driving video (tracked on the server) or a motion .npz")
    # render
    render_format: EnumProperty(name="Format", items=RENDER_FORMATS, default="PNG")
    render_mode: EnumProperty(name="Mode", items=[
        ("SERVER", "Server", "The server renders the avatars; Blender composites them over its render"),
        ("EEVEE", "EEVEE", "Blender's EEVEE renders the shot with the avatars as splats (no server needed)")],
        default="SERVER", description="Who renders the avatars in Render Shot")
    use_depth: BoolProperty(name="Depth", default=False,
                            description="Also fetch depth and composite with Z Combine (splats behind scene "
                                        "objects are hidden)")
    setup_compositor: BoolProperty(name="Set Up Compositor", default=True,
                                   description="Composite the splat frames over Blender's render layer so F12 "
                                               "gives the final shot")
    # jobs
    jobs: CollectionProperty(type=HEADSPLAT_PG_job)
    status: StringProperty(name="Status", description="The last thing HeadSplat reported")


class HEADSPLAT_PG_server_avatar(bpy.types.PropertyGroup):
    avatar_id: StringProperty(name="Avatar")
    display_name: StringProperty(name="Name")
    created_at: FloatProperty(name="Created")
    splats: IntProperty(name="Splats")
    size_bytes: FloatProperty(name="Size")
    head_model: StringProperty(name="Head model")


class HEADSPLAT_PG_session(bpy.types.PropertyGroup):
    avatars: CollectionProperty(type=HEADSPLAT_PG_server_avatar)
    avatar_index: IntProperty(name="Avatar", default=0)


CLASSES = (HEADSPLAT_PG_job, HEADSPLAT_PG_scene, HEADSPLAT_PG_server_avatar, HEADSPLAT_PG_session)


def register() -> None:
    bpy.types.Scene.headsplat = PointerProperty(type=HEADSPLAT_PG_scene)
    bpy.types.WindowManager.headsplat = PointerProperty(type=HEADSPLAT_PG_session)


def unregister() -> None:
    del bpy.types.WindowManager.headsplat
    del bpy.types.Scene.headsplat

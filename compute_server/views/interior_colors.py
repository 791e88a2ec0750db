"""Colours for the parts of the head a single photo hides: the mouth cavity, the tongue on
its floor, the teeth, and the part of each eyeball under the lids.

Why not fixed colours: these parts appear only when the avatar is animated (the jaw opens,
the eyes turn), and a fixed bright off-white for teeth or sclera shows as a glaring block
in a dim photo, a painting or a black-and-white picture. So every default is taken from
the photo itself: what the photo shows of a part when it shows it (lips parted; sclera
between the lids only where it is clearly less red than the skin: a fitted eye a pixel
larger than the real opening "sees" lid skin; "teeth" only when brighter than the lips:
teeth tips peeking a pixel through closed lips see lip and shadow); otherwise a colour
derived from the photo's own lips and skin (the cavity is the lip colour in deep shadow,
the tongue the lip colour in half shadow, teeth and sclera an off-white as bright as its
brightest skin, in the photo's own light: grey in a black-and-white photo, never a fixed
yellowish white), shaded darker towards the back of the mouth, where less light reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..head.mesh_topology import vertex_adjacency

_LUMA = np.array([0.299, 0.587, 0.114])
TEETH_SKIN_TINT = 0.25    # how much of the skin's hue an off-white tooth takes (a little warm)
SCLERA_SKIN_TINT = 0.12


@dataclass(frozen=True)
class InteriorSettings:
    cavity_of_lip: float = 0.30          # the cavity: the lip colour in deep shadow
    tongue_of_lip: float = 0.75          # the tongue: the lip colour in half shadow
    back_of_mouth_light: float = 0.45    # light left at the back of the mouth (1 at the lips)
    min_seen_vertices: int = 8           # a part the photo shows on fewer vertices takes the derived default
    fallback_lip_rgb: tuple = (0.62, 0.38, 0.36)  # no face vertices seen near the mouth (a model without lips)
    fallback_skin_luma: float = 0.6
    fallback_skin_rgb: tuple = (0.75, 0.57, 0.47)
    teeth_over_lip: float = 1.3          # seen "teeth" darker than this times the lips are lips or shadow
    sclera_over_skin: float = 0.6        # a "sclera" darker than this times the brightest skin is lid or lash
    sclera_red_margin: float = 0.05      # sclera pixels' red share is at least this far under the skin's


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...) Rec. 601 luma."""
    return np.asarray(rgb) @ _LUMA


def _bright_half_median(rgb: np.ndarray) -> np.ndarray:
    """Median colour (3,) of the brighter half of (N, 3) colours: sclera and teeth are the
    brightest thing where they are seen; the darker half mixes in lids, lips and iris."""
    luma = luminance(rgb)
    return np.median(rgb[luma >= np.median(luma)], axis=0)


def _near(seed: np.ndarray, faces: np.ndarray, n_verts: int, rings: int) -> np.ndarray:
    """(V,) bool: vertices within ``rings`` edges of the ``seed`` (V,) bool set."""
    adjacency = vertex_adjacency(faces, n_verts)
    out = seed.copy()
    for _ in range(rings):
        out = out | (adjacency @ out.astype(np.float64) > 0)
    return out


def _depth_behind_front(rest_vertices: np.ndarray, members: np.ndarray) -> np.ndarray:
    """(V,) in [0, 1]: how far back each vertex of ``members`` sits in the part (0 at its
    frontmost point, 1 at its back), from the neutral mesh's z (the head looks along +Z)."""
    z = rest_vertices[:, 2]
    front, back = z[members].max(), z[members].min()
    return np.clip((front - z) / max(front - back, 1e-9), 0.0, 1.0)


@dataclass
class InteriorColours:
    """colours: {region name: (V, 3) default colour, valid on that region's vertices} for
    "mouth_interior", "teeth" and "eyeball" (those the model has); photo_shows: the regions
    the photo shows on enough vertices to trust (elsewhere the few "seen" vertices are
    where the fitted lips or lids miss the real ones by a pixel, and show lip or lid
    colour: they take the default too)."""

    colours: dict
    photo_shows: set


def interior_colours(rest_vertices: np.ndarray, faces: np.ndarray, vertex_region: np.ndarray,
                     region_names: list[str], colors: np.ndarray, seen: np.ndarray,
                     settings: InteriorSettings = InteriorSettings()) -> InteriorColours:
    """Default colours of the hidden parts, per part present in the model.

    rest_vertices: (V, 3) the neutral mesh (jaw closed, eyes ahead); faces (F, 3);
    vertex_region: (V,) index into ``region_names``; colors: (V, 3) the photo's colours where
    ``seen`` (V,) bool.
    """
    s = settings
    n = len(rest_vertices)
    region = {name: vertex_region == region_names.index(name) for name in region_names}
    skin = region.get("face", np.ones(n, bool)) & seen
    skin_luma = float(np.quantile(luminance(colors[skin]), 0.95)) if skin.sum() >= s.min_seen_vertices \
        else s.fallback_skin_luma
    skin_rgb = np.median(colors[skin], axis=0) if skin.sum() >= s.min_seen_vertices else np.asarray(s.fallback_skin_rgb)
    out, shows = {}, set()

    lip = np.asarray(s.fallback_lip_rgb)
    if "mouth_interior" in region and region["mouth_interior"].any():
        # the lips: face vertices within two edges of the mouth opening (the cavity's rim)
        rim = np.zeros(n, bool)
        on_cavity = region["mouth_interior"][faces].any(axis=1)
        rim[faces[on_cavity].ravel()] = True
        lips = _near(rim & ~region["mouth_interior"], faces, n, 2) & region.get("face", np.ones(n, bool)) & seen
        if lips.sum() >= s.min_seen_vertices:
            lip = np.median(colors[lips], axis=0)
        cavity = region["mouth_interior"]
        depth = _depth_behind_front(rest_vertices, cavity)
        light = 1.0 - (1.0 - s.back_of_mouth_light) * depth
        seen_cavity = cavity & seen
        if seen_cavity.sum() >= s.min_seen_vertices:   # lips parted in the photo: its own cavity colour
            base = np.median(colors[seen_cavity], axis=0)
            shows.add("mouth_interior")
        else:
            base = lip * s.cavity_of_lip
        rgb = base[None] * light[:, None]
        # the tongue: the floor of the cavity (below its middle height) behind the lips
        centre_y = np.median(rest_vertices[cavity, 1])
        floor = cavity & (rest_vertices[:, 1] < centre_y) & (depth > 0.15)
        rgb[floor] = (lip * s.tongue_of_lip)[None] * light[floor, None]
        out["mouth_interior"] = np.clip(rgb, 0.0, 1.0)

    if "eyeball" in region and region["eyeball"].any():
        skin_red = float(red_share(skin_rgb))
        sclera = _photo_sclera(colors[region["eyeball"] & seen], skin_red, skin_luma, s)
        if sclera is not None:
            shows.add("eyeball")
            base = sclera
        else:
            base = _off_white(skin_rgb, SCLERA_SKIN_TINT, skin_luma)
        out["eyeball"] = np.clip(np.broadcast_to(base, (n, 3)).copy(), 0.0, 1.0)

    if "teeth" in region and region["teeth"].any():
        teeth = region["teeth"]
        seen_teeth = teeth & seen
        photo_teeth = _bright_half_median(colors[seen_teeth]) if seen_teeth.sum() >= s.min_seen_vertices else None
        if photo_teeth is not None and luminance(photo_teeth) >= s.teeth_over_lip * luminance(lip):
            base = photo_teeth
            shows.add("teeth")
        else:
            base = _off_white(skin_rgb, TEETH_SKIN_TINT, skin_luma)
        depth = _depth_behind_front(rest_vertices, teeth)
        light = 1.0 - (1.0 - s.back_of_mouth_light) * depth
        out["teeth"] = np.clip(base[None] * light[:, None], 0.0, 1.0)
    return InteriorColours(colours=out, photo_shows=shows)


def red_share(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...) r / (r + g + b): skin's reflectance is redder than a white's under
    any light, so the share tells the two apart in warm, cold and dim photos alike."""
    rgb = np.asarray(rgb, np.float64)
    return rgb[..., 0] / np.maximum(rgb.sum(axis=-1), 1e-6)


def _photo_sclera(seen_rgb: np.ndarray, skin_red: float, skin_luma: float,
                  s: InteriorSettings) -> np.ndarray | None:
    """The photo's sclera colour (3,), or None where it does not show one.

    The mesh's eyeball vertices the photo "sees" are mostly lid, lash and the skin around
    the eye wherever the fitted eye is a pixel larger than the real opening (narrow eyes,
    small crops): their colour is skin. The sclera is the part of them that is bright and
    clearly less red than the skin under the same light (``red_share``), and not much
    darker than the brightest skin (dark, grey lashes and irises are not)."""
    if len(seen_rgb) < s.min_seen_vertices:
        return None
    luma = luminance(seen_rgb)
    white = (red_share(seen_rgb) < skin_red - s.sclera_red_margin) & (luma >= np.median(luma))
    if white.sum() < s.min_seen_vertices:
        return None
    sclera = np.median(seen_rgb[white], axis=0)
    return sclera if luminance(sclera) >= s.sclera_over_skin * skin_luma else None


def _off_white(skin_rgb: np.ndarray, skin_tint: float, luma: float) -> np.ndarray:
    """An off-white of brightness ``luma`` in the photo's own light: grey mixed with a
    little of the skin's hue. Under warm light it is warm, in a black-and-white photo grey,
    under cold light cold; a fixed yellowish white would glow yellow in a grey picture."""
    skin = np.asarray(skin_rgb, np.float64) / max(float(luminance(skin_rgb)), 1e-6)
    tint = (1.0 - skin_tint) + skin_tint * skin
    return tint * luma / float(luminance(tint))

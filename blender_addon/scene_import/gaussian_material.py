"""The true-splat material: the 3D Gaussian's peak along each pixel's ray, times opacity,
as alpha; the view-dependent colour from the posing tree as emission.

The box instanced per Gaussian (gaussian_nodes.py) is the Gaussian's whitened frame, so
in the material's object space (the instance's) the Gaussian is N(0, I): with o the
fragment's object coordinates and d the view direction in the same space,

    m^2   = |o|^2 - (o . d)^2 / |d|^2       (squared Mahalanobis distance of the ray)
    alpha = min(0.999, opacity exp(-m^2 / 2)),   0 below 1/255 (the server's cut-offs)

which is the footprint the server's EWA projection approximates, exact in perspective
anywhere in the frame. Back faces are transparent, so each ray counts the Gaussian once.

Order: the material is Blended and each Gaussian is its own instance, so EEVEE sorts
the Gaussians back to front by their centres' depth, as the server does, and blends them
exactly in one sample (Transparency Overlap on: off, EEVEE's per-object depth prepass
keeps only the nearest instance per pixel). Dithered (stochastic, order-independent)
was measured too: against the server's frame of random-coloured splats it reached
26.3 dB at 32 samples (23.5 dB at 64 samples without a pixel filter), Blended 30.6 dB in
one sample, so Blended is the default. What Blended gives up: blended surfaces write no
depth, so EEVEE's depth of field and motion blur see what is behind the splats; switch
the material to Dithered (and raise the samples) for shots that need them
(docs/user_guide.md).

Colour: the SH colour seen along camera -> mean (the render camera, or the viewport's
view), evaluated here rather than in the posing tree so that a frame change costs the
depsgraph no colour work: hs_rgb + sum_k SH_k(unit(B2H W^-1 rel)) c_k over the bands up
to the SH degree, with rel = the instance's origin minus the camera's in world space,
the rows of B2H W^-1 and the degree read from the box's vertices, and the coefficients
c_k unpacked from 7 RGBA instance attributes (splat_layout.pack_sh: EEVEE reads at most
8 instance attributes per material, so two 12-bit coefficients share each float). The
display-referred colour is clamped at 0 and decoded from sRGB to scene-linear, and
emitted: under the Standard view transform EEVEE's output is the server's colour for
opaque splats; the blend of overlapping translucent splats happens in linear light
instead of the server's sRGB values, the one remaining difference (docs/user_guide.md).
"""

from __future__ import annotations

import bpy

from . import gaussian_nodes, splat_layout as layout

MATERIAL_NAME = "HeadSplat Gaussians v2"  # v1 read the colour the posing tree computed
MAX_ALPHA = 0.999
ALPHA_THRESHOLD = 1.0 / 255.0
SRGB_KNEE = 0.04045


class _Shader:
    """Node helpers so the material reads like the maths above."""

    def __init__(self, tree):
        self.tree = tree
        self.x = -1400

    def node(self, kind: str, **props):
        node = self.tree.nodes.new(kind)
        for key, value in props.items():
            setattr(node, key, value)
        node.location = (self.x, 0)
        self.x += 80
        return node

    def feed(self, socket, value) -> None:
        if hasattr(value, "is_output"):
            self.tree.links.new(value, socket)
        else:
            socket.default_value = value

    def math(self, operation: str, a, b=None, c=None):
        node = self.node("ShaderNodeMath", operation=operation)
        for socket, value in zip(node.inputs, (a, b, c)):
            if value is not None:
                self.feed(socket, value)
        return node.outputs[0]

    def dot(self, a, b):
        node = self.node("ShaderNodeVectorMath", operation="DOT_PRODUCT")
        self.feed(node.inputs[0], a)
        self.feed(node.inputs[1], b)
        return node.outputs["Value"]

    def vmath(self, operation: str, a, b=None, c=None, *, scale=None):
        node = self.node("ShaderNodeVectorMath", operation=operation)
        for socket, value in zip(node.inputs, (a, b, c)):
            if value is not None:
                self.feed(socket, value)
        if scale is not None:
            self.feed(node.inputs["Scale"], scale)
        return node.outputs["Vector"]

    def geometry_attribute(self, name: str, output: str):
        node = self.node("ShaderNodeAttribute", attribute_type="GEOMETRY", attribute_name=name)
        return node.outputs[output]

    def instancer_attribute(self, name: str, output: str):
        node = self.node("ShaderNodeAttribute", attribute_type="INSTANCER", attribute_name=name)
        return node.outputs[output]


SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def _sh_bases(b, x, y, z):
    """Basis values (node outputs) of bands 1..3 at the unit head-space direction (x, y, z),
    in the 3DGS/gsplat order (compute_server.splats.sh.sh_basis)."""
    m, mul = b.math, (lambda p, q: b.math("MULTIPLY", p, q))
    xx, yy, zz = mul(x, x), mul(y, y), mul(z, z)
    xy, yz, xz = mul(x, y), mul(y, z), mul(x, z)
    band1 = [mul(y, -SH_C1), mul(z, SH_C1), mul(x, -SH_C1)]
    zz2_xx_yy = m("SUBTRACT", m("SUBTRACT", mul(zz, 2.0), xx), yy)
    xx_yy = m("SUBTRACT", xx, yy)
    band2 = [mul(xy, SH_C2[0]), mul(yz, SH_C2[1]), mul(zz2_xx_yy, SH_C2[2]), mul(xz, SH_C2[3]), mul(xx_yy, SH_C2[4])]
    zz4_xx_yy = m("SUBTRACT", m("SUBTRACT", mul(zz, 4.0), xx), yy)
    band3 = [mul(mul(y, m("SUBTRACT", mul(xx, 3.0), yy)), SH_C3[0]),
             mul(mul(xy, z), SH_C3[1]),
             mul(mul(y, zz4_xx_yy), SH_C3[2]),
             mul(mul(z, m("SUBTRACT", mul(zz, 2.0), mul(m("ADD", xx, yy), 3.0))), SH_C3[3]),
             mul(mul(x, zz4_xx_yy), SH_C3[4]),
             mul(mul(z, xx_yy), SH_C3[5]),
             mul(mul(x, m("SUBTRACT", xx, mul(yy, 3.0))), SH_C3[6])]
    return [band1, band2, band3]


def _sh_coefficients(s: _Shader):
    """The 15 higher SH coefficients (RGB vectors) of the Gaussian, unpacked from
    ``ATTR_SH_PACKS`` (splat_layout.pack_sh): hi = floor(v / L), lo = v - L hi, c = q a - s
    with a = 2 s / (L - 1)."""
    levels = float(layout.SH_LEVELS)
    packs = [(s.instancer_attribute(name, "Vector"), s.instancer_attribute(name, "Alpha"))
             for name in gaussian_nodes.ATTR_SH_PACKS]
    scale = packs[2][1]
    step = s.math("MULTIPLY", scale, 2.0 / (levels - 1.0))
    offset = s.math("MULTIPLY", scale, -1.0)

    def split(value, vector: bool):
        if vector:
            hi = s.vmath("FLOOR", s.vmath("SCALE", value, scale=1.0 / levels))
            return hi, s.vmath("MULTIPLY_ADD", hi, (-levels,) * 3, value)
        hi = s.math("FLOOR", s.math("MULTIPLY", value, 1.0 / levels))
        return hi, s.math("MULTIPLY_ADD", hi, -levels, value)

    quantised = []
    for rgb, _ in packs:
        quantised.extend(split(rgb, True))
    r, g = split(packs[0][1], False)
    b, _ = split(packs[1][1], False)
    last = s.node("ShaderNodeCombineXYZ")
    for axis, value in zip("XYZ", (r, g, b)):
        s.feed(last.inputs[axis], value)
    quantised.append(last.outputs[0])
    return [s.vmath("MULTIPLY_ADD", q, step, offset) for q in quantised]


def _view_colour(s: _Shader):
    """The Gaussian's display-referred colour seen from the view (the render camera, or
    the viewport's view): RGB of hs_rgba + sum_k SH_k(unit(head direction)) c_k over the bands up
    to the SH degree, with the camera-to-mean direction taken to head space by the rows
    the posing tree stores on the box (B2H W^-1)."""
    mean = s.node("ShaderNodeVectorTransform", vector_type="POINT", convert_from="OBJECT", convert_to="WORLD")
    mean.inputs[0].default_value = (0.0, 0.0, 0.0)
    camera = s.node("ShaderNodeVectorTransform", vector_type="POINT", convert_from="CAMERA", convert_to="WORLD")
    camera.inputs[0].default_value = (0.0, 0.0, 0.0)
    rel = s.vmath("SUBTRACT", mean.outputs[0], camera.outputs[0])
    head = s.node("ShaderNodeCombineXYZ")
    for axis, name in zip("XYZ", gaussian_nodes.ATTR_VIEW_TO_HEAD):
        s.feed(head.inputs[axis], s.dot(s.geometry_attribute(name, "Vector"), rel))
    unit = s.node("ShaderNodeSeparateXYZ")
    s.feed(unit.inputs[0], s.vmath("NORMALIZE", head.outputs[0]))
    bands = _sh_bases(s, unit.outputs["X"], unit.outputs["Y"], unit.outputs["Z"])
    coefficients = iter(_sh_coefficients(s))
    degree = s.geometry_attribute(gaussian_nodes.ATTR_SH_DEGREE, "Fac")
    colour = s.instancer_attribute(gaussian_nodes.ATTR_RGBA, "Vector")
    for band_degree, band in enumerate(bands, start=1):
        band_sum = (0.0, 0.0, 0.0)
        for basis in band:
            band_sum = s.vmath("MULTIPLY_ADD", next(coefficients), basis, band_sum)
        colour = s.vmath("MULTIPLY_ADD", band_sum, s.math("GREATER_THAN", degree, band_degree - 0.5), colour)
    return colour


def _srgb_to_linear(s: _Shader, rgb):
    """The sRGB decoding of non-negative ``rgb`` with vector maths only (no per-channel
    branch): with T = 0.04045,

        linear = (min(c, T) - T) / 12.92 + ((max(c, T) + 0.055) / 1.055) ^ 2.4

    is c / 12.92 below T and the power curve above (the two pieces meet at T)."""
    low = s.vmath("MULTIPLY_ADD", s.vmath("MINIMUM", rgb, (SRGB_KNEE,) * 3), (1.0 / 12.92,) * 3,
                  (-SRGB_KNEE / 12.92,) * 3)
    base = s.vmath("MULTIPLY_ADD", s.vmath("MAXIMUM", rgb, (SRGB_KNEE,) * 3), (1.0 / 1.055,) * 3, (0.055 / 1.055,) * 3)
    return s.vmath("ADD", low, s.vmath("POWER", base, (2.4,) * 3))


def build_gaussian_material(name: str = MATERIAL_NAME):
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True  # 5.0+ materials always use nodes
    material.diffuse_color = (0.8, 0.62, 0.52, 1.0)  # skin-like in Solid mode
    tree = material.node_tree
    tree.nodes.clear()
    s = _Shader(tree)
    o = s.node("ShaderNodeTexCoord").outputs["Object"]
    geometry = s.node("ShaderNodeNewGeometry")
    d = s.node("ShaderNodeVectorTransform", vector_type="VECTOR", convert_from="WORLD", convert_to="OBJECT")
    s.feed(d.inputs[0], geometry.outputs["Incoming"])
    d = d.outputs[0]
    od = s.dot(o, d)
    m2 = s.math("SUBTRACT", s.dot(o, o), s.math("DIVIDE", s.math("MULTIPLY", od, od), s.math("MAXIMUM", s.dot(d, d),
                                                                                                    1e-20)))
    opacity = s.instancer_attribute(gaussian_nodes.ATTR_RGBA, "Alpha")
    alpha = s.math("MINIMUM", s.math("MULTIPLY", opacity, s.math("EXPONENT", s.math("MULTIPLY", m2, -0.5))), MAX_ALPHA)
    alpha = s.math("MULTIPLY", alpha, s.math("GREATER_THAN", alpha, ALPHA_THRESHOLD))
    alpha = s.math("MULTIPLY", alpha, s.math("SUBTRACT", 1.0, geometry.outputs["Backfacing"]))
    emission = s.node("ShaderNodeEmission")
    s.feed(emission.inputs["Color"], _srgb_to_linear(s, s.vmath("MAXIMUM", _view_colour(s), (0.0, 0.0, 0.0))))
    transparent = s.node("ShaderNodeBsdfTransparent")
    mix = s.node("ShaderNodeMixShader")
    s.feed(mix.inputs["Fac"], alpha)
    s.feed(mix.inputs[1], transparent.outputs[0])
    s.feed(mix.inputs[2], emission.outputs[0])
    output = s.node("ShaderNodeOutputMaterial")
    s.feed(output.inputs["Surface"], mix.outputs[0])
    material.surface_render_method = "BLENDED"
    material.use_backface_culling = True
    material.use_transparency_overlap = True  # off, EEVEE keeps only the nearest instance per pixel
    return material


def ensure_gaussian_material():
    """The file's Gaussian material, built on first use."""
    material = bpy.data.materials.get(MATERIAL_NAME)
    return material if material is not None else build_gaussian_material()

"""The true-splat branch of the posing tree: one oriented box per Gaussian, instanced on
the posed points, with the colour the server would give it from the scene camera.

Why a box and not a camera-facing quad: the material (gaussian_material.py) evaluates
the 3D Gaussian along each pixel's ray, so any front face that covers the Gaussian's
3-sigma ellipsoid draws the exact footprint, at any angle and anywhere in the frame
(no billboard that faces the image plane, hence no wrong shape off-centre, and no quad
seen edge-on that vanishes). The box is the unit cube of the Gaussian's whitened frame,
scaled by EXTENT sigma: instance rotation = posed rotation, instance scale = posed
scales, so the material's object coordinates are the whitened coordinates themselves.
Back faces are culled so each ray meets one face.

Per point (before instancing), from the active camera seen in the splat object's space:

    rel = position - camera location,  z = rel . camera forward
    scale' = sqrt(scale^2 + EPS2D cos(a) (z * pixel_angle)^2)   (gsplat's eps2d low-pass in 3D;
             a = angle off the optical axis, so the blur's projected area is the server's)
    colour = clamp0(hs_rgb + sum_k SH_k(unit(H^T rel)) hs_sh_k)   (degrees up to SH Degree)
    hs_view_color = srgb_to_linear(colour)   (display-referred -> scene-linear, see the guide)

``pixel_angle`` (1 / focal length in pixels) comes from the tree's Pixel Angle input,
which the add-on sets from the scene camera and resolution (``sync_pixel_angle``).
"""

from __future__ import annotations

import numpy as np

from .._shared import camera as camera_mod
from . import splat_layout as layout

EXTENT = 3.33  # gsplat's maximum extent in sigmas (raster_torch.MAX_EXTEND)
EPS2D = 0.3  # px^2 added to each projected covariance by the server's rasterizer
MIN_SCALE = 1e-7
ATTR_VIEW_COLOR = "hs_view_color"

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


def _view_colour(b, rel_object, sh_degree):
    """Display-referred colour of each splat seen along ``rel_object`` (camera -> mean,
    splat object space = armature space; head space is BLENDER_TO_HEAD of it)."""
    split = b.node("ShaderNodeSeparateXYZ")
    b.link(rel_object, split, "Vector")
    head_dir = b.node("ShaderNodeCombineXYZ")  # head = (x_b, z_b, -y_b)
    b.link(split.outputs["X"], head_dir, "X")
    b.link(split.outputs["Z"], head_dir, "Y")
    b.link(b.math("MULTIPLY", split.outputs["Y"], -1.0), head_dir, "Z")
    unit = b.node("ShaderNodeSeparateXYZ")
    b.link(b.vmath("NORMALIZE", head_dir.outputs[0]), unit, "Vector")
    bands = _sh_bases(b, unit.outputs["X"], unit.outputs["Y"], unit.outputs["Z"])
    colour = b.attribute(layout.ATTR_RGB, "FLOAT_VECTOR")
    k = 1
    for degree, band in enumerate(bands, start=1):
        band_sum = None
        for basis in band:
            term = b.vmath("SCALE", b.attribute(layout.sh_attribute(k), "FLOAT_VECTOR"), scale=basis)
            band_sum = term if band_sum is None else b.vmath("ADD", band_sum, term)
            k += 1
        with_band = b.vmath("ADD", colour, band_sum)
        use_band = b.node("ShaderNodeMath", operation="GREATER_THAN")
        b.link(sh_degree, use_band, 0)
        use_band.inputs[1].default_value = degree - 0.5
        switch = b.node("GeometryNodeSwitch", input_type="VECTOR")
        b.link(use_band.outputs[0], switch, "Switch")
        b.link(colour, switch, "False")
        b.link(with_band, switch, "True")
        colour = switch.outputs[0]
    return b.vmath("MAXIMUM", colour, (0.0, 0.0, 0.0))


def _srgb_to_linear(b, rgb):
    """Per channel: c / 12.92 below 0.04045, ((c + 0.055) / 1.055) ^ 2.4 above."""
    low = b.vmath("SCALE", rgb, scale=1.0 / 12.92)
    high = b.vmath("POWER", b.vmath("SCALE", b.vmath("ADD", rgb, (0.055,) * 3), scale=1.0 / 1.055), (2.4,) * 3)
    split_rgb, split_low, split_high = (b.node("ShaderNodeSeparateXYZ") for _ in range(3))
    for node, value in ((split_rgb, rgb), (split_low, low), (split_high, high)):
        b.link(value, node, "Vector")
    out = b.node("ShaderNodeCombineXYZ")
    for axis in "XYZ":
        is_high = b.math("GREATER_THAN", split_rgb.outputs[axis], 0.04045)
        mix = b.node("ShaderNodeMix", data_type="FLOAT")
        b.link(is_high, mix, "Factor")
        b.link(split_low.outputs[axis], mix, 2)
        b.link(split_high.outputs[axis], mix, 3)
        b.link(mix.outputs[0], out, axis)
    return out.outputs[0]


def gaussian_instances(b, geometry, *, pixel_angle, sh_degree, material):
    """Instances of the Gaussian box on ``geometry`` (posed points carrying hs_rotation and
    hs_scale, see geometry_nodes._store_orientation); -> the instances output socket."""
    camera = b.node("GeometryNodeObjectInfo", transform_space="RELATIVE")
    b.link(b.node("GeometryNodeInputActiveCamera").outputs[0], camera, "Object")
    position = b.node("GeometryNodeInputPosition").outputs[0]
    rel = b.vmath("SUBTRACT", position, camera.outputs["Location"])
    forward = b.node("FunctionNodeRotateVector")
    forward.inputs["Vector"].default_value = (0.0, 0.0, -1.0)
    b.link(camera.outputs["Rotation"], forward, "Rotation")
    depth = b.vmath("DOT_PRODUCT", rel, forward.outputs[0])
    footprint = b.math("MULTIPLY", depth, pixel_angle)
    # an isotropic 3D blur projects radially stretched by 1 / cos(off-axis angle): scaling
    # its variance by cos keeps the blurred footprint's area at the server's
    cos_off_axis = b.math("DIVIDE", depth, b.math("MAXIMUM", b.vmath("LENGTH", rel), 1e-12))
    blur_variance = b.math("MULTIPLY", b.math("MULTIPLY", footprint, footprint),
                           b.math("MULTIPLY", cos_off_axis, EPS2D))
    scale = b.attribute(layout.ATTR_POSED_SCALE, "FLOAT_VECTOR")
    blur = b.node("ShaderNodeCombineXYZ")
    for axis in "XYZ":
        b.link(blur_variance, blur, axis)
    scale = b.vmath("POWER", b.vmath("ADD", b.vmath("MULTIPLY", scale, scale), blur.outputs[0]), (0.5,) * 3)
    scale = b.vmath("MAXIMUM", scale, (MIN_SCALE,) * 3)

    store = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT_VECTOR", domain="POINT")
    store.inputs["Name"].default_value = ATTR_VIEW_COLOR
    b.link(geometry, store, "Geometry")
    b.link(_srgb_to_linear(b, _view_colour(b, rel, sh_degree)), store, "Value")

    box = b.node("GeometryNodeMeshCube")
    box.inputs["Size"].default_value = (2 * EXTENT,) * 3
    box_material = b.node("GeometryNodeSetMaterial")
    b.link(box.outputs["Mesh"], box_material, "Geometry")
    b.link(material, box_material, "Material")
    instance = b.node("GeometryNodeInstanceOnPoints")
    b.link(store.outputs[0], instance, "Points")
    b.link(box_material.outputs[0], instance, "Instance")
    b.link(b.attribute(layout.ATTR_POSED_ROTATION, "QUATERNION"), instance, "Rotation")
    b.link(scale, instance, "Scale")
    return instance.outputs[0]


def pixel_angle(fx_px: float) -> float:
    """The Pixel Angle input for a camera of focal length ``fx_px`` pixels (0: no blur)."""
    return 0.0 if fx_px <= 0 else 1.0 / float(fx_px)


def pixel_angle_for_scene(camera_data: camera_mod.BlenderCameraData) -> float:
    """Pixel Angle of the scene camera (what the server's eps2d low-pass corresponds to)."""
    camera = camera_mod.camera_from_blender(camera_data)
    return pixel_angle(float(np.sqrt(camera.fx * camera.fy)))

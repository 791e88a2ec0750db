"""The true-splat branch of the posing tree: one oriented box per Gaussian, instanced on
the posed points, with the colour the server would give it from the scene camera.

Why a box and not a camera-facing quad: the material (gaussian_material.py) evaluates
the 3D Gaussian along each pixel's ray, so any front face that covers the Gaussian's
3-sigma ellipsoid draws the exact footprint, at any angle and anywhere in the frame
(no billboard that faces the image plane, hence no wrong shape off-centre, and no quad
seen edge-on that vanishes). The box is the unit cube of the Gaussian's whitened frame,
scaled by EXTENT sigma: the instance transform's columns are the posed axes times their
sigmas (k [t b n] times the static local rotation-times-scale ``hs_axis_*`` stored at
import: no quaternion maths per frame), so the material's object coordinates are the
whitened coordinates themselves.
Back faces are culled so each ray meets one face.

Per point (before instancing), from the active camera seen in the splat object's space:

    rel = position - camera location,  z = rel . camera forward
    axis_i' = axis_i sqrt(1 + v / |axis_i|^2),  v = EPS2D cos(a) (z * pixel_angle)^2
             (gsplat's eps2d low-pass in 3D; a = angle off the optical axis, so the
             blur's projected area is the server's)
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
ATTR_VIEW_COLOR = "hs_view_color"  # the instances' colour (scene-linear); opacity is hs_alpha
ATTR_OPACITY = layout.ATTR_ALPHA

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


def _posed_axes(b, frames):
    """The Gaussian's three axes scaled by its sigmas, posed: k [t b n] hs_axis_i (static
    local rotation times scale from import, so no rotation maths per frame)."""
    _, tangent, bitangent, normal, k = frames
    axes = []
    for i in range(3):
        local = b.node("ShaderNodeSeparateXYZ")
        b.link(b.attribute(layout.axis_attribute(i), "FLOAT_VECTOR"), local, "Vector")
        along = b.vmath("ADD", b.vmath("ADD", b.vmath("SCALE", tangent, scale=local.outputs["X"]),
                                       b.vmath("SCALE", bitangent, scale=local.outputs["Y"])),
                        b.vmath("SCALE", normal, scale=local.outputs["Z"]))
        axes.append(b.vmath("SCALE", along, scale=k))
    return axes


def _blurred(b, axis, blur_variance):
    """The axis lengthened so its variance grows by ``blur_variance``: a (1 + v / |a|^2)^0.5."""
    length2 = b.vmath("DOT_PRODUCT", axis, axis)
    grow = b.math("SQRT", b.math("ADD", 1.0, b.math("DIVIDE", blur_variance, b.math("MAXIMUM", length2, 1e-30))))
    return b.vmath("SCALE", axis, scale=grow)


def _camera(b):
    """(location, forward) fields of the active camera in the splat object's space."""
    camera = b.node("GeometryNodeObjectInfo", transform_space="RELATIVE")
    b.link(b.node("GeometryNodeInputActiveCamera").outputs[0], camera, "Object")
    forward = b.node("FunctionNodeRotateVector")
    forward.inputs["Vector"].default_value = (0.0, 0.0, -1.0)
    b.link(camera.outputs["Rotation"], forward, "Rotation")
    return camera.outputs["Location"], forward.outputs[0]


def _blur_variance(b, mean, pixel_angle):
    """v = EPS2D cos(a) (z pixel_angle)^2 at the posed mean (see the module docstring)."""
    location, forward = _camera(b)
    rel = b.vmath("SUBTRACT", mean, location)
    depth = b.vmath("DOT_PRODUCT", rel, forward)
    footprint = b.math("MULTIPLY", depth, pixel_angle)
    # an isotropic 3D blur projects radially stretched by 1 / cos(off-axis angle): scaling
    # its variance by cos keeps the blurred footprint's area at the server's
    cos_off_axis = b.math("DIVIDE", depth, b.math("MAXIMUM", b.vmath("LENGTH", rel), 1e-12))
    return b.math("MULTIPLY", b.math("MULTIPLY", footprint, footprint), b.math("MULTIPLY", cos_off_axis, EPS2D))


def gaussian_instances(b, points, frames, mean, *, pixel_angle, sh_degree, material):
    """Instances of the Gaussian box on ``points`` (the splat points, not yet posed);
    ``frames`` are the triangle-frame fields (geometry_nodes._triangle_frames) and ``mean``
    the posed-mean field; -> the instances socket.

    One field evaluation on the instances gives the whole transform [a0 a1 a2 | mean]
    (a_i the posed, blurred axes: rotation times sigma), so the triangle frames are
    sampled once; the box's own coordinates are then the whitened ones."""
    box = b.node("GeometryNodeMeshCube")
    box.inputs["Size"].default_value = (2 * EXTENT,) * 3
    box_material = b.node("GeometryNodeSetMaterial")
    b.link(box.outputs["Mesh"], box_material, "Geometry")
    b.link(material, box_material, "Material")
    instance = b.node("GeometryNodeInstanceOnPoints")
    b.link(points, instance, "Points")
    b.link(box_material.outputs[0], instance, "Instance")

    blur_variance = _blur_variance(b, mean, pixel_angle)
    matrix = b.node("FunctionNodeCombineMatrix")
    columns = [_blurred(b, axis, blur_variance) for axis in _posed_axes(b, frames)] + [mean]
    for column, vector in enumerate(columns, start=1):
        split = b.node("ShaderNodeSeparateXYZ")
        b.link(vector, split, "Vector")
        for row, name in enumerate("XYZ", start=1):
            b.link(split.outputs[name], matrix, f"Column {column} Row {row}")
        matrix.inputs[f"Column {column} Row 4"].default_value = 1.0 if column == 4 else 0.0
    transform = b.node("GeometryNodeSetInstanceTransform")
    b.link(instance.outputs[0], transform, "Instances")
    b.link(matrix.outputs[0], transform, "Transform")

    # the colour seen from the camera, at each instance's (posed) position
    location, _ = _camera(b)
    rel = b.vmath("SUBTRACT", b.node("GeometryNodeInputPosition").outputs[0], location)
    store = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT_VECTOR", domain="INSTANCE")
    store.inputs["Name"].default_value = ATTR_VIEW_COLOR
    b.link(transform.outputs[0], store, "Geometry")
    b.link(_srgb_to_linear(b, _view_colour(b, rel, sh_degree)), store, "Value")
    return store.outputs[0]


def pixel_angle(fx_px: float) -> float:
    """The Pixel Angle input for a camera of focal length ``fx_px`` pixels (0: no blur)."""
    return 0.0 if fx_px <= 0 else 1.0 / float(fx_px)


def pixel_angle_for_scene(camera_data: camera_mod.BlenderCameraData) -> float:
    """Pixel Angle of the scene camera (what the server's eps2d low-pass corresponds to)."""
    camera = camera_mod.camera_from_blender(camera_data)
    return pixel_angle(float(np.sqrt(camera.fx * camera.fy)))

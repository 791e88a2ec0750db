"""The true-splat branch of the posing tree: one oriented box per Gaussian, instanced on
the splat points, with the colour the server would give it from the scene camera.

Why a box and not a camera-facing quad: the material (gaussian_material.py) evaluates
the 3D Gaussian along each pixel's ray, so any front face that covers the Gaussian's
3-sigma ellipsoid draws the exact footprint, at any angle and anywhere in the frame
(no billboard that faces the image plane, hence no wrong shape off-centre, and no quad
seen edge-on that vanishes). The box is the unit cube of the Gaussian's whitened frame,
scaled by EXTENT sigma, so the material's object coordinates are the whitened
coordinates themselves. Back faces are culled so each ray meets one face.

Per head triangle (thousands, evaluated once per frame on the head's faces):

    F = [k t, k b, k n | centroid]      (geometry_nodes.py's triangle frame, as a transform)

Per splat, in one field evaluation (a Capture Attribute of three fields):

    posed = F (hs_face) hs_xform_local        ([R S | mean] local, stored at import: the
                                              posed axes R S and mean in one product)
    rel = mean - camera location,  z = rel . camera forward
    growth_i = sqrt(1 + v / (k sigma_i)^2),  v = EPS2D cos(a) (z * pixel_angle)^2
             (gsplat's eps2d low-pass in 3D; a = angle off the optical axis, so the
             blur's projected area is the server's; 1/sigma_i^2 is hs_inv_sigma2)
    colour = hs_rgb + sum_k SH_k(unit(H^T rel)) hs_sh_k   (degrees up to SH Degree;
             display-referred: the material clamps it and converts it to linear)

and the instance transform is posed diag(growth) (Scale Instances in local space).
Everything but hs_alpha and the captured fields is dropped before instancing, so
Instance on Points copies nothing the material does not read.

``pixel_angle`` (1 / focal length in pixels) comes from the tree's Pixel Angle input,
which the add-on sets from the scene camera and resolution (``sync_pixel_angle``).
Where the time goes per frame change and what was tried: docs/results.md (issue 14).
"""

from __future__ import annotations

import numpy as np

from .._shared import camera as camera_mod
from . import splat_layout as layout

EXTENT = 3.33  # gsplat's maximum extent in sigmas (raster_torch.MAX_EXTEND)
EPS2D = 0.3  # px^2 added to each projected covariance by the server's rasterizer
ATTR_VIEW_COLOR = "hs_view_color"  # the instances' colour (display-referred); opacity is hs_alpha
ATTR_OPACITY = layout.ATTR_ALPHA
# every named attribute of the splat points but the opacity (hs_alpha), dropped before
# instancing so that Instance on Points copies nothing the material does not read
DROPPED_BEFORE_INSTANCING = ("hs_sh_*", "hs_v*", "hs_f*", "hs_m*", "hs_q*", "hs_l*", "hs_r*", "hs_c*", "hs_x*",
                             "hs_i*")

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
    splat object space = armature space; head space is BLENDER_TO_HEAD of it), before
    the clamp at 0 and the sRGB-to-linear conversion (the material does both per pixel,
    at no cost to the depsgraph)."""
    split = b.node("ShaderNodeSeparateXYZ")
    b.link(b.vmath("NORMALIZE", rel_object), split, "Vector")
    # head = (x_b, z_b, -y_b)
    head_x, head_y, head_z = split.outputs["X"], split.outputs["Z"], b.math("MULTIPLY", split.outputs["Y"], -1.0)
    bands = _sh_bases(b, head_x, head_y, head_z)
    colour = b.attribute(layout.ATTR_RGB, "FLOAT_VECTOR")
    k = 1
    for degree, band in enumerate(bands, start=1):
        with_band = colour
        for basis in band:
            with_band = b.vmath("MULTIPLY_ADD", b.attribute(layout.sh_attribute(k), "FLOAT_VECTOR"), basis, with_band)
            k += 1
        use_band = b.node("ShaderNodeMath", operation="GREATER_THAN")
        b.link(sh_degree, use_band, 0)
        use_band.inputs[1].default_value = degree - 0.5
        switch = b.node("GeometryNodeSwitch", input_type="VECTOR")
        b.link(use_band.outputs[0], switch, "Switch")
        b.link(colour, switch, "False")
        b.link(with_band, switch, "True")
        colour = switch.outputs[0]
    return colour


def _frame_transform(b, corners):
    """F = [k t, k b, k n | centroid] of each point's bound triangle (the module
    docstring of geometry_nodes.py), as one transform: rotation [t b n] from the edge
    and the normal, uniform scale k, translation the centroid."""
    p0, p1, p2 = corners
    e0 = b.vmath("SUBTRACT", p1, p0)
    cross = b.vmath("CROSS_PRODUCT", e0, b.vmath("SUBTRACT", p2, p0))
    len0 = b.vmath("LENGTH", e0)
    k = b.math("MULTIPLY", b.math("ADD", len0, b.math("DIVIDE", b.vmath("LENGTH", cross),
                                                      b.math("MAXIMUM", len0, 1e-12))), 0.5)
    rotation = b.node("FunctionNodeAxesToRotation", primary_axis="Z", secondary_axis="X")
    b.link(cross, rotation, "Primary Axis")
    b.link(e0, rotation, "Secondary Axis")
    frame = b.node("FunctionNodeCombineTransform")
    b.link(b.vmath("SCALE", b.vmath("ADD", b.vmath("ADD", p0, p1), p2), scale=1.0 / 3.0), frame, "Translation")
    b.link(rotation.outputs[0], frame, "Rotation")
    b.link(k, frame, "Scale")
    return frame.outputs[0], k


def _matmul(b, left, right):
    node = b.node("FunctionNodeMatrixMultiply")
    b.link(left, node, 0)
    b.link(right, node, 1)
    return node.outputs[0]


def _blur_growth(b, mean, k, pixel_angle):
    """Per posed axis i, sqrt(1 + v / (k sigma_i)^2): the axis lengthened so its variance
    grows by the blur variance v (|axis_i| = k sigma_i, as [t b n] is orthonormal), with

        v / k^2 = EPS2D pixel_angle^2 depth^3 / (|rel| k^2)

    (module docstring; the Math node's division is safe, 0 where |rel| k^2 is 0)."""
    location, forward = _camera(b)
    rel = b.vmath("SUBTRACT", mean, location)
    depth = b.vmath("DOT_PRODUCT", rel, forward)
    blur_scale = b.math("MULTIPLY", b.math("MULTIPLY", pixel_angle, pixel_angle), EPS2D)  # one value
    depth3 = b.math("MULTIPLY", b.math("MULTIPLY", depth, depth), depth)
    variance_over_k2 = b.math("MULTIPLY", b.math("DIVIDE", depth3, b.math("MULTIPLY", b.vmath("LENGTH", rel),
                                                                          b.math("MULTIPLY", k, k))), blur_scale)
    grown = b.node("ShaderNodeSeparateXYZ")
    b.link(b.vmath("MULTIPLY_ADD", b.attribute(layout.ATTR_INV_SIGMA2, "FLOAT_VECTOR"), variance_over_k2,
                   (1.0, 1.0, 1.0)), grown, "Vector")
    growth = b.node("ShaderNodeCombineXYZ")
    for axis in "XYZ":  # scalar square roots: the vector POWER is several times slower
        b.link(b.math("SQRT", grown.outputs[axis]), growth, axis)
    return growth.outputs[0]


def _camera(b):
    """(location, forward) fields of the active camera in the splat object's space."""
    camera = b.node("GeometryNodeObjectInfo", transform_space="RELATIVE")
    b.link(b.node("GeometryNodeInputActiveCamera").outputs[0], camera, "Object")
    forward = b.node("FunctionNodeRotateVector")
    forward.inputs["Vector"].default_value = (0.0, 0.0, -1.0)
    b.link(camera.outputs["Rotation"], forward, "Rotation")
    return camera.outputs["Location"], forward.outputs[0]


def _face_frames(b, head_geometry):
    """(frame, k) of each head triangle, evaluated on the head's faces (thousands, not
    one per splat): corner j of the face is its j-th loop, the order of the rig's faces
    that the splats' corner indices come from."""
    corners = []
    for j in range(3):
        corner = b.node("GeometryNodeCornersOfFace")
        corner.inputs["Sort Index"].default_value = j
        vertex = b.node("GeometryNodeVertexOfCorner")
        b.link(corner.outputs["Corner Index"], vertex, "Corner Index")
        sample = b.node("GeometryNodeSampleIndex", data_type="FLOAT_VECTOR", domain="POINT")
        b.link(head_geometry, sample, "Geometry")
        b.link(b.node("GeometryNodeInputPosition").outputs[0], sample, "Value")
        b.link(vertex.outputs[0], sample, "Index")
        corners.append(sample.outputs[0])
    return _frame_transform(b, corners)


def _per_splat(b, head_geometry, face_field, data_type: str):
    """``face_field`` (on the head's faces) at each splat's bound face (hs_face)."""
    sample = b.node("GeometryNodeSampleIndex", data_type=data_type, domain="FACE")
    b.link(head_geometry, sample, "Geometry")
    b.link(face_field, sample, "Value")
    b.link(b.attribute(layout.ATTR_FACE, "INT"), sample, "Index")
    return sample.outputs[0]


def gaussian_instances(b, points, head_geometry, *, pixel_angle, sh_degree, material):
    """Instances of the Gaussian box on ``points`` (the splat points, not yet posed),
    posed from ``head_geometry`` (the evaluated head mesh); -> the instances socket.

    The triangle frames are built once per head face and sampled by each splat's face.
    One field evaluation on the points (a Capture Attribute of three fields) gives the
    posed transform F [R S | mean], the blur's growth of each axis and the colour: the
    posed axes and mean come from one matrix product, and the SH coefficients are read
    where they are stored instead of being copied to the instances (every named
    attribute but the opacity is dropped before instancing)."""
    face_frame, face_k = _face_frames(b, head_geometry)
    frame = _per_splat(b, head_geometry, face_frame, "FLOAT4X4")
    k = _per_splat(b, head_geometry, face_k, "FLOAT")
    posed = _matmul(b, frame, b.attribute(layout.ATTR_XFORM_LOCAL, "FLOAT4X4"))
    mean = b.node("FunctionNodeTransformPoint")
    mean.inputs["Vector"].default_value = (0.0, 0.0, 0.0)
    b.link(posed, mean, "Transform")
    mean = mean.outputs[0]
    location, _ = _camera(b)

    capture = b.node("GeometryNodeCaptureAttribute", domain="POINT")
    fields = {"Transform": ("MATRIX", posed), "Growth": ("VECTOR", _blur_growth(b, mean, k, pixel_angle)),
              "Colour": ("VECTOR", _view_colour(b, b.vmath("SUBTRACT", mean, location), sh_degree))}
    for name, (socket_type, _) in fields.items():
        capture.capture_items.new(socket_type, name)
    b.link(points, capture, "Geometry")
    for name, (_, field) in fields.items():
        b.link(field, capture, name)
    geometry = capture.outputs["Geometry"]
    for pattern in DROPPED_BEFORE_INSTANCING:
        geometry = b.remove_attributes(geometry, pattern)

    box = b.node("GeometryNodeMeshCube")
    box.inputs["Size"].default_value = (2 * EXTENT,) * 3
    box_material = b.node("GeometryNodeSetMaterial")
    b.link(box.outputs["Mesh"], box_material, "Geometry")
    b.link(material, box_material, "Material")
    instance = b.node("GeometryNodeInstanceOnPoints")
    b.link(geometry, instance, "Points")
    b.link(box_material.outputs[0], instance, "Instance")
    set_transform = b.node("GeometryNodeSetInstanceTransform")
    b.link(instance.outputs[0], set_transform, "Instances")
    b.link(capture.outputs["Transform"], set_transform, "Transform")
    # the blur scales each posed axis: the box's own axes (local space)
    blur = b.node("GeometryNodeScaleInstances")
    blur.inputs["Local Space"].default_value = True
    b.link(set_transform.outputs[0], blur, "Instances")
    b.link(capture.outputs["Growth"], blur, "Scale")
    store = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT_VECTOR", domain="INSTANCE")
    store.inputs["Name"].default_value = ATTR_VIEW_COLOR
    b.link(blur.outputs[0], store, "Geometry")
    b.link(capture.outputs["Colour"], store, "Value")
    return store.outputs[0]


def pixel_angle(fx_px: float) -> float:
    """The Pixel Angle input for a camera of focal length ``fx_px`` pixels (0: no blur)."""
    return 0.0 if fx_px <= 0 else 1.0 / float(fx_px)


def pixel_angle_for_scene(camera_data: camera_mod.BlenderCameraData) -> float:
    """Pixel Angle of the scene camera (what the server's eps2d low-pass corresponds to)."""
    camera = camera_mod.camera_from_blender(camera_data)
    return pixel_angle(float(np.sqrt(camera.fx * camera.fy)))

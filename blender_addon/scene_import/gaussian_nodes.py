"""The true-splat branch of the posing tree: one oriented box per Gaussian, instanced on
the splat points; the material (gaussian_material.py) draws each one as the server would.

Why a box and not a camera-facing quad: the material (gaussian_material.py) evaluates
the 3D Gaussian along each pixel's ray, so any front face that covers the Gaussian's
3-sigma ellipsoid draws the exact footprint, at any angle and anywhere in the frame
(no billboard that faces the image plane, hence no wrong shape off-centre, and no quad
seen edge-on that vanishes). The box is the unit cube of the Gaussian's whitened frame,
scaled by EXTENT sigma, so the material's object coordinates are the whitened
coordinates themselves. Back faces are culled so each ray meets one face.

Per head triangle (thousands, evaluated once per frame on the head's faces):

    F = [k t, k b, k n | centroid]      (geometry_nodes.py's triangle frame, as a matrix)

Per Gaussian, on the instances (Instance on Points copies only what the material reads:
hs_rgba and the packed SH coefficients, plus the few attributes used below):

    transform = F (hs_face) hs_xform_local     ([R S | mean] local, stored at import: the
                                               posed axes R S and mean in one product)
    rel = mean - camera location,  z = rel . camera forward
    growth_i = sqrt(1 + v / (k sigma_i)^2),  v = EPS2D cos(a) (z * pixel_angle)^2
             (gsplat's eps2d low-pass in 3D; a = angle off the optical axis, so the
             blur's projected area is the server's; 1/sigma_i^2 is hs_inv_sigma2 and
             k^2 = |transform e_x|^2 / sigma_0^2), applied by Scale Instances (local)

The view-dependent colour is the material's (it knows the view direction per pixel, so
the depsgraph does no colour work per frame): the box's vertices carry the rows of
B2H W^-1 (W the splat object's world matrix) and the SH degree for it.

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
# read by the material: per Gaussian (instance attributes) the colour and opacity and
# the packed SH coefficients; on the box's vertices (the same for every Gaussian) the
# rows of the world-to-head rotation and the SH degree
ATTR_RGBA = layout.ATTR_RGBA
ATTR_SH_PACKS = layout.ATTR_SH_PACKS
ATTR_VIEW_TO_HEAD = ("hs_view_to_head_0", "hs_view_to_head_1", "hs_view_to_head_2")
ATTR_SH_DEGREE = "hs_sh_degree"
# the named attributes of the splat points that only the true splats read: the instance
# transform's (hs_xform_local, hs_inv_sigma2; hs_face is the point preview's too) and the
# material's; and those the true splats do not read (hs_lod goes after the level of
# detail). geometry_nodes.py removes each set from the other branch, so the level of
# detail's Delete Geometry and Instance on Points copy only what is read.
GAUSSIAN_ONLY_ATTRIBUTES = ("hs_sh_*", "hs_x*", "hs_i*", "hs_rgba")
UNUSED_BY_GAUSSIANS = ("hs_v*", "hs_m*", "hs_q*", "hs_log*", "hs_radius*", "hs_c*", "hs_alpha")


def _frame_transform(b, corners):
    """F = [k t, k b, k n | centroid] of each bound triangle (the module docstring of
    geometry_nodes.py), built column by column (no rotation type: cheaper per face)."""
    p0, p1, p2 = corners
    e0 = b.vmath("SUBTRACT", p1, p0)
    cross = b.vmath("CROSS_PRODUCT", e0, b.vmath("SUBTRACT", p2, p0))
    len0 = b.vmath("LENGTH", e0)
    k = b.math("MULTIPLY", b.math("ADD", len0, b.math("DIVIDE", b.vmath("LENGTH", cross), len0)), 0.5)
    tangent, normal = b.vmath("NORMALIZE", e0), b.vmath("NORMALIZE", cross)
    columns = [tangent, b.vmath("CROSS_PRODUCT", normal, tangent), normal]
    columns = [b.vmath("SCALE", column, scale=k) for column in columns]
    columns.append(b.vmath("SCALE", b.vmath("ADD", b.vmath("ADD", p0, p1), p2), scale=1.0 / 3.0))
    frame = b.node("FunctionNodeCombineMatrix")
    for column, vector in enumerate(columns, start=1):
        split = b.node("ShaderNodeSeparateXYZ")
        b.link(vector, split, "Vector")
        for row, axis in enumerate("XYZ", start=1):
            b.link(split.outputs[axis], frame, f"Column {column} Row {row}")
        frame.inputs[f"Column {column} Row 4"].default_value = 1.0 if column == 4 else 0.0
    return frame.outputs[0]


def _matmul(b, left, right):
    node = b.node("FunctionNodeMatrixMultiply")
    b.link(left, node, 0)
    b.link(right, node, 1)
    return node.outputs[0]


def _blur_growth(b, mean, k2, pixel_angle):
    """Per posed axis i, sqrt(1 + v / (k sigma_i)^2): the axis lengthened so its variance
    grows by the blur variance v (|axis_i| = k sigma_i, as [t b n] is orthonormal), with

        v / k^2 = EPS2D pixel_angle^2 depth^3 / (|rel| k^2)

    (module docstring; the Math node's division is safe, 0 where |rel| k^2 is 0)."""
    location, forward = _camera(b)
    rel = b.vmath("SUBTRACT", mean, location)
    depth = b.vmath("DOT_PRODUCT", rel, forward)
    blur_scale = b.math("MULTIPLY", b.math("MULTIPLY", pixel_angle, pixel_angle), EPS2D)  # one value
    depth3 = b.math("MULTIPLY", b.math("MULTIPLY", depth, depth), depth)
    variance_over_k2 = b.math("MULTIPLY", b.math("DIVIDE", depth3, b.math("MULTIPLY", b.vmath("LENGTH", rel), k2)),
                                blur_scale)
    grown = b.node("ShaderNodeSeparateXYZ")
    b.link(b.vmath("MULTIPLY_ADD", b.attribute(layout.ATTR_INV_SIGMA2, "FLOAT_VECTOR"), variance_over_k2,
                   (1.0, 1.0, 1.0)), grown, "Vector")
    growth = b.node("ShaderNodeCombineXYZ")
    for axis in "XYZ":  # scalar square roots: the vector Power node made the blur twice as slow
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
    """The frame F of each head triangle, a field on the head's faces (thousands, not one
    per splat): corner j of the face is its j-th loop, the order of the rig's faces that
    the splats' corner indices come from."""
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


def _view_to_head(b):
    """B2H W^-1 (3x3, as a matrix node): a world-space direction -> head space, W the
    splat object's world matrix (the material rotates the camera-to-mean direction
    with it before evaluating the SH)."""
    own = b.node("GeometryNodeObjectInfo", transform_space="ORIGINAL")
    b.link(b.node("GeometryNodeSelfObject").outputs[0], own, "Object")
    inverse = b.node("FunctionNodeInvertMatrix")
    b.link(own.outputs["Transform"], inverse, "Matrix")
    to_head = b.node("FunctionNodeCombineMatrix")
    for row in range(4):
        for column in range(4):
            to_head.inputs[f"Column {column + 1} Row {row + 1}"].default_value = float(
                camera_mod.BLENDER_TO_HEAD[row, column])
    return _matmul(b, to_head.outputs[0], inverse.outputs[0])


def _box(b, *, sh_degree, material):
    """The instanced box, carrying on its vertices what every Gaussian shares this
    frame: the rows of B2H W^-1 (``ATTR_VIEW_TO_HEAD``) and the SH degree."""
    box = b.node("GeometryNodeMeshCube")
    box.inputs["Size"].default_value = (2 * EXTENT,) * 3
    geometry = box.outputs["Mesh"]
    rows = b.node("FunctionNodeSeparateMatrix")
    b.link(_view_to_head(b), rows, "Matrix")
    for row, name in enumerate(ATTR_VIEW_TO_HEAD, start=1):
        store = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT_VECTOR", domain="POINT")
        store.inputs["Name"].default_value = name
        b.link(geometry, store, "Geometry")
        vector = b.node("ShaderNodeCombineXYZ")
        for column, axis in enumerate("XYZ", start=1):
            b.link(rows.outputs[f"Column {column} Row {row}"], vector, axis)
        b.link(vector.outputs[0], store, "Value")
        geometry = store.outputs[0]
    degree = b.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT", domain="POINT")
    degree.inputs["Name"].default_value = ATTR_SH_DEGREE
    b.link(geometry, degree, "Geometry")
    b.link(sh_degree, degree, "Value")
    box_material = b.node("GeometryNodeSetMaterial")
    b.link(degree.outputs[0], box_material, "Geometry")
    b.link(material, box_material, "Material")
    return box_material.outputs[0]


def gaussian_instances(b, points, head_geometry, *, pixel_angle, sh_degree, material):
    """Instances of the Gaussian box on ``points`` (the splat points, not yet posed, with
    only the attributes the true splats read: UNUSED_BY_GAUSSIANS removed),
    posed from ``head_geometry`` (the evaluated head mesh); -> the instances socket.

    The triangle frames are built once per head face and sampled by each splat's face;
    the posed transform F [R S | mean] is one matrix product, evaluated on the instances
    (no captured copy), and the blur reads k back from it (so the face frames are
    evaluated once). The colour is the material's work (it knows the view): besides
    hs_face, hs_xform_local and hs_inv_sigma2 used here, the instances carry only what it
    reads (hs_rgba and the packed SH coefficients), so Instance on Points copies
    nothing more."""
    instance = b.node("GeometryNodeInstanceOnPoints")
    b.link(b.remove_attributes(points, "hs_lod"), instance, "Points")
    b.link(_box(b, sh_degree=sh_degree, material=material), instance, "Instance")

    frame = _per_splat(b, head_geometry, _face_frames(b, head_geometry), "FLOAT4X4")
    set_transform = b.node("GeometryNodeSetInstanceTransform")
    b.link(instance.outputs[0], set_transform, "Instances")
    b.link(_matmul(b, frame, b.attribute(layout.ATTR_XFORM_LOCAL, "FLOAT4X4")), set_transform, "Transform")
    # the blur scales each posed axis: the box's own axes (local space)
    mean = b.node("FunctionNodeTransformPoint")
    mean.inputs["Vector"].default_value = (0.0, 0.0, 0.0)
    b.link(b.node("GeometryNodeInstanceTransform").outputs[0], mean, "Transform")
    # k^2 = |posed axis 0|^2 / sigma_0^2, from the transform just set (no second
    # evaluation of the triangle frames)
    axis0 = b.node("FunctionNodeTransformDirection")
    axis0.inputs["Direction"].default_value = (1.0, 0.0, 0.0)
    b.link(b.node("GeometryNodeInstanceTransform").outputs[0], axis0, "Transform")
    inv_sigma2 = b.node("ShaderNodeSeparateXYZ")
    b.link(b.attribute(layout.ATTR_INV_SIGMA2, "FLOAT_VECTOR"), inv_sigma2, "Vector")
    k2 = b.math("MULTIPLY", b.vmath("DOT_PRODUCT", axis0.outputs[0], axis0.outputs[0]), inv_sigma2.outputs["X"])
    blur = b.node("GeometryNodeScaleInstances")
    blur.inputs["Local Space"].default_value = True
    b.link(set_transform.outputs[0], blur, "Instances")
    b.link(_blur_growth(b, mean.outputs[0], k2, pixel_angle), blur, "Scale")
    return blur.outputs[0]


def pixel_angle(fx_px: float) -> float:
    """The Pixel Angle input for a camera of focal length ``fx_px`` pixels (0: no blur)."""
    return 0.0 if fx_px <= 0 else 1.0 / float(fx_px)


def pixel_angle_for_scene(camera_data: camera_mod.BlenderCameraData) -> float:
    """Pixel Angle of the scene camera (what the server's eps2d low-pass corresponds to)."""
    camera = camera_mod.camera_from_blender(camera_data)
    return pixel_angle(float(np.sqrt(camera.fx * camera.fy)))

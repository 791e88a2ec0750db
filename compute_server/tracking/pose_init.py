"""Initial head pose and focal length from 2-D landmarks by PnP (OpenCV).

Gradient descent from a frontal start can fall into a mirrored or upside-down minimum on
strongly turned faces; a closed-form PnP on rigid landmarks gives a start that is
already right to a few degrees.
"""

from __future__ import annotations

import numpy as np

from shared.rotations import axis_angle_to_matrix


def _initial_focal(model_points: np.ndarray, image_points: np.ndarray, distance: float) -> float:
    """Focal (px) that makes the model's landmark spread match the image's at ``distance``."""
    spread_model = np.sqrt(((model_points[:, :2] - model_points[:, :2].mean(0)) ** 2).sum(1).mean())
    spread_image = np.sqrt(((image_points - image_points.mean(0)) ** 2).sum(1).mean())
    return float(spread_image * distance / max(spread_model, 1e-9))


def solve_pnp_pose(model_points: np.ndarray, image_points: np.ndarray, *, width: int, height: int,
                   camera_world_to_camera: np.ndarray, root_joint: np.ndarray,
                   focal: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Head rotation (axis-angle about the root joint), translation and focal for one photo.

    model_points: (L, 3) rest-pose landmark positions (head space); image_points: (L, 2)
    pixels; camera_world_to_camera: the fitting camera (4, 4); root_joint: (3,) head space.
    focal: known focal length in pixels (video tracking); estimated from the landmark spread if None.
    Returns (rotation (3,), translation (3,), focal_px) in the head model's parametrization
    (v' = R (v - root) + root + t), so the fit can start from them directly.
    """
    import cv2

    distance = float(np.linalg.norm(np.linalg.inv(camera_world_to_camera)[:3, 3]))
    if focal is None:
        focal = _initial_focal(model_points, image_points, distance)
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    # PnP in the fitting camera's frame: points are model points moved by the head transform.
    ok, rvec, tvec = cv2.solvePnP(model_points.astype(np.float64), image_points.astype(np.float64), K, None,
                                  flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return np.zeros(3), np.zeros(3), focal
    r_cam = axis_angle_to_matrix(rvec.reshape(3))     # model -> camera
    t_cam = tvec.reshape(3)
    # camera_from_model = W2C @ head_to_world  =>  head_to_world = inv(W2C) @ [r_cam t_cam]
    model_to_camera = np.eye(4)
    model_to_camera[:3, :3] = r_cam
    model_to_camera[:3, 3] = t_cam
    head_to_world = np.linalg.inv(camera_world_to_camera) @ model_to_camera
    rot = head_to_world[:3, :3]
    u, _, vt = np.linalg.svd(rot)
    rot = u @ vt
    from shared.rotations import matrix_to_quat, quat_to_axis_angle

    rotation = quat_to_axis_angle(matrix_to_quat(rot))
    translation = head_to_world[:3, 3] - (root_joint - rot @ root_joint)
    return rotation.astype(np.float64), translation.astype(np.float64), focal

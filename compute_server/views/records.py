"""The record every view synthesizer produces and the optimizer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.camera import Camera

HEAD_PARAM_KEYS = ("shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")


@dataclass
class TrainingView:
    """One supervised view of the avatar.

    image: (H, W, 3) float32 in [0, 1], the target colours (meaningful where ``mask`` > 0).
    mask: (H, W) float32 alpha target: 1 where the head is, 0 background.
    camera: the view's camera (head space), size H x W.
    head_params: numpy arrays under HEAD_PARAM_KEYS (one frame) that pose the mesh for this view.
    weight: how much this view counts relative to the input portrait (1.0).
    loss_mask: (H, W) where the photometric and alpha losses apply (None = everywhere).
        Synthesized views use it to say "trust only the head region I made".
    normals: (H, W, 3) optional target normals in the camera frame (OpenCV axes), unit
        where ``mask`` > 0 — from the mesh or a diffusion model's normal output.
    known: (H, W) optional: 1 where colours come from the real photo (directly or
        mirrored), 0 where they were filled in; diffusion backends repaint the rest.
    kind: "input", "mirror", "reprojected", "diffusion", ... for logs and metadata.
    """

    image: np.ndarray
    mask: np.ndarray
    camera: Camera
    head_params: dict[str, np.ndarray]
    weight: float = 1.0
    loss_mask: np.ndarray | None = None
    normals: np.ndarray | None = None
    known: np.ndarray | None = None
    kind: str = "input"
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"training view image must be (H, W, 3), got {self.image.shape}")
        if self.mask.shape != (h, w):
            raise ValueError(f"training view mask must be ({h}, {w}), got {self.mask.shape}")
        if (self.camera.width, self.camera.height) != (w, h):
            raise ValueError(f"training view camera is {self.camera.width}x{self.camera.height} but the image is {w}x{h}")
        for name in ("loss_mask", "known"):
            value = getattr(self, name)
            if value is not None and value.shape != (h, w):
                raise ValueError(f"training view {name} must be ({h}, {w})")
        if self.normals is not None and self.normals.shape != (h, w, 3):
            raise ValueError(f"training view normals must be ({h}, {w}, 3)")
        missing = [k for k in HEAD_PARAM_KEYS if k not in self.head_params]
        if missing:
            raise ValueError(f"training view head_params missing {missing}")
        if not self.weight >= 0:
            raise ValueError("training view weight must be >= 0")

"""Fitting energies shared by portrait fitting and video tracking (pure torch).

The landmark term is a robust reprojection error in pixels; priors keep coefficients
where the head model is trustworthy; smoothness terms follow VHAP's temporal energies
(GAF appendix B.1) and penalize frame-to-frame differences.
"""

from __future__ import annotations

import torch


def robust_pixel_error(predicted_px: torch.Tensor, observed_px: torch.Tensor, weights: torch.Tensor,
                       delta_px: float) -> torch.Tensor:
    """Weighted pseudo-Huber landmark error.

    predicted_px, observed_px: (B, L, 2) pixels; weights: (L,) or (B, L) (0 = unused).
    delta_px: where the loss turns from quadratic to linear, so a few wrong landmarks
    (occlusion, a detector slip) cannot drag the whole fit.
    Returns the mean over used landmarks, in squared-pixel-like units divided by delta^2.
    """
    dist_sq = ((predicted_px - observed_px) ** 2).sum(-1)
    huber = torch.sqrt(1.0 + dist_sq / (delta_px * delta_px)) - 1.0
    w = weights if weights.dim() == 2 else weights.expand_as(huber)
    return (huber * w).sum() / w.sum().clamp(min=1e-8)


def l2_prior(value: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared norm of each row."""
    return (value ** 2).sum(-1).mean()


def range_penalty(value: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Quadratic penalty outside [low, high] (zero inside), summed over elements, mean over batch."""
    below = (low - value).clamp(min=0.0)
    above = (value - high).clamp(min=0.0)
    return ((below ** 2 + above ** 2).sum(-1)).mean()


def temporal_smoothness(sequence: torch.Tensor) -> torch.Tensor:
    """Mean squared first difference of a (T, D) sequence (0 for a single frame)."""
    if sequence.shape[0] < 2:
        return sequence.sum() * 0.0
    return ((sequence[1:] - sequence[:-1]) ** 2).sum(-1).mean()


def temporal_acceleration(sequence: torch.Tensor) -> torch.Tensor:
    """Mean squared second difference of a (T, D) sequence: penalizes jitter, not motion."""
    if sequence.shape[0] < 3:
        return sequence.sum() * 0.0
    return ((sequence[2:] - 2 * sequence[1:-1] + sequence[:-2]) ** 2).sum(-1).mean()

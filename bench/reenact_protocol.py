"""The pure parts of the self-reenactment protocol (``bench/reenact.py``): which frames are
driven and which one is the source, how a driven frame is binned, the crop around the
head, and how per-frame scores add up into the JSON record. Numbers in, numbers out.

Angles come from the tracked head rotation (axis-angle, head space -> the video camera's
world, whose camera looks down -Z at the head): the head's forward axis (+Z) turned by the
rotation gives yaw (left/right turn) and how far the face is off the camera axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# Bins of |yaw(frame) - yaw(source)| in degrees (lower bound inclusive), as in the issue.
YAW_BINS = (("yaw_0_10", 0.0, 10.0), ("yaw_10_20", 10.0, 20.0), ("yaw_20_30", 20.0, 30.0),
            ("yaw_over_30", 30.0, math.inf), ("yaw_over_20", 20.0, math.inf))
# Mouth open when the tracked jaw opening (jaw_pose x, radians) exceeds this. Measured on
# d0 and d11 of the shared clips (303 frames with a face): jaw > 0.04 rad agrees in 91% of
# frames with MediaPipe's inner-lip gap (points 13-14) exceeding 8% of the face height
# (points 10-152), i.e. lips clearly apart with teeth or the cavity showing; the tracker
# keeps the jaw small and puts lip shapes into the expression, so a larger angle (0.1 rad:
# 61% agreement) would call most open mouths closed, and 0 would count parted lips of a
# smile as open.
MOUTH_OPEN_JAW_RAD = 0.04
BIN_KEYS = tuple(name for name, _, _ in YAW_BINS) + ("mouth_closed", "mouth_open")
IDENTITY_OK = 0.5               # identity_under_0_5: the target distance
# --source best: the cost of a frame for being a source photo, in "degrees": off-axis angle
# + jaw opening + this many degrees per unit of expression-coefficient norm (one named
# expression at full strength, a full smile, counts like a 10 degree turn).
EXPR_COST_DEG = 10.0
CROP_SCALE = 1.35               # crop side / the tracked mesh's larger image extent (room for hair)


# ----------------------------------------------------------------------------- angles

def head_forward(rotation_aa: np.ndarray) -> np.ndarray:
    """(T, 3) axis-angle head rotations -> (T, 3) unit forward (+Z of the head) in world."""
    from shared.rotations import axis_angle_to_matrix

    return axis_angle_to_matrix(np.asarray(rotation_aa, np.float64).reshape(-1, 3))[:, :, 2]


def yaw_deg(rotation_aa: np.ndarray) -> np.ndarray:
    """(T,) head yaw in degrees (0 = facing the camera, + = turned towards image left...
    the sign only matters in differences)."""
    f = head_forward(rotation_aa)
    return np.degrees(np.arctan2(f[:, 0], f[:, 2]))


def off_axis_deg(rotation_aa: np.ndarray) -> np.ndarray:
    """(T,) angle in degrees between the face's forward axis and the camera axis."""
    f = head_forward(rotation_aa)
    return np.degrees(np.arccos(np.clip(f[:, 2], -1.0, 1.0)))


def jaw_opening_rad(jaw_pose: np.ndarray) -> np.ndarray:
    """(T,) jaw opening in radians (the jaw joint's rotation about x; > 0 opens)."""
    return np.asarray(jaw_pose, np.float64).reshape(-1, 3)[:, 0]


# ----------------------------------------------------------------------------- frames

def training_stop(n_frames: int, holdout: float) -> int:
    """First frame of the held-out tail (``--holdout F``: the last fraction F of the clip);
    n_frames when nothing is held out. Training keeps at least one frame."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    if holdout == 0.0:
        return n_frames
    return int(min(max(1, round(n_frames * (1.0 - holdout))), n_frames - 1))


def evaluation_frames(found: np.ndarray, stride: int, exclude, holdout: float = 0.0) -> np.ndarray:
    """Driven frames: every ``stride``-th frame (from the held-out tail's start when
    ``holdout`` > 0, else from 0), without the frames the avatar was made from (``exclude``:
    the source, and the other training frames of ``--train-on frames4``) and without frames
    where tracking found no face (their parameters are interpolated guesses)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    found = np.asarray(found, dtype=bool)
    start = training_stop(len(found), holdout) if holdout else 0
    frames = np.arange(start, len(found), stride)
    return frames[~np.isin(frames, np.atleast_1d(exclude)) & found[frames]]


def source_cost(rotation_aa: np.ndarray, jaw_pose: np.ndarray, expr: np.ndarray) -> np.ndarray:
    """(T,) how far each frame is from a frontal, neutral photo (see EXPR_COST_DEG)."""
    jaw = np.degrees(np.maximum(jaw_opening_rad(jaw_pose), 0.0))
    expr_norm = np.linalg.norm(np.asarray(expr, np.float64).reshape(len(jaw), -1), axis=1)
    return off_axis_deg(rotation_aa) + jaw + EXPR_COST_DEG * expr_norm


def choose_source(spec: str, found: np.ndarray, frame_error_px: np.ndarray, cost: np.ndarray,
                  stop: int | None = None) -> int:
    """The source frame among frames [0, stop): ``spec`` "best" -> the lowest ``cost`` among
    well-tracked frames (face found, landmark error at most twice the median); a frame number
    -> that frame, or the first frame after it with a face. ValueError when none qualifies."""
    found = np.asarray(found, dtype=bool)
    stop = len(found) if stop is None else stop
    usable = found.copy()
    usable[stop:] = False
    if not usable.any():
        raise ValueError("no frame with a face in the training part of the clip")
    if spec == "best":
        err = np.asarray(frame_error_px, np.float64)
        good = usable & np.isfinite(err)
        if good.any():
            good &= err <= 2.0 * np.median(err[good])
        candidates = np.flatnonzero(good if good.any() else usable)
        return int(candidates[np.argmin(np.asarray(cost)[candidates])])
    first = int(spec)
    if not 0 <= first < stop:
        raise ValueError(f"source frame {first} is outside the training frames 0..{stop - 1}")
    after = np.flatnonzero(usable[first:])
    if not after.size:
        raise ValueError(f"no frame with a face at or after frame {first}")
    return first + int(after[0])


def spread_frames(candidates: np.ndarray, count: int) -> list[int]:
    """``count`` frames spread evenly over ``candidates`` (sorted, unique)."""
    candidates = np.asarray(candidates, dtype=int)
    if candidates.size <= count:
        return candidates.tolist()
    picks = np.linspace(0, candidates.size - 1, num=count).round().astype(int)
    return candidates[np.unique(picks)].tolist()


def strip_frames(frames: np.ndarray, yaw_diff: np.ndarray, jaw_open: np.ndarray, count: int = 6) -> list[int]:
    """Frames for the strip image: the largest |yaw difference|, the widest mouth, and the
    rest spread over the clip, in clip order."""
    frames = np.asarray(frames, dtype=int)
    if frames.size == 0:
        return []
    chosen = {int(frames[np.argmax(np.abs(yaw_diff))]), int(frames[np.argmax(jaw_open)])}
    for f in spread_frames(frames, count):
        if len(chosen) >= count:
            break
        chosen.add(int(f))
    return sorted(chosen)


# ----------------------------------------------------------------------------- crop

def head_crop_box(points_px: np.ndarray, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """(x0, y0, side): the square around (N, 2) image points of the tracked head, centred on
    their bounding box, ``scale`` times its larger side (it may leave the frame)."""
    p = np.asarray(points_px, np.float64).reshape(-1, 2)
    lo, hi = p.min(axis=0), p.max(axis=0)
    side = float(scale * max(hi - lo))
    if not side > 0:
        raise ValueError("the head's image points span no area")
    cx, cy = (lo + hi) / 2
    return float(cx - side / 2), float(cy - side / 2), side


# ----------------------------------------------------------------------------- scores

@dataclass
class FrameScore:
    """One driven frame. yaw_diff_deg: tracked yaw minus the source's; jaw_open_rad: the
    driven frame's tracked jaw opening. psnr / psnr_interior in dB over the union / the
    shared interior of the head masks; ssim over the union; lpips or None; akd_px: mean
    landmark distance at 512 px or None (no face found in one of the two images);
    identity_distance: dlib descriptor distance of the render to the source frame or None
    (no face found in the render)."""

    frame: int
    yaw_diff_deg: float
    jaw_open_rad: float
    psnr: float
    psnr_interior: float
    ssim: float
    lpips: float | None
    akd_px: float | None
    identity_distance: float | None


def bins_of(score: FrameScore) -> list[str]:
    """The bin keys a frame belongs to (a yaw bin, yaw_over_20 when it applies, a mouth bin)."""
    a = abs(score.yaw_diff_deg)
    keys = [name for name, lo, hi in YAW_BINS if lo <= a < hi]
    keys.append("mouth_open" if score.jaw_open_rad > MOUTH_OPEN_JAW_RAD else "mouth_closed")
    return keys


def _mean(values) -> float | None:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    return float(v.mean()) if v.size else None


def summarize(scores: list[FrameScore]) -> dict:
    """The JSON summary of a set of frames (a clip, or all clips pooled frame by frame):
    frames, means of every metric (None when no frame has a value), identity distance median
    and the fraction of frames under IDENTITY_OK (a frame without a face in the render counts
    as not under), and per bin {frames, psnr, ssim}."""
    ids = [s.identity_distance for s in scores]
    found = [d for d in ids if d is not None]
    out = {"frames": len(scores), "psnr": _mean(s.psnr for s in scores), "ssim": _mean(s.ssim for s in scores),
           "psnr_interior": _mean(s.psnr_interior for s in scores), "lpips": _mean(s.lpips for s in scores),
           "akd_px": _mean(s.akd_px for s in scores),
           "identity_distance_median": float(np.median(found)) if found else None,
           "identity_under_0_5": (sum(d < IDENTITY_OK for d in found) / len(scores)) if scores else None,
           "bins": {}}
    for key in BIN_KEYS:
        group = [s for s in scores if key in bins_of(s)]
        out["bins"][key] = {"frames": len(group), "psnr": _mean(s.psnr for s in group),
                            "ssim": _mean(s.ssim for s in group)}
    return out


def clip_record(name: str, scores: list[FrameScore], **extra) -> dict:
    """One entry of the JSON's "clips": {"clip": name, <summarize>, <extra>, "per_frame": [...]}."""
    return {"clip": name, **summarize(scores), **extra, "per_frame": [asdict(s) for s in scores]}


def run_record(clips: list[dict], scores_by_clip: dict[str, list[FrameScore]], **settings) -> dict:
    """The whole JSON: {"overall": <summarize of every frame of every clip>, "clips": [...],
    **settings}."""
    pooled = [s for scores in scores_by_clip.values() for s in scores]
    return {"overall": {**summarize(pooled), "clips": len(scores_by_clip)}, "clips": clips, **settings}

"""Head-model fitting and video tracking benchmark (issue 3).

    python -m bench.tracking            # astronaut + ../shared/data portraits and driving videos

Prints: per portrait, the median landmark reprojection error (px at 512) and fitting
time; per video, tracking time per frame, median error, and jitter on the most static
stretch of the clip (frame-to-frame rotation in degrees and translation in mm, and the raw
landmarks' own jitter in pixels for comparison).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STATIC_WINDOW = 15


def _portraits() -> list[tuple[str, bytes]]:
    import skimage.data
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, "PNG")
    items = [("astronaut.png", buf.getvalue())]
    items += [(p.name, p.read_bytes()) for p in sorted((DATA / "portraits").glob("*.jpg"))]
    return items


def most_static_window(landmarks: np.ndarray, found: np.ndarray, size: int) -> int:
    """Start of the ``size``-frame window where the face moves least (rigid landmark centroid)."""
    from compute_server.tracking.landmark_sets import rigid_landmark_indices

    centre = np.nanmean(landmarks[:, rigid_landmark_indices(), :2], axis=1)          # (T, 2)
    speed = np.linalg.norm(np.diff(centre, axis=0), axis=1)
    speed[~(found[1:] & found[:-1])] = np.inf
    costs = [speed[s:s + size - 1].sum() for s in range(0, len(speed) - size + 2)]
    return int(np.argmin(costs))


def jitter(values: np.ndarray) -> float:
    """RMS of the frame-to-frame change of (T, D) values: 0 for a still or uniformly moving head."""
    accel = values[2:] - 2 * values[1:-1] + values[:-2]
    return float(np.sqrt((np.linalg.norm(accel, axis=1) ** 2).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from compute_server.face import prepare_portrait
    from compute_server.face.video_landmarks import track_video_landmarks
    from compute_server.head.model import load_head_model
    from compute_server.tracking.portrait_fit import fit_portraits
    from compute_server.tracking.video_track import track_landmarks

    model = load_head_model(device=torch.device(args.device))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {time.strftime('%Y-%m-%d')}\n")
    print("| portrait | median landmark error (px at 512) | fit time (s) |")
    print("|---|---:|---:|")
    for name, data in _portraits():
        portrait = prepare_portrait(data, name, size=512)
        t = time.perf_counter()
        fit = fit_portraits(model, [portrait])
        print(f"| {name} | {fit.images[0].median_error_px:.2f} | {time.perf_counter() - t:.2f} |")
    print("\n| video | frames | landmarks (s/frame) | tracking (s/frame) | median error (px) | static stretch | "
          "pose jitter (deg, mm) | raw landmark jitter (px) |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    for path in sorted((DATA / "driving").glob("*.mp4")):
        t = time.perf_counter()
        lms = track_video_landmarks(str(path))
        t_lm = time.perf_counter() - t
        t = time.perf_counter()
        result = track_landmarks(model, lms.landmarks, lms.found, lms.frame_size, lms.fps)
        t_track = time.perf_counter() - t
        n = lms.n_frames
        start = most_static_window(lms.landmarks, lms.found, STATIC_WINDOW)
        window = slice(start, start + STATIC_WINDOW)
        motion = result.motion
        rot_jitter = np.degrees(jitter(motion.rotation[window]))
        trans_jitter = 1000 * jitter(motion.translation[window])
        raw = jitter(np.nanmean(lms.landmarks[window, :468, :2], axis=1))
        err = np.nanmedian(result.frame_error_px)
        print(f"| {path.name} | {n} | {t_lm / n:.3f} | {t_track / n:.3f} | {err:.2f} | frames {start}-{start + STATIC_WINDOW - 1} | "
              f"{rot_jitter:.3f}, {trans_jitter:.2f} | {raw:.2f} |")


if __name__ == "__main__":
    main()

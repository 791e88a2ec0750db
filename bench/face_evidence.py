"""Is it a person? The evidence of compute_server/face/person_check.py on people vs animals.

    python -m bench.face_evidence [--animals DIR ...] [--people DIR ...] [--fit] [--json FILE]

People: ../shared/data portraits, skimage's astronaut and cameraman, matplotlib's Grace
Hopper, three frames (first, middle, last) of every ../shared/data driving clip, and any
``--people`` folders; each also as greyscale, sepia, colourised (grey + smoothed colour), a
pencil drawing and a painterly stylization. Animals: skimage's Chelsea the cat and every
image in the ``--animals`` folders, each also in greyscale. Nothing is downloaded.

Prints one row per image (found by MediaPipe or not, the evidence, the verdict) and a
summary per group over the faces MediaPipe found: the range of the deciding cascade votes,
how many were accepted, and how often the two recorded signals (FaceMesh re-finding the
face on the crop, person segmentation >= 0.8 on the face) said "person". ``--fit`` adds the head-model fit's median
landmark error and shape RMS (originals only, ~8 s each) to show that they do not separate
people from animals.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
PERSON_ON_FACE_HIGH = 0.8  # what the summary counts as "the segmenter says person"


def greyscale(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> the same picture in grey, still 3 channels."""
    import cv2

    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1)


def sepia(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> a brown-toned monochrome print."""
    grey = greyscale(rgb)[..., 0].astype(np.float32) / 255.0
    toned = np.stack([grey * 1.07 + 0.03, grey * 0.95 + 0.01, grey * 0.75], axis=-1)
    return np.clip(toned * 255.0, 0, 255).astype(np.uint8)


def colourised(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> a hand-colourised look: the grey picture's lightness with the
    original colours heavily blurred and weakened (as in a tinted old photo)."""
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    sigma = max(rgb.shape[:2]) / 60.0
    chroma = cv2.GaussianBlur(lab[..., 1:], (0, 0), sigma)
    lab[..., 1:] = 128.0 + 0.6 * (chroma - 128.0)
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def pencil_drawing(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> a grey pencil sketch (OpenCV's pencilSketch)."""
    import cv2

    grey, _ = cv2.pencilSketch(rgb, sigma_s=60, sigma_r=0.07, shade_factor=0.05)
    return np.repeat(grey[..., None], 3, axis=-1)


def painterly(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> flat colour regions with dark edges (OpenCV's stylization)."""
    import cv2

    return cv2.stylization(rgb, sigma_s=60, sigma_r=0.45)


PERSON_VARIANTS = {"": None, "grey": greyscale, "sepia": sepia, "colourised": colourised,
                   "drawing": pencil_drawing, "painterly": painterly}
ANIMAL_VARIANTS = {"": None, "grey": greyscale}


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def people() -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) uint8) of the people on this machine."""
    import av
    import skimage.data

    items = [(p.stem, _read(p)) for p in sorted((DATA / "portraits").glob("*.jpg"))]
    cameraman = greyscale(np.stack([skimage.data.camera()] * 3, axis=-1))
    items += [("astronaut", skimage.data.astronaut()), ("cameraman", cameraman)]
    try:
        import matplotlib.cbook

        hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        items.append(("grace_hopper", _read(hopper)))
    except (ImportError, OSError, ValueError):
        pass
    for clip in sorted((DATA / "driving").glob("*.mp4")):
        with av.open(str(clip)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        for k in sorted({0, len(frames) // 2, len(frames) - 1}):
            items.append((f"{clip.stem}#{k}", frames[k]))
    return items


def folder_images(folders: list[str]) -> list[tuple[str, np.ndarray]]:
    return [(p.stem, _read(p)) for folder in folders for p in sorted(Path(folder).iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES]


def measure(name: str, rgb: np.ndarray, fit: bool = False) -> dict:
    """One image through prepare_portrait without the refusal: its evidence and verdict."""
    from PIL import Image

    from compute_server.errors import UserError
    from compute_server.face import prepare_portrait

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "PNG")
    started = time.perf_counter()
    try:
        portrait = prepare_portrait(buf.getvalue(), name, require_person=False)
    except UserError as exc:
        return {"name": name, "found": False, "code": exc.code}
    row = {"name": name, "found": True, **portrait.face_evidence.summary(),
           "accepted": portrait.face_evidence.is_person, "seconds": round(time.perf_counter() - started, 2)}
    if fit:
        row.update(_fit_figures(portrait))
    return row


def _fit_figures(portrait) -> dict:
    from compute_server.head.model import load_head_model
    from compute_server.tracking.portrait_fit import fit_portraits

    result = fit_portraits(load_head_model(), [portrait])
    return {"fit_median_px": round(result.images[0].median_error_px, 2),
            "shape_rms": round(float(np.sqrt(np.mean(result.shape ** 2))), 3)}


def summarize(rows: list[dict]) -> dict:
    """Ranges and counts over the faces MediaPipe found, and the verdicts."""
    found = [r for r in rows if r["found"]]
    out = {"images": len(rows), "found": len(found), "accepted": sum(r["accepted"] for r in found),
           "refound_on_crop": sum(r["refound_on_crop"] for r in found),
           "person_on_face_high": sum(r["person_on_face"] >= PERSON_ON_FACE_HIGH for r in found)}
    for key in ("cascade_votes", "person_on_face", "fit_median_px", "shape_rms"):
        values = [r[key] for r in found if key in r]
        if values:
            out[key] = (min(values), max(values))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.face_evidence", description=__doc__.split("\n")[0])
    parser.add_argument("--animals", nargs="*", default=[], help="folders of animal images")
    parser.add_argument("--people", nargs="*", default=[], help="more folders of pictures of people")
    parser.add_argument("--fit", action="store_true", help="also fit the head model (originals only)")
    parser.add_argument("--json", help="write every row and the summaries here")
    args = parser.parse_args(argv)
    import skimage.data

    groups = {"person": (people() + folder_images(args.people), PERSON_VARIANTS),
              "animal": ([("chelsea_the_cat", skimage.data.chelsea())] + folder_images(args.animals), ANIMAL_VARIANTS)}
    report: dict = {}
    for group, (images, variants) in groups.items():
        rows = []
        for name, rgb in images:
            for variant, transform in variants.items():
                label = f"{name}/{variant}" if variant else name
                row = measure(label, rgb if transform is None else transform(rgb), fit=args.fit and not variant)
                row["group"] = group
                rows.append(row)
                print(group, json.dumps(row), flush=True)
        report[group] = {"rows": rows, "summary": summarize(rows)}
    print("\n| group | images | MediaPipe found a face | cascade votes (range) | accepted | re-found on crop "
          "| person segmentation >= 0.8 on the face |")
    print("|---|---|---|---|---|---|---|")
    for group, data in report.items():
        s = data["summary"]
        votes = f"{s['cascade_votes'][0]}-{s['cascade_votes'][1]}" if "cascade_votes" in s else "n/a"
        print(f"| {group} | {s['images']} | {s['found']} | {votes} | {s['accepted']} | {s['refound_on_crop']} "
              f"| {s['person_on_face_high']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

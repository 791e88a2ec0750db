"""Figure grids of the quality benchmarks (Pillow only): labelled tiles in rows.

Images are (H, W, 3) uint8 or float in [0, 1]; every tile is resized to one square size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_PX = 14


def to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image[..., :3]
    return (np.clip(image[..., :3], 0, 1) * 255).round().astype(np.uint8)


def square_crop(image: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """The (rows, cols) window grown to a square around its centre (clamped to the image)."""
    h, w = image.shape[:2]
    side = max(rows.stop - rows.start, cols.stop - cols.start)
    cy, cx = (rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2
    top = int(np.clip(cy - side // 2, 0, max(0, h - side)))
    left = int(np.clip(cx - side // 2, 0, max(0, w - side)))
    return image[top:top + side, left:left + side]


def grid_figure(rows: list[list[np.ndarray | None]], path: Path, *, tile_px: int = 128,
                column_labels: list[str] | None = None, row_labels: list[str] | None = None) -> Path:
    """Save a grid of tiles (None = empty tile) with optional labels above the columns and at
    the top-left of each row's first tile; -> the path (PNG)."""
    n_cols = max(len(r) for r in rows)
    header = LABEL_PX + 4 if column_labels else 0
    canvas = Image.new("RGB", (n_cols * tile_px, header + len(rows) * tile_px), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(column_labels or []):
        draw.text((c * tile_px + 4, 2), label, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            if tile is None:
                continue
            image = Image.fromarray(to_uint8(tile)).resize((tile_px, tile_px), Image.LANCZOS)
            canvas.paste(image, (c * tile_px, header + r * tile_px))
        if row_labels and r < len(row_labels):
            draw.text((3, header + r * tile_px + 2), row_labels[r], fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path

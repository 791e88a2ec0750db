"""The demo folder's front page: index.html (stills, animations, links) and a contact
sheet PNG of the same, so a person sees the result without any tool."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image


def animated_gif(frames: list[Path], out: Path, *, fps: float = 24.0, size: int = 256,
                 background=(255, 255, 255)) -> Path | None:
    """An animated GIF from PNG frames (RGBA flattened on ``background``)."""
    if not frames:
        return None
    images = []
    for path in frames:
        img = Image.open(path).convert("RGBA")
        img.thumbnail((size, size))
        flat = Image.new("RGB", img.size, background)
        flat.paste(img, mask=img.split()[3])
        images.append(flat.convert("P", palette=Image.Palette.ADAPTIVE))
    images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return out


def contact_sheet(stills: list[tuple[str, Path]], out: Path, *, tile: int = 256) -> Path:
    """A grid of titled stills (4 per row)."""
    from PIL import ImageDraw

    columns = 4
    rows = (len(stills) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 20)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (title, path) in enumerate(stills):
        img = Image.open(path).convert("RGBA")
        img.thumbnail((tile, tile))
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.split()[3])
        x, y = (i % columns) * tile, (i // columns) * (tile + 20)
        sheet.paste(flat, (x + (tile - img.width) // 2, y + 20 + (tile - img.height) // 2))
        draw.text((x + 4, y + 4), title, fill=(0, 0, 0))
    sheet.save(out)
    return out


def write_index(out_dir: Path, *, title: str, stills: list[tuple[str, Path]], animations: list[tuple[str, Path]],
                links: list[tuple[str, Path]], facts: list[tuple[str, str]]) -> Path:
    """index.html with relative links (the folder can be moved or zipped)."""
    rel = lambda p: html.escape(str(Path(p).relative_to(out_dir)))  # noqa: E731
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}figure{display:inline-block;"
             "margin:.5em;text-align:center}img{max-width:256px;border:1px solid #ddd}td{padding:.2em 1em}</style>",
             f"<h1>{html.escape(title)}</h1>", "<table>"]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts]
    parts.append("</table><h2>Stills</h2>")
    parts += [f"<figure><img src='{rel(p)}'><figcaption>{html.escape(t)}</figcaption></figure>" for t, p in stills]
    parts.append("<h2>Animations</h2>")
    parts += [f"<figure><img src='{rel(p)}'><figcaption>{html.escape(t)}</figcaption></figure>" for t, p in animations]
    parts.append("<h2>Files</h2><ul>")
    parts += [f"<li><a href='{rel(p)}'>{html.escape(t)}</a></li>" for t, p in links]
    parts.append("</ul>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def save_png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path

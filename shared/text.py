"""Text a client sends that others will show: names without control characters.

Why: an avatar name travels to Blender's UI, logs, file names and other clients. NUL,
line breaks, the right-to-left override (U+202E) or zero-width characters in it can hide
or disguise what a person reads, so they are removed where names enter the server.
"""

from __future__ import annotations

import unicodedata


def clean_text(value: str) -> str:
    """``value`` without control or format characters (Unicode categories C*: NUL, line
    breaks, U+202E, zero-width...) or unusual spaces: each run of them and of whitespace
    becomes one space; the ends are trimmed."""
    out, gap = [], False
    for char in value:
        if unicodedata.category(char)[0] in "CZ" or char.isspace():  # Z: every space, C: controls
            gap = True
            continue
        if gap and out:
            out.append(" ")
        out.append(char)
        gap = False
    return "".join(out)

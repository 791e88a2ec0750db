"""The reference data beside the checkout (``../shared/data``) that tests read, and the rule
that CI must have it.

Why: tests that need a portrait, a driving clip or the head scan skip on a machine without
them, which is right for a contributor's laptop but would let CI silently stop running the
real-footage tests. CI sets ``HEADSPLAT_REQUIRE_SHARED_DATA=1`` (``.ci/run``; ``CI=true``
counts too), and then a missing file stops the run before any test, naming the files.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REQUIRE_ENV = "HEADSPLAT_REQUIRE_SHARED_DATA"
# Every file a test skips without (relative to ../shared/data).
REQUIRED_FILES = (
    "driving/liveportrait_d0.mp4",
    "driving/liveportrait_d12.mp4",
    "heads/leeperrysmith/LeePerrySmith.glb",
    "portraits/liveportrait_s0.jpg",
    "portraits/liveportrait_s1.jpg",
    "portraits/liveportrait_s5.jpg",
    "portraits/liveportrait_s7.jpg",
)


def shared_data_required(environ=os.environ) -> bool:
    return environ.get(REQUIRE_ENV) == "1" or environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_shared_files(root: Path = SHARED_DATA) -> list[str]:
    return [name for name in REQUIRED_FILES if not (root / name).is_file()]

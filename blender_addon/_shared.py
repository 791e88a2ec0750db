"""The one place the add-on imports HeadSplat's ``shared`` package from.

Inside the built zip a copy of ``shared/`` is vendored next to this file (so the add-on
works without a repository checkout); in a repository checkout the top-level ``shared``
package is used. Every module of the add-on imports shared code through here, e.g.
``from ._shared import camera, motion``.
"""

from __future__ import annotations

import importlib

from . import _deps

_deps.ensure()


def _shared_package():
    try:
        return importlib.import_module(f"{__package__}.shared")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.shared":
            raise
        return importlib.import_module("shared")


_package = _shared_package()
PACKAGE_NAME = _package.__name__
__version__ = _package.__version__
PROTOCOL_VERSION = _package.PROTOCOL_VERSION
VIDEO_SUFFIXES = _package.VIDEO_SUFFIXES

camera = importlib.import_module(f"{PACKAGE_NAME}.camera")
rotations = importlib.import_module(f"{PACKAGE_NAME}.rotations")
motion = importlib.import_module(f"{PACKAGE_NAME}.motion")
splat_format = importlib.import_module(f"{PACKAGE_NAME}.splat_format")
rig_math = importlib.import_module(f"{PACKAGE_NAME}.rig_math")
curve_sampling = importlib.import_module(f"{PACKAGE_NAME}.curve_sampling")
preset_choice = importlib.import_module(f"{PACKAGE_NAME}.preset_choice")


def client_module():
    """``shared.client`` (needs pyzmq and msgpack); raises ImportError with a sentence
    saying how to fix a missing dependency."""
    missing = _deps.ensure()
    if missing:
        raise ImportError(_deps.missing_message(missing))
    return importlib.import_module(f"{PACKAGE_NAME}.client")

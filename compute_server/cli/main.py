"""The ``headsplat`` command: subcommands are the modules of this package.

Every module here that defines ``register(subparsers)`` adds a subcommand (serve, info,
jobs, keys, demo; later issues add create, track, render, ...): ``register`` adds its
parser and sets ``func(args) -> exit code`` with ``set_defaults``.

Exit codes: 0 success; 1 the server answered with an error (or a job failed);
2 bad usage or configuration; 3 no server answered; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from compute_server.errors import UserError
from shared import __version__
from shared.client import ServerError, ServerUnavailable

EXIT_OK, EXIT_SERVER_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_NOT_COMMANDS = {"main", "common"}


def command_modules() -> list:
    """The subcommand modules of this package, sorted by name."""
    package = importlib.import_module(__package__ or "compute_server.cli")
    modules = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name in _NOT_COMMANDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headsplat",
        description="HeadSplat: photoreal, animatable Gaussian head avatars from a portrait, for Blender.")
    parser.add_argument("--version", action="version", version=f"headsplat {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except UserError as exc:
        print(f"headsplat: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except ServerUnavailable as exc:
        print(f"headsplat: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ServerError as exc:
        print(f"headsplat: the server answered: {exc.message} [{exc.code}]", file=sys.stderr)
        return EXIT_SERVER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

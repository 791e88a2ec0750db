"""The layers of compute_server, as docs/architecture.md draws them: a package imports only
packages on its own layer or below. A back edge (a library reaching up into the trainer,
the pipeline, the server or the CLI) fails here with the file and line that made it.

Imports are read from the source (every import statement, function-level ones included),
so a lazy import cannot hide an edge. Plugins the server loads by name (``PLUGIN_MODULES``)
are not edges: the server does not depend on them."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "compute_server"

# Lower number = lower layer. Each top-level package or module of compute_server has one.
LAYERS = {
    # foundations: errors, devices, request checks, camera maths in torch
    "errors": 0, "device": 0, "gpu_memory": 0, "camera_torch": 0, "validation": 0,
    # libraries: depend on nothing above them
    "head": 1, "render": 1, "face": 1, "storage": 1, "splats": 1,
    # what the libraries are composed into: training views, tracking, the job machinery
    "views": 2, "tracking": 2, "jobs": 2,
    "diffusion": 3,
    "training": 4,     # the trainer (init, optimize)
    "pipeline": 5,     # the jobs: avatar.create, motion.track, render.frames
    # server and cluster know each other (lazily): the server picks the cluster's job manager
    # under --cluster, and a cluster worker builds a server context to load the job plugins
    "server": 6, "cluster": 6,
    "doctor": 7, "client_tools": 7,
    "demo": 8,
    "cli": 9,
}
LIBRARIES = ("splats", "head", "render", "face", "storage")
UPPER = ("pipeline", "server", "training", "cli")


def _top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "compute_server" and len(parts) > 1 else None


def _edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, "path:line") for every import across packages."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).with_suffix("").parts
        dotted = list(rel[:-1]) if rel[-1] == "__init__" else list(rel)
        package = dotted if rel[-1] == "__init__" else dotted[:-1]
        source = _top(".".join(dotted)) or rel[-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                targets = [module] + [f"{module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                top = _top(target) if target.startswith("compute_server.") else None
                if top is None and target.split(".")[0] in ("tests", "tools"):
                    top = target.split(".")[0]
                if top and top != source:
                    edges.append((source, top, f"{path.relative_to(REPO_ROOT)}:{node.lineno}"))
    return edges


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    missing = sorted((packages | modules) - set(LAYERS))
    assert not missing, f"give these a layer in LAYERS (and a place in docs/architecture.md): {missing}"


def test_no_package_imports_one_above_it():
    back = [f"{src} -> {dst} ({where})" for src, dst, where in _edges()
            if dst in LAYERS and LAYERS[dst] > LAYERS[src]]
    assert not back, "imports that go up a layer:\n" + "\n".join(back)


def test_libraries_never_reach_into_the_trainer_pipeline_server_or_cli():
    back = [f"{src} -> {dst} ({where})" for src, dst, where in _edges() if src in LIBRARIES and dst in UPPER]
    assert not back, "\n".join(back)


def test_the_server_package_never_imports_tests_or_build_tools():
    bad = [f"{src} -> {dst} ({where})" for src, dst, where in _edges() if dst in ("tests", "tools")]
    assert not bad, "\n".join(bad)


def test_the_edge_reader_sees_relative_and_function_level_imports():
    """The walk itself: a back edge written as a lazy relative import is still found."""
    edges = _edges()
    assert ("training", "splats") in {(s, d) for s, d, _ in edges}          # from ..splats.model import
    assert ("pipeline", "training") in {(s, d) for s, d, _ in edges}
    assert ("cli", "demo") in {(s, d) for s, d, _ in edges}                 # a function-level import

"""Which third-party modules a command can import, read statically from the source, and
which distributions an install of the project with some extras brings.

Used by tests/test_demo.py to check that `./dev.sh demo` installs every module the demo
imports (issue: the demo's Blender step once needed `bpy` from the test extra only)."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCAL_PACKAGES = ("compute_server", "shared", "blender_addon")
# Modules that Blender itself provides (compiled into bpy or in its bundled scripts folder),
# importable once bpy is: the bpy distribution brings them, packages_distributions() cannot see it.
BLENDER_MODULES = frozenset({"mathutils", "bpy_extras", "bmesh", "gpu", "gpu_extras", "bl_math", "aud", "idprop",
                             "imbuf", "freestyle", "bl_ui", "bl_operators", "bpy_types", "addon_utils",
                             "rna_prop_ui"})


@dataclass(frozen=True)
class ThirdPartyImport:
    module: str          # top-level module name, e.g. "bpy"
    where: str           # "path:line" of the first import seen


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


_IMPORT_FAILURES = ("ImportError", "ModuleNotFoundError", "Exception", "BaseException")


def _is_guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in ``try: ... except ImportError`` (or a broader handler)."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                if handler.type is None:
                    return True
                names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(isinstance(n, ast.Name) and n.id in _IMPORT_FAILURES for n in names):
                    return True
        child, parent = parent, parents.get(parent)
    return False


def _module_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def _imports_of(path: Path, dotted: str) -> list[tuple[str, int]]:
    """(absolute module name, line) of every non-optional import in a file, function bodies included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    # A module the file imports under a guard anywhere is optional in the whole file: the
    # file checks that it imports (e.g. ``nvdiffrast_available()``) before using it.
    optional = {name.split(".")[0] for n in imports if not getattr(n, "level", 0) and _is_guarded(n, parents)
                for name in _module_names(n)}
    found = []
    for node in imports:
        if not getattr(node, "level", 0) and {m.split(".")[0] for m in _module_names(node)} <= optional:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            # "from pkg import submodule" imports pkg.submodule when it is a module
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def third_party_imports(root: Path, entries: list[str], files: list[Path] = ()) -> list[ThirdPartyImport]:
    """Every third-party top-level module reachable from ``entries`` (dotted local module
    names) and ``files`` (scripts run as processes), following local imports transitively."""
    seen: set[Path] = set()
    third: dict[str, ThirdPartyImport] = {}
    todo: list[tuple[Path, str]] = [(p, p.stem) for p in files]
    todo += [(f, e) for e in entries if (f := _module_file(root, e)) is not None]
    while todo:
        path, dotted = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module, line in _imports_of(path, dotted):
            top = module.split(".")[0]
            if not top or top in sys.stdlib_module_names or top == "__future__":
                continue
            if top in LOCAL_PACKAGES:
                target = _module_file(root, module)
                if target is not None and target not in seen:
                    todo.append((target, module))
                continue
            third.setdefault(top, ThirdPartyImport(top, f"{path.relative_to(root)}:{line}"))
    return sorted(third.values(), key=lambda t: t.module)


def extras_of_install_line(dev_script: Path, variable: str) -> list[str]:
    """The extras named in a ``VARIABLE="[a,b]"`` line of dev.sh."""
    match = re.search(rf'^{variable}="\[([^\]]*)\]"', dev_script.read_text(), re.MULTILINE)
    if match is None:
        raise AssertionError(f"{dev_script} has no {variable}=\"[...]\" line")
    return [e.strip() for e in match.group(1).split(",") if e.strip()]


def installed_distributions(pyproject: Path, extras: list[str]) -> set[str]:
    """Canonical names of the distributions ``pip install -e .[extras]`` brings: the project's
    own requirements (self-referencing extras followed), then each one's requirements as
    installed here, markers evaluated for this interpreter."""
    project = tomllib.loads(pyproject.read_text())["project"]
    name = canonicalize_name(project["name"])
    optional = project.get("optional-dependencies", {})
    todo = [Requirement(r) for r in project["dependencies"]]
    done_extras: set[str] = set()
    pending_extras = list(extras)
    while pending_extras:
        extra = pending_extras.pop()
        if extra in done_extras:
            continue
        done_extras.add(extra)
        for spec in optional[extra]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == name:
                pending_extras += list(req.extras)
            else:
                todo.append(req)
    result: set[str] = set()
    while todo:
        req = todo.pop()
        dist = canonicalize_name(req.name)
        if dist in result or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        result.add(dist)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for spec in requires:
            sub = Requirement(spec)
            wanted = [""] + sorted(req.extras)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    return result


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()   # reads every installed distribution: once


def distributions_of_module(top: str) -> set[str]:
    """Canonical names of the installed distributions that provide a top-level module."""
    if top in BLENDER_MODULES:
        return {"bpy"}
    return {canonicalize_name(d) for d in _packages_distributions().get(top, [])}

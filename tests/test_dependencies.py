"""The runtime dependencies in pyproject.toml say what runs: every third-party module the
installed product imports comes with a plain install, and every runtime dependency is
imported by the product (or named below with the reason it is needed without an import).
Modules only tests, benchmarks or build tools import (trimesh, matplotlib, dlib) belong in
an extra."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.import_closure import distributions_of_module, installed_distributions, third_party_imports

REPO_ROOT = Path(__file__).resolve().parents[1]
# Runtime dependencies that no product module imports by name, and why they are still needed.
USED_WITHOUT_IMPORT = {
    "accelerate": "diffusers loads large checkpoints through it without a second copy in memory",
    "safetensors": "diffusers reads the .safetensors weights our model configurations name through it",
}
# The demo's Blender step (compute_server/demo/blender_shot.py) runs inside Blender: bpy and the
# modules Blender bundles come with the `blender` extra, which tests/test_demo.py checks.
BLENDER_SIDE = {"bpy"}


def _product_modules() -> list[str]:
    """Every module of the server package and the shared package (what `pip install headsplat` runs)."""
    modules = []
    for package in ("compute_server", "shared"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def _runtime_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in project["dependencies"]}


def test_every_module_the_product_imports_comes_with_a_plain_install():
    installed = installed_distributions(REPO_ROOT / "pyproject.toml", [])
    missing = []
    for imp in third_party_imports(REPO_ROOT, _product_modules()):
        providers = distributions_of_module(imp.module)
        if providers == BLENDER_SIDE:
            continue
        assert providers, f"{imp.module} ({imp.where}) is not installed here at all"
        if not providers & installed:
            missing.append(f"{imp.module} ({imp.where}; from {sorted(providers)})")
    assert not missing, "imported by the product but not a runtime dependency: " + ", ".join(missing)


def test_every_runtime_dependency_is_used_by_the_product():
    imported = set()
    for imp in third_party_imports(REPO_ROOT, _product_modules()):
        imported |= distributions_of_module(imp.module)
    unused = sorted(set(_runtime_requirements()) - imported - set(USED_WITHOUT_IMPORT))
    assert not unused, (f"runtime dependencies no product module imports: {unused}; move them to the extra "
                        "that uses them (test, bench, ...) or say in USED_WITHOUT_IMPORT why they are needed")


def test_test_and_benchmark_only_modules_are_not_runtime_dependencies():
    runtime = set(_runtime_requirements())
    for name in ("trimesh", "matplotlib", "dlib-bin", "pytest"):
        assert name not in runtime, f"{name} is used by tests or benchmarks only; it belongs in an extra"

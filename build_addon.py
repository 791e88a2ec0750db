#!/usr/bin/env python3
"""Build the HeadSplat Blender add-on: an extension zip and a legacy add-on zip.

    python build_addon.py                      # every platform, CPython 3.11 and 3.13
    python build_addon.py --platforms current  # only this machine's platform (fast, for tests)

Outputs ``dist/headsplat-<version>.zip`` (a Blender 4.2+ extension: blender_manifest.toml
with a network permission, the add-on, a vendored copy of ``shared/`` and the pyzmq and
msgpack wheels Blender installs itself) and ``dist/headsplat-<version>-legacy.zip`` (the
same add-on for "Install from Disk" as a legacy add-on, with the wheels unpacked per
platform under ``_vendor/<cpXY>-<platform>/``; ``blender_addon/_deps.py`` picks the right
folder at runtime). Nothing is installed with pip inside Blender.

Wheels come from ``pip download --only-binary=:all: --platform ... --python-version ...``
into ``--wheel-cache`` (reused when the wheels are there, so a second build is offline).
Blender 4.2-5.0 ship CPython 3.11; 5.1+ is expected to ship 3.13. The extension zip is
checked with Blender's own ``blender_ext.py validate`` when bpy is installed, and always
with ``check_manifest``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
ADDON_DIR = REPO_ROOT / "blender_addon"
SHARED_DIR = REPO_ROOT / "shared"
ADDON_ID = "headsplat"
PACKAGES = ("pyzmq", "msgpack")
PYTHON_VERSIONS = ("3.11", "3.13")
# Blender's platform names -> the pip platform tags whose wheels run there (pip expands
# each to the older compatible tags: earlier glibc / macOS versions, universal2).
PLATFORMS = {
    "linux-x64": ("manylinux_2_28_x86_64",),
    "linux-arm64": ("manylinux_2_28_aarch64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_11_0_x86_64",),
    "windows-x64": ("win_amd64",),
}
_PLATFORM_PATTERNS = {
    "linux-x64": re.compile(r"(many|musl)linux.*_x86_64$|^linux_x86_64$"),
    "linux-arm64": re.compile(r"(many|musl)linux.*_aarch64$|^linux_aarch64$"),
    "macos-arm64": re.compile(r"macosx_\d+_\d+_(arm64|universal2)$"),
    "macos-x64": re.compile(r"macosx_\d+_\d+_(x86_64|universal2|intel)$"),
    "windows-x64": re.compile(r"win_amd64$"),
}
MANIFEST_REQUIRED = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                     "blender_version_min", "license")
EXCLUDE_DIRS = {"__pycache__", ".pytest_cache"}


class BuildError(Exception):
    """A build problem; the message says what to do."""


# ----------------------------------------------------------------------------- wheels


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel file name (PEP 427): name-version(-build)?-python-abi-platform.whl."""

    project: str
    version: str
    python_tag: str
    abi_tag: str
    platform_tag: str

    @classmethod
    def parse(cls, filename: str) -> "WheelName":
        parts = Path(filename).name[:-4].split("-")
        if not filename.endswith(".whl") or len(parts) not in (5, 6):
            raise ValueError(f"{filename} is not a wheel file name")
        return cls(parts[0].lower().replace("_", "-"), parts[1], parts[-3], parts[-2], parts[-1])


def wheel_runs_on(filename: str, platform: str, python: str) -> bool:
    """Whether a wheel runs on a Blender ``platform`` (e.g. linux-x64) with CPython
    ``python`` (e.g. "3.11"): the same cpXY ABI, or the stable ABI (abi3) of an older one."""
    wheel = WheelName.parse(filename)
    target = int(python.replace(".", "")[1:])  # "3.11" -> 11
    if not any(_PLATFORM_PATTERNS[platform].search(tag) for tag in wheel.platform_tag.split(".")):
        return False
    for tag in wheel.python_tag.split("."):
        if not tag.startswith("cp3"):
            continue
        minor = int(tag[3:])
        if wheel.abi_tag == tag and minor == target:
            return True
        if wheel.abi_tag == "abi3" and minor <= target:
            return True
    return wheel.python_tag == "py3" and wheel.abi_tag == "none"


def pinned_requirements() -> list[str]:
    """pyzmq and msgpack at the versions of this environment (the versions the tests ran)."""
    pins = []
    for package in PACKAGES:
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(f"{package} is not installed here; install the project (pip install -e .) first") from None
    return pins


def fetch_wheels(cache_dir: Path, platforms: list[str], pythons: list[str], requirements: list[str]) -> list[Path]:
    """Wheels of ``requirements`` for every platform x python, downloaded into ``cache_dir``
    unless already there. Returns the wheel files (deduplicated)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    chosen: set[Path] = set()
    for platform in platforms:
        for python in pythons:
            for requirement in requirements:
                project, version = requirement.split("==")
                found = _cached_wheel(cache_dir, project, version, platform, python)
                if found is None:
                    _pip_download(cache_dir, requirement, platform, python)
                    found = _cached_wheel(cache_dir, project, version, platform, python)
                if found is None:
                    raise BuildError(f"no {requirement} wheel for {platform} / CPython {python} on PyPI")
                chosen.add(found)
    return sorted(chosen)


def _cached_wheel(cache_dir: Path, project: str, version: str, platform: str, python: str) -> Path | None:
    for path in sorted(cache_dir.glob("*.whl")):
        wheel = WheelName.parse(path.name)
        if wheel.project == project.lower() and wheel.version == version and wheel_runs_on(path.name, platform, python):
            return path
    return None


def _pip_download(cache_dir: Path, requirement: str, platform: str, python: str) -> None:
    args = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
            "--implementation", "cp", "--python-version", python, "--dest", str(cache_dir), requirement]
    for tag in PLATFORMS[platform]:
        args += ["--platform", tag]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"pip could not download {requirement} for {platform} / CPython {python}:\n"
                         f"{result.stderr.strip()[-2000:]}")


def current_platform() -> str:
    sys.path.insert(0, str(REPO_ROOT))
    from blender_addon._deps import vendor_tag

    return vendor_tag().split("-", 1)[1]


# ----------------------------------------------------------------------------- manifest


def _toml_value(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the manifest")


def manifest_text(manifest: dict) -> str:
    """TOML for a manifest dict of scalars, lists and one level of tables."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in manifest.items() if not isinstance(value, dict)]
    for key, table in manifest.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def check_manifest(manifest: dict, files: set[str]) -> list[str]:
    """Problems with an extension manifest and the zip's file list (empty when fine)."""
    problems = [f"missing field '{key}'" for key in MANIFEST_REQUIRED if key not in manifest]
    if manifest.get("type") != "add-on":
        problems.append("type must be 'add-on'")
    if manifest.get("id") and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", manifest["id"]):
        problems.append("id must be a Python identifier")
    version_min = tuple(int(x) for x in str(manifest.get("blender_version_min", "0")).split(".")[:2])
    if version_min < (4, 2):
        problems.append("blender_version_min must be 4.2.0 or newer (extensions start there)")
    tagline = str(manifest.get("tagline", ""))
    if len(tagline) > 64 or tagline.endswith("."):
        problems.append("tagline must be at most 64 characters without a final period")
    network = (manifest.get("permissions") or {}).get("network", "")
    if not network or len(network) > 64 or network.endswith("."):
        problems.append("permissions.network needs a reason of at most 64 characters without a final period")
    for wheel in manifest.get("wheels", []):
        if not wheel.startswith("./wheels/") or wheel[2:] not in files:
            problems.append(f"wheel {wheel} is not in the zip")
    for platform in manifest.get("platforms", []):
        if platform not in PLATFORMS:
            problems.append(f"unknown platform {platform}")
    if "__init__.py" not in files:
        problems.append("the zip has no __init__.py at its root")
    return problems


def addon_version() -> str:
    namespace: dict = {}
    exec((SHARED_DIR / "__init__.py").read_text(), namespace)  # noqa: S102 - our own file
    return namespace["__version__"]


# ----------------------------------------------------------------------------- staging


def _copy_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part in EXCLUDE_DIRS for part in relative.parts) or path.suffix == ".pyc":
            continue
        destination = target / relative
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def stage_addon(stage: Path) -> None:
    """The add-on's files plus a vendored copy of shared/ (as <addon>/shared)."""
    _copy_tree(ADDON_DIR, stage)
    _copy_tree(SHARED_DIR, stage / "shared")


def _zip_dir(folder: Path, zip_path: Path, prefix: str = "") -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    os.replace(tmp, zip_path)


def build_extension(out_dir: Path, wheels: list[Path], platforms: list[str], version: str) -> Path:
    manifest = tomllib.loads((ADDON_DIR / "blender_manifest.toml").read_text())
    manifest["version"] = version
    manifest["platforms"] = list(platforms)
    manifest["wheels"] = [f"./wheels/{w.name}" for w in wheels]
    manifest.pop("build", None)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        stage_addon(stage)
        (stage / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, stage / "wheels" / wheel.name)
        (stage / "blender_manifest.toml").write_text(manifest_text(manifest))
        files = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()}
        problems = check_manifest(manifest, files)
        if problems:
            raise BuildError("the extension manifest is invalid: " + "; ".join(problems))
        zip_path = out_dir / f"{ADDON_ID}-{version}.zip"
        _zip_dir(stage, zip_path)
    return zip_path


def build_legacy(out_dir: Path, wheels: list[Path], platforms: list[str], pythons: list[str], version: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / ADDON_ID
        stage_addon(stage)
        (stage / "blender_manifest.toml").unlink()  # a manifest would make Blender treat it as an extension
        for platform in platforms:
            for python in pythons:
                target = stage / "_vendor" / f"cp{python.replace('.', '')}-{platform}"
                for wheel in wheels:
                    if wheel_runs_on(wheel.name, platform, python):
                        with zipfile.ZipFile(wheel) as archive:
                            archive.extractall(target)
        zip_path = out_dir / f"{ADDON_ID}-{version}-legacy.zip"
        _zip_dir(stage.parent, zip_path)
    return zip_path


def blender_validate(zip_path: Path) -> str | None:
    """Run Blender's own extension validator when bpy is installed; -> its complaint or None."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    scripts = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not scripts:
        return None
    result = subprocess.run([sys.executable, str(scripts[-1]), "validate", str(zip_path)], capture_output=True,
                            text=True)
    return None if result.returncode == 0 else (result.stdout + result.stderr).strip()


def build(out_dir: Path, cache_dir: Path, platforms: list[str], pythons: list[str], *, validate: bool = True
          ) -> tuple[Path, Path]:
    """Build both zips; -> (extension zip, legacy zip)."""
    version = addon_version()
    wheels = fetch_wheels(cache_dir, platforms, pythons, pinned_requirements())
    extension = build_extension(out_dir, wheels, platforms, version)
    legacy = build_legacy(out_dir, wheels, platforms, pythons, version)
    if validate:
        complaint = blender_validate(extension)
        if complaint:
            raise BuildError(f"Blender's validator refused {extension.name}:\n{complaint}")
    return extension, legacy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--wheel-cache", type=Path, default=REPO_ROOT / ".cache" / "wheels",
                        help="folder for downloaded wheels (default .cache/wheels)")
    parser.add_argument("--platforms", default="all",
                        help="'all', 'current', or a comma list of " + ", ".join(PLATFORMS))
    parser.add_argument("--python", default=",".join(PYTHON_VERSIONS),
                        help="CPython versions of the Blenders to support (default %(default)s)")
    parser.add_argument("--no-validate", action="store_true", help="skip Blender's validator")
    args = parser.parse_args(argv)
    if args.platforms == "all":
        platforms = list(PLATFORMS)
    elif args.platforms == "current":
        platforms = [current_platform()]
    else:
        platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        parser.error(f"unknown platform(s) {', '.join(unknown)}; choose from {', '.join(PLATFORMS)}")
    pythons = ([f"{sys.version_info.major}.{sys.version_info.minor}"] if args.platforms == "current"
               else [p.strip() for p in args.python.split(",")])
    try:
        extension, legacy = build(args.out, args.wheel_cache, platforms, pythons, validate=not args.no_validate)
    except BuildError as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    print(f"{extension}\n{legacy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the add-on tests: avatars written into a real server's data directory,
the add-on installed from its built zip into bpy, and timer pumping.

Avatars follow docs/formats.md ("Avatar folder") and are published through the server's
own ``AvatarStore``, so import tests run against real ``avatar.get`` replies before the
``avatar.create`` pipeline exists. Two rigs are available:

- ``synthetic_rig()``: a small FLAME-structured head (an ellipsoid with a jaw, eyes and
  four named expressions), a tiny real component that keeps bpy tests fast;
- ``builtin_rig()``: the server's built-in head model (``load_head_model().rig_export``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Blender keeps user preferences, extensions and their wheels under its user resource
# folder; point it at a throw-away folder before bpy is first imported, so the tests never
# touch the real user's Blender configuration.
if "bpy" not in sys.modules and "BLENDER_USER_RESOURCES" not in os.environ:
    _USER_RESOURCES = tempfile.mkdtemp(prefix="headsplat-blender-user-")
    os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES
    atexit.register(shutil.rmtree, _USER_RESOURCES, True)

from shared.camera import orbit_camera
from shared.splat_format import SH_C0

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
JOINT_NAMES = ["root", "neck", "jaw", "left_eye", "right_eye"]


# ----------------------------------------------------------------------------- rigs


def _uv_sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere: (V, 3) vertices and (F, 3) faces, counter-clockwise seen from outside."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    ring = np.stack([np.sin(lat)[:, None] * np.sin(lon)[None], np.cos(lat)[:, None] * np.ones_like(lon)[None],
                     np.sin(lat)[:, None] * np.cos(lon)[None]], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]])
    top, bottom = 0, len(vertices) - 1
    idx = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    faces = []
    for j in range(n_lon):
        faces.append([top, idx(0, j), idx(0, j + 1)])
        faces.append([bottom, idx(n_lat - 2, j + 1), idx(n_lat - 2, j)])
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j), idx(i + 1, j + 1)
            faces += [[a, c, b], [b, c, d]]
    faces = np.array(faces, dtype=np.int32)
    # orient counter-clockwise from outside
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = np.einsum("ij,ij->i", normal, tri.mean(1)) < 0
    faces[flip] = faces[flip][:, ::-1]
    return vertices, faces


def synthetic_rig(n_lat: int = 16, n_lon: int = 24) -> dict:
    """A small head in rig_export's layout (head space, metres)."""
    unit, faces = _uv_sphere(n_lat, n_lon)
    vertices = unit * np.array([0.075, 0.11, 0.09])
    joint_rest = np.array([[0, -0.12, -0.02], [0, -0.08, -0.02], [0, -0.03, 0.0], [0.03, 0.03, 0.07],
                           [-0.03, 0.03, 0.07]], dtype=np.float64)
    weights = np.zeros((len(vertices), 5))
    jaw = np.clip((-0.02 - vertices[:, 1]) / 0.03, 0, 1) * (vertices[:, 2] > 0.0)
    left_eye = np.linalg.norm(vertices - [0.03, 0.03, 0.085], axis=1) < 0.02
    right_eye = np.linalg.norm(vertices - [-0.03, 0.03, 0.085], axis=1) < 0.02
    weights[:, 2] = jaw
    weights[:, 1] = 1.0 - jaw
    weights[left_eye] = [0, 0, 0, 1, 0]
    weights[right_eye] = [0, 0, 0, 0, 1]

    def bump(center, direction, radius=0.03):
        w = np.exp(-np.sum((vertices - center) ** 2, axis=1) / radius ** 2)
        return (w[:, None] * np.asarray(direction)[None]).astype(np.float32)

    expression_names = ["smile", "blink_L", "brow_raise", "mouth_open"]
    deltas = np.stack([
        bump([0.03, -0.05, 0.06], [0.005, 0.01, 0]) + bump([-0.03, -0.05, 0.06], [-0.005, 0.01, 0]),
        bump([0.03, 0.035, 0.08], [0, -0.008, 0], 0.015),
        bump([0.0, 0.07, 0.07], [0, 0.01, 0], 0.05),
        bump([0.0, -0.06, 0.08], [0, -0.015, 0], 0.025),
    ])
    face_region = (vertices[faces].mean(1)[:, 1] < -0.03).astype(np.int32)
    return {
        "model_name": "synthetic", "rest_vertices": vertices.astype(np.float32), "faces": faces,
        "expression_deltas": deltas, "expression_names": expression_names,
        "joint_rest": joint_rest.astype(np.float32), "joint_parents": np.array([-1, 0, 1, 1, 1], np.int32),
        "joint_names": JOINT_NAMES, "skin_weights": weights.astype(np.float32), "face_region": face_region,
        "region_names": ["face", "mouth"],
    }


def builtin_rig() -> dict:
    """The server's built-in head model's rig at the mean shape."""
    from compute_server.head.model import load_head_model

    model = load_head_model()
    export = model.rig_export(np.zeros(model.n_shape, dtype=np.float32))
    export["n_shape"], export["sha256"] = model.n_shape, model.source_sha256 or ""
    return export


# ----------------------------------------------------------------------------- avatars


def random_splats(rig: dict, n_splats: int, *, seed: int = 0, sh_degree: int = 1) -> dict:
    """Splats bound to random triangles of ``rig`` (splats.npz layout)."""
    rng = np.random.default_rng(seed)
    n_faces = len(rig["faces"])
    quats = rng.normal(size=(n_splats, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    rgb = rng.uniform(0.2, 0.9, size=(n_splats, 3))
    k = (sh_degree + 1) ** 2
    return {
        "means_local": (rng.normal(size=(n_splats, 3)) * [0.3, 0.3, 0.05]).astype(np.float32),
        "log_scales_local": np.log(rng.uniform(0.1, 0.4, size=(n_splats, 3))).astype(np.float32),
        "quats_local": quats.astype(np.float32),
        "opacity_logits": rng.normal(1.0, 1.0, size=n_splats).astype(np.float32),
        "sh_dc": ((rgb - 0.5) / SH_C0).astype(np.float32),
        "sh_rest": rng.normal(scale=0.05, size=(n_splats, k - 1, 3)).astype(np.float32),
        "binding": rng.integers(0, n_faces, size=n_splats).astype(np.int32),
    }


def avatar_metadata(rig: dict, n_splats: int, name: str, sh_degree: int) -> dict:
    camera = orbit_camera(0.0, 0.0, 0.6, width=256, height=256, fov_y_deg=25.0)
    return {
        "name": name,
        "head_model": {"name": rig["model_name"], "n_shape": int(rig.get("n_shape", 0)),
                       "n_expr": len(rig["expression_names"]), "expression_names": list(rig["expression_names"]),
                       "joint_names": JOINT_NAMES, "region_names": list(rig["region_names"]), "source": "test",
                       "sha256": rig.get("sha256", "")},
        "sh_degree": sh_degree,
        "counts": {"splats": n_splats, "vertices": len(rig["rest_vertices"]), "faces": len(rig["faces"])},
        "portrait_camera": camera.to_wire(),
        "preset": "test", "seed": 0, "diffusion": "none", "config": {"kind": "tests/blender_helpers"},
        "sources": [], "timings_s": {}, "metrics": {}, "warnings": [],
    }


def write_avatar(data_dir: Path, rig: dict, *, n_splats: int = 500, name: str = "Test Head", seed: int = 0,
                 sh_degree: int = 1) -> str:
    """Publish an avatar into a server's data directory (the server may be running); -> its id."""
    from compute_server.storage.avatar_store import AvatarStore

    rig_npz = {key: rig[key] for key in ("rest_vertices", "faces", "expression_deltas", "joint_rest",
                                         "joint_parents", "skin_weights", "face_region")}
    rig_npz["shape"] = np.zeros(int(rig.get("n_shape", 0)), np.float32)
    rig_npz["static_offset"] = np.zeros_like(rig["rest_vertices"])
    fit = {"expr": np.zeros((1, len(rig["expression_names"])), np.float32), "jaw_pose": np.zeros((1, 3), np.float32),
           "neck_pose": np.zeros((1, 3), np.float32), "eyes_pose": np.zeros((1, 6), np.float32)}
    store = AvatarStore(Path(data_dir) / "avatars")
    return store.publish(None, {"splats.npz": random_splats(rig, n_splats, seed=seed, sh_degree=sh_degree),
                                "rig.npz": rig_npz, "fit.npz": fit},
                         avatar_metadata(rig, n_splats, name, sh_degree))


# ----------------------------------------------------------------------------- the add-on in bpy

_SINGLETONS: dict = {}
ADDON_REPO_MODULE = "headsplat_tests"


def built_zips() -> tuple[Path, Path]:
    """(extension zip, legacy zip) built once per test process for this platform, with
    the wheel cache of the checkout (.cache/wheels; downloaded from PyPI when empty)."""
    if "zips" not in _SINGLETONS:
        out = Path(tempfile.mkdtemp(prefix="headsplat-addon-dist-"))
        atexit.register(shutil.rmtree, out, True)
        result = subprocess.run([sys.executable, str(REPO_ROOT / "build_addon.py"), "--platforms", "current",
                                 "--out", str(out), "--wheel-cache", str(REPO_ROOT / ".cache" / "wheels")],
                                capture_output=True, text=True, cwd=REPO_ROOT)
        if result.returncode != 0:
            raise RuntimeError(f"build_addon.py failed:\n{result.stdout}\n{result.stderr}")
        extension, legacy = [Path(line) for line in result.stdout.split()]
        _SINGLETONS["zips"] = (extension, legacy)
    return _SINGLETONS["zips"]


def installed_addon() -> str:
    """Install the built extension zip into bpy (a temporary user repository) and enable
    it, once per process (again if something reset Blender's preferences meanwhile, e.g.
    ``read_factory_settings``); -> the add-on's package name (bl_ext.<repo>.headsplat)."""
    import bpy

    package = _SINGLETONS.get("addon")
    if package is None or bpy.context.preferences.addons.get(package) is None:
        extension, _ = built_zips()
        repo_dir = Path(tempfile.mkdtemp(prefix="headsplat-extension-repo-"))
        atexit.register(shutil.rmtree, repo_dir, True)
        repos = bpy.context.preferences.extensions.repos
        if repos.get(ADDON_REPO_MODULE) is None and not any(r.module == ADDON_REPO_MODULE for r in repos):
            repos.new(name="HeadSplat tests", module=ADDON_REPO_MODULE, custom_directory=str(repo_dir), source="USER")
        result = bpy.ops.extensions.package_install_files(filepath=str(extension), repo=ADDON_REPO_MODULE,
                                                          enable_on_install=True)
        package = f"bl_ext.{ADDON_REPO_MODULE}.headsplat"
        if result != {"FINISHED"} or bpy.context.preferences.addons.get(package) is None:
            raise RuntimeError(f"installing {extension.name} into bpy failed: {result}")
        _SINGLETONS["addon"] = package
    return _SINGLETONS["addon"]


def addon_module(name: str):
    """A submodule of the installed add-on, e.g. addon_module("connection")."""
    return sys.modules[f"{installed_addon()}.{name}"] if f"{installed_addon()}.{name}" in sys.modules else \
        __import__(f"{installed_addon()}.{name}", fromlist=["_"])


def addon_prefs():
    import bpy

    return bpy.context.preferences.addons[installed_addon()].preferences


def shared_server(tmp_root: Path | None = None):
    """One `headsplat serve` (test jobs on) for the add-on tests of this process. With
    HEADSPLAT_TEST_CLUSTER=ADDRESS it is a clustered front on that Ray cluster (the add-on
    must work unchanged against one: docs/cluster.md)."""
    if "server" not in _SINGLETONS:
        from tests.server_harness import start_server

        root = Path(tmp_root or tempfile.mkdtemp(prefix="headsplat-addon-server-"))
        cluster = os.environ.get("HEADSPLAT_TEST_CLUSTER")
        server = start_server(root / "data", extra_args=("--cluster", cluster) if cluster else (),
                              ready_timeout_s=300.0 if cluster else 60.0)
        _SINGLETONS["server"] = server

        def stop():
            try:
                server.terminate(20.0)
            except subprocess.TimeoutExpired:
                server.kill()
            if tmp_root is None:   # our own folder: its avatars would pile up in /tmp run after run
                shutil.rmtree(root, ignore_errors=True)
        atexit.register(stop)
    return _SINGLETONS["server"]


def configure(endpoint: str, *, request_timeout_s: float = 10.0, lost_contact_s: float = 60.0,
              server_key: str = "", client_key: str = "") -> None:
    prefs = addon_prefs()
    prefs.endpoint = endpoint
    prefs.request_timeout_s = request_timeout_s
    prefs.lost_contact_s = lost_contact_s
    prefs.server_key_file = server_key
    prefs.client_key_file = client_key
    prefs.start_local_server = False


def connect(endpoint: str, **kwargs) -> None:
    """Point the add-on at ``endpoint`` and connect (blocking, as in background mode)."""
    import bpy

    configure(endpoint, **kwargs)
    bpy.ops.headsplat.connect(wait="WAIT")


def new_scene():
    """An empty file (the add-on stays enabled); -> its scene."""
    import bpy

    addon_module("connection").set_blocking(None)
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


def tick_until(predicate, timeout_s: float = 30.0) -> int:
    """Call the add-on's timer function the way Blender's event loop does (it is the only
    thing that pumps in non-blocking mode) until ``predicate()``; -> ticks made."""
    tick = addon_module("connection").tick_function()
    deadline = time.monotonic() + timeout_s
    ticks = 0
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {ticks} timer ticks in {timeout_s} s")
        interval = tick()
        ticks += 1
        time.sleep(0.02 if interval is None else min(interval, 0.05))
    return ticks


@contextlib.contextmanager
def interactive_mode():
    """Operators behave as in interactive Blender (return at once; the timer finishes the
    work), and the session proves it never waits on the network: every poll must be
    non-blocking (timeout 0) and the client's blocking calls raise. Yields the list of
    poll timeouts seen."""
    connection = addon_module("connection")
    session = connection.get_session()
    waits: list[int] = []
    real_poll = session.client.poll

    def recording_poll(timeout_ms=0):
        waits.append(timeout_ms)
        return real_poll(timeout_ms)

    def forbidden(*args, **kwargs):
        raise AssertionError("a blocking client call was made in interactive mode")

    connection.set_blocking(False)
    session.client.poll = recording_poll
    session.client.request = session.client.call = forbidden
    try:
        yield waits
    finally:
        session.client.poll = real_poll
        del session.client.request, session.client.call
        connection.set_blocking(None)
    assert all(w == 0 for w in waits), f"the session waited on the network: {sorted(set(waits))}"


def import_avatar(avatar_id: str):
    """Import (blocking) and return the rig root."""
    import bpy

    bpy.ops.headsplat.import_avatar(avatar_id=avatar_id, wait="WAIT")
    roots = [o for o in bpy.context.scene.objects if o.get("headsplat_avatar_id") == avatar_id]
    assert roots, f"avatar {avatar_id} was not imported"
    return roots[-1]


# ----------------------------------------------------------------------------- misc


def wait_for(predicate, timeout_s: float = 30.0, step_s: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout_s``; -> its last value."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(step_s)
    return True


def environment_without_display() -> dict:
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return env

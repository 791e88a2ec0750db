"""Blender-side benchmarks of the add-on, headless (bpy 5.0.1 as a module): print tables.

    python -m bench.blender_viewport            # 25k / 100k / 300k splats (several minutes)
    python -m bench.blender_viewport --quick    # 25k / 100k only
    python -m bench.blender_viewport --only playback,eevee

Tables:
  (a) playback: depsgraph evaluation per frame change (``scene.frame_set``) of an animated
      avatar (jaw, neck and three expressions keyed over 48 frames) on the built-in head,
      at several preview densities, with the rig alone as the baseline, for the point
      preview and the true splats (Gaussians: boxes instanced per splat, SH colour from
      the camera). This is the CPU part of viewport playback (shape keys + armature + the
      geometry-nodes posing); GPU drawing is not included (headless Blender has no GPU here).
  (d) EEVEE: one 512 x 512 frame of the true splats rendered by EEVEE (software GL here),
      one sample (Blended splats converge in one); the first render includes compiling
      the shaders, the second is the steady-state cost of a frame.
  (b) import: building the avatar's objects from an avatar.get reply (splat attributes in
      numpy + bpy objects), i.e. the one main-thread step of an import.
  (c) UI-thread cost of the timer: ``Session.pump(0)`` while a job streams progress events
      from a real in-process server (what Blender's timer runs every 0.1 s).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import bpy  # noqa: E402

from blender_addon.scene_import import build, geometry_nodes  # noqa: E402
from blender_addon.scene_import.avatar_data import avatar_from_reply  # noqa: E402
from blender_addon.session import JobHandlers, Session  # noqa: E402
from shared.client import Client  # noqa: E402
from tests.blender_helpers import avatar_metadata, builtin_rig, random_splats, synthetic_rig  # noqa: E402

RIG_KEYS = ("rest_vertices", "faces", "expression_deltas", "joint_rest", "joint_parents", "skin_weights",
            "face_region")


def avatar_reply(rig: dict, n_splats: int) -> dict:
    return {"avatar": "av_bench0000000", "metadata": avatar_metadata(rig, n_splats, f"Bench {n_splats}", 3),
            "arrays": {"rig": {k: rig[k] for k in RIG_KEYS}, "splats": random_splats(rig, n_splats, sh_degree=3)}}


def animate(imported, expression_names: list[str]) -> None:
    arm, head = imported.rig_root, imported.head
    keys = head.data.shape_keys.key_blocks
    for frame, amount in ((1, 0.0), (24, 1.0), (48, 0.2)):
        for bone, axis in (("jaw", 1), ("neck", 2)):
            pose_bone = arm.pose.bones[bone]
            q = [np.cos(0.2 * amount), 0.0, 0.0, 0.0]
            q[axis] = np.sin(0.2 * amount)
            pose_bone.rotation_quaternion = q
            pose_bone.keyframe_insert("rotation_quaternion", frame=frame)
        for name in expression_names[:3]:
            keys[name].value = amount
            keys[name].keyframe_insert("value", frame=frame)


def frame_times(scene, frames=range(1, 49), repeats: int = 2, cpu_times: list | None = None) -> list[float]:
    """Wall seconds of each ``frame_set``; ``cpu_times`` (if given) gets the process CPU
    seconds of each, steadier than wall time on a shared machine."""
    scene.frame_set(1)
    times = []
    for _ in range(repeats):
        for frame in frames:
            start, cpu = time.perf_counter(), time.process_time()
            scene.frame_set(frame)
            times.append(time.perf_counter() - start)
            if cpu_times is not None:
                cpu_times.append(time.process_time() - cpu)
    return times


def set_density(splat_object, density: float) -> None:
    geometry_nodes.set_input(splat_object, geometry_nodes.INPUT_DENSITY, density)


def set_gaussians(splat_object, enabled: bool) -> None:
    geometry_nodes.set_input(splat_object, geometry_nodes.INPUT_GAUSSIANS, enabled)


def playback_table(rig: dict, counts: list[int]) -> None:
    print("\n(a) playback: depsgraph evaluation per frame change, built-in head "
          f"({len(rig['rest_vertices'])} vertices, {len(rig['expression_names'])} shape keys)")
    print(f"{'splats':>8} {'mode':>9} {'density':>8} {'drawn':>8} {'median ms':>10} {'p90 ms':>8} {'fps':>8} "
          f"{'cpu ms':>7} {'vs points (cpu)':>15}")
    for n in counts:
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        imported = build.import_avatar(scene, avatar_from_reply(avatar_reply(rig, n)), density=1.0)
        animate(imported, rig["expression_names"])
        densities = [1.0, 0.5, 0.25] if n >= 100_000 else [1.0]
        rows = [("rig only", "", 0.0)] if n == counts[0] else []
        rows += [(f"{d:g}", mode, d) for d in densities for mode in ("points", "gaussians")]
        points_median = {}
        for label, mode, density in rows:
            imported.splats.modifiers[0].show_viewport = label != "rig only"
            set_density(imported.splats, density if density > 0 else 1.0)
            set_gaussians(imported.splats, mode == "gaussians")
            cpu_times: list[float] = []
            times = frame_times(scene, cpu_times=cpu_times)
            median, cpu = statistics.median(times), statistics.median(cpu_times)
            p90 = sorted(times)[int(0.9 * len(times))]
            drawn = 0 if label == "rig only" else int(round(n * density))
            ratio = ""
            if mode == "points":
                points_median[density] = (median, cpu)
            elif mode == "gaussians":
                wall_points, cpu_points = points_median[density]
                ratio = f"{median / wall_points:.2f}x ({cpu / cpu_points:.2f}x)"
            print(f"{n if label != 'rig only' else 0:>8} {mode or '-':>9} {label:>8} {drawn:>8} {median * 1e3:>10.2f} "
                  f"{p90 * 1e3:>8.2f} {1 / median:>8.0f} {cpu * 1e3:>7.1f} {ratio:>15}")


def eevee_table(rig: dict, counts: list[int], size: int = 512) -> None:
    print(f"\n(d) EEVEE: one {size} x {size} frame of the true splats (1 sample, software GL here)")
    print(f"{'splats':>8} {'first render s':>15} {'next render s':>14}")
    for n in counts:
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        imported = build.import_avatar(scene, avatar_from_reply(avatar_reply(rig, n)), density=1.0)
        imported.splats.hide_render = False
        scene.render.engine = "BLENDER_EEVEE"
        scene.render.resolution_x = scene.render.resolution_y = size
        scene.render.film_transparent = True
        scene.view_settings.view_transform = "Standard"
        scene.eevee.taa_render_samples = 1
        seconds = []
        with tempfile.TemporaryDirectory() as tmp:
            scene.render.filepath = str(Path(tmp) / "frame.png")
            for _ in range(2):
                start = time.perf_counter()
                bpy.ops.render.render(write_still=True)
                seconds.append(time.perf_counter() - start)
        print(f"{n:>8} {seconds[0]:>15.1f} {seconds[1]:>14.1f}")


def import_table(rig: dict, counts: list[int]) -> None:
    print("\n(b) import: building an avatar from an avatar.get reply (main thread)")
    print(f"{'splats':>8} {'seconds':>8}")
    for n in counts:
        bpy.ops.wm.read_homefile(use_empty=True)
        reply = avatar_reply(rig, n)
        start = time.perf_counter()
        build.import_avatar(bpy.context.scene, avatar_from_reply(reply))
        print(f"{n:>8} {time.perf_counter() - start:>8.2f}")


def timer_table() -> None:
    from tests.server_harness import inprocess_server

    print("\n(c) UI thread: Session.pump(0) per timer tick while a job streams progress")
    with tempfile.TemporaryDirectory() as tmp, inprocess_server(Path(tmp)) as server:
        session = Session(Client(server.endpoint), status_interval_s=2.0)
        done = []
        session.submit("test.count", {"steps": 200, "step_s": 0.01},
                       JobHandlers(on_progress=lambda p: None, on_done=done.append, on_failed=done.append))
        ticks = []
        while not done:
            start = time.perf_counter()
            handled = session.pump(0)
            ticks.append((time.perf_counter() - start, handled))
            time.sleep(0.1)  # the add-on's timer interval while busy
        session.close()
    busy = [t for t, handled in ticks if handled]
    idle = [t for t, handled in ticks if not handled] or [0.0]
    print(f"{'ticks':>6} {'with msgs':>10} {'median ms':>10} {'max ms':>8} {'idle median ms':>15}")
    print(f"{len(ticks):>6} {len(busy):>10} {statistics.median(busy) * 1e3:>10.3f} {max(busy) * 1e3:>8.3f} "
          f"{statistics.median(idle) * 1e3:>15.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="25k and 100k splats only")
    parser.add_argument("--only", default="playback,import,timer,eevee",
                        help="comma-separated tables to run: playback, import, timer, eevee")
    args = parser.parse_args()
    tables = set(args.only.split(","))
    counts = [25_000, 100_000] if args.quick else [25_000, 100_000, 300_000]
    try:
        rig = builtin_rig()
    except Exception as exc:  # the built-in head is missing in this checkout
        print(f"built-in head model unavailable ({exc}); using the synthetic test head")
        rig = synthetic_rig(60, 90)
    print(f"Blender {bpy.app.version_string}, Python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} CPU threads")
    if "playback" in tables:
        playback_table(rig, counts)
    if "import" in tables:
        import_table(rig, counts)
    if "timer" in tables:
        timer_table()
    if "eevee" in tables:
        eevee_table(rig, counts[:2])


if __name__ == "__main__":
    main()

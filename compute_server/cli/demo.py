"""``headsplat demo``: the README's main command.

On the embedded defaults (built-in head model, no diffusion weights, the CPU when there is
no GPU) it makes an avatar from the bundled astronaut photo, an expression clip, turntable
and clip renders, and a Blender shot composited by Blender, all in one folder with an
index page; it ends by printing where that is.
"""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the whole product on the built-in defaults into one folder")
    p.add_argument("--out", type=Path, default=Path("headsplat-demo"), help="output folder (default ./headsplat-demo)")
    p.add_argument("--preset", default="draft", choices=("draft", "standard", "high"))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--data", type=Path, help="server data folder (default OUT/server-data)")
    p.add_argument("--video", type=Path, help="track this driving video instead of the synthesized expression clip")
    p.add_argument("--iterations", type=int, help="override the preset's optimization iterations")
    p.add_argument("--no-blender", action="store_true", help="skip the Blender step")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo.runner import DemoSettings, run_demo

    settings = DemoSettings(out=args.out.resolve(), preset=args.preset, device=args.device, data=args.data,
                            video=args.video, blender=not args.no_blender, iterations=args.iterations)
    index = run_demo(settings)
    blender = settings.blender_step
    print(f"\nHeadSplat demo finished in {settings.timings['total'] / 60:.1f} min.")
    if blender is not None and blender.frames:
        print(f"Blender shot: {len(blender.frames)} composited frames and demo.blend in {index.parent / 'blender'}")
    elif blender is not None and blender.skipped and settings.blender:
        print(f"Without the Blender shot: {blender.skipped}")
    print(f"Open {index} (or {index.parent / 'contact_sheet.png'}) to see the results.")
    # A Blender step that ran and broke is a failure of the demo (the page says what is missing);
    # a Blender that is not installed is an optional part left out.
    return 1 if blender is not None and blender.failed else 0

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
    print(f"\nHeadSplat demo finished in {settings.timings['total'] / 60:.1f} min.")
    print(f"Open {index} (or {index.parent / 'contact_sheet.png'}) to see the results.")
    return 0

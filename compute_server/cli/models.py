"""``headsplat models``: is a downloaded checkpoint usable, and what does a models config offer?

    headsplat models check DIR [DIR ...]       a Stable Diffusion, ControlNet, IP-Adapter or
                                               multi-view pipeline folder
    headsplat models list --config FILE        every model of a models config, checked

Both read configs and weight-file headers only (no weights are loaded, nothing is
downloaded) and exit 0 when everything is usable, 2 with the reason otherwise.
"""

from __future__ import annotations

from .common import print_json

EXIT_OK, EXIT_UNUSABLE = 0, 2


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="check diffusion model folders and models configs",
                              description="Check diffusion checkpoints on this machine (nothing is downloaded).")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="say whether folders are usable checkpoints, and why not",
                           description="Say whether each folder is a usable Stable Diffusion, ControlNet, IP-Adapter "
                                       "or multi-view pipeline checkpoint, and why not.")
    check.add_argument("dirs", nargs="+", metavar="DIR", help="a checkpoint folder")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.set_defaults(func=run_check)
    listing = sub.add_parser("list", help="list and check the models of a models config",
                             description="List the models a models config file offers, each checked.")
    listing.add_argument("--config", required=True, metavar="FILE", help="the models config (.json or .toml)")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(func=run_list)


def run_check(args) -> int:
    from compute_server.diffusion.checkpoints import check_directory

    results = [check_directory(d) for d in args.dirs]
    if args.json:
        print_json([{"path": r.path, "kind": r.kind, "usable": r.usable, "problem": r.problem,
                     "summary": r.summary} for r in results])
    else:
        for r in results:
            if r.usable:
                print(f"{r.path}: usable ({r.kind})\n  {r.summary}")
            else:
                print(f"{r.path}: NOT usable\n  {r.problem}")
    return EXIT_OK if all(r.usable for r in results) else EXIT_UNUSABLE


def run_list(args) -> int:
    from compute_server.diffusion.registry import DiffusionModels

    models = DiffusionModels.from_config(args.config)
    entries = models.describe()
    if args.json:
        print_json(entries)
    else:
        print(f"{models.source}: {len(entries)} model{'s' if len(entries) != 1 else ''}")
        for e in entries:
            state = "usable" if e["usable"] else "NOT usable"
            prior = "with the denoising prior" if e["prior"] else "no prior"
            print(f"  {e['name']} ({e['backend']}, {e['resolution']} px, {prior}): {state}")
            print(f"    {e['summary'] if e['usable'] else e['problem']}")
    return EXIT_OK if all(e["usable"] for e in entries) else EXIT_UNUSABLE

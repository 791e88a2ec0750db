"""``headsplat doctor``: check this machine the way a support engineer would.

Each line is a verdict (ok, WARN, FAIL, skip) with what was found and, for a warning or a
failure, the fix. The checks take the same options as ``headsplat serve`` (data
directory, device, head models, models config, bind address and keys), so the doctor
checks the server you are about to start. Without ``--quick`` it ends with the
one-minute end-to-end check: the bundled portrait to a 100-iteration avatar and one
rendered frame through a throwaway server, timed.

Exit status: 0 when nothing a job needs is broken (warnings and skips allowed), 1 when a
check failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compute_server.client_tools.progress_bar import ProgressBar
from compute_server.storage.data_dir import default_data_dir
from shared.protocol import DEFAULT_ENDPOINT

from .common import print_json

EXIT_OK, EXIT_FAILED = 0, 1
_MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skipped": "skip"}


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check this machine: GPU, gsplat, models, data directory, end to end",
                              description="Check whether this machine can run the HeadSplat server and say how to "
                                          "fix what cannot. Takes the options `headsplat serve` takes.")
    p.add_argument("--data", metavar="DIR", type=Path, default=None,
                   help=f"data directory to check (default $HEADSPLAT_DATA or {default_data_dir()})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--head-model", metavar="PATH", action="append", default=[],
                   help="a head model file (e.g. FLAME) the server would offer; repeatable")
    p.add_argument("--models-config", metavar="FILE", help="the diffusion models configuration file")
    p.add_argument("--bind", metavar="ADDR", default=DEFAULT_ENDPOINT,
                   help=f"the endpoint the server would listen on (default {DEFAULT_ENDPOINT})")
    p.add_argument("--curve-secret", metavar="FILE", type=Path, help="the server's secret key file")
    p.add_argument("--curve-clients", metavar="DIR", type=Path, help="folder of authorized client public keys")
    p.add_argument("--insecure", action="store_true", help="the server would run with --insecure")
    p.add_argument("--quick", action="store_true", help="skip the end-to-end avatar check (about a minute)")
    p.add_argument("--iterations", type=int, default=100, metavar="N",
                   help="optimization iterations of the end-to-end avatar (default %(default)d)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from compute_server.doctor import DoctorSettings

    return DoctorSettings(data_dir=args.data or default_data_dir(), device=args.device,
                          head_models=tuple(args.head_model), models_config=args.models_config, bind=args.bind,
                          curve_secret=args.curve_secret, curve_clients=args.curve_clients, insecure=args.insecure,
                          end_to_end=not args.quick, end_to_end_iterations=max(1, args.iterations))


class LinePrinter:
    """Prints each check as it finishes, under a heading per group."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._group = None

    def __call__(self, check) -> None:
        if check.group != self._group:
            self._group = check.group
            self.stream.write(f"{check.group}\n")
        self.stream.write(format_check(check) + "\n")
        self.stream.flush()


def format_check(check) -> str:
    line = f"  {_MARKS[check.verdict]}  {check.name}: {check.detail}"
    if check.fix and check.verdict in ("warn", "fail"):
        line += f"\n        fix: {check.fix}"
    return line


def format_summary(report) -> str:
    counts = report.counts()
    lines = [f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed, {counts['skipped']} skipped"]
    no_cuda = report.skipped_for_no_cuda()
    if no_cuda:
        lines.append(f"CUDA is absent on this machine, so these were skipped: {', '.join(no_cuda)}.")
    failed = [c.name for c in report.checks if c.verdict == "fail"]
    lines.append(f"FAILED: {', '.join(failed)} (see the fix lines above)." if failed
                 else "Nothing a job needs is broken.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from compute_server.doctor import run_doctor
    from compute_server.server.logs import configure_logging

    configure_logging("WARNING")
    settings = settings_from_args(args)
    if args.json:
        report = run_doctor(settings)
        print_json(report.to_wire())
        return EXIT_FAILED if report.failed else EXIT_OK
    print(f"headsplat doctor: data {settings.data_dir}, device {settings.device}, endpoint {settings.bind}")
    bar = ProgressBar("end to end") if settings.end_to_end else None
    report = run_doctor(settings, on_check=LinePrinter(), on_progress=bar)
    print(format_summary(report))
    return EXIT_FAILED if report.failed else EXIT_OK

"""``headsplat jobs``: list a server's jobs (newest first)."""

from __future__ import annotations

import time

from shared.client import ServerUnavailable
from shared.records import JobInfo, JobState

from .common import add_client_options, connect, format_age, print_json, unavailable


def register(subparsers) -> None:
    p = subparsers.add_parser("jobs", help="list the server's jobs")
    add_client_options(p)
    p.add_argument("--state", action="append", choices=[s.value for s in JobState],
                   help="only jobs in this state (repeatable)")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs (default %(default)d)")
    p.set_defaults(func=run)


def format_jobs(jobs: list[JobInfo], now: float) -> str:
    if not jobs:
        return "no jobs"
    lines = [f"{'JOB':24} {'KIND':16} {'STATE':10} {'PROGRESS':>8}  {'AGE':>5}  MESSAGE"]
    for job in jobs:
        detail = job.error.message if job.error else job.message
        if job.stage and job.state == JobState.RUNNING:
            detail = f"{job.stage}: {detail}"
        lines.append(f"{job.job:24} {job.kind:16} {job.state.value:10} {job.fraction * 100:7.0f}%  "
                     f"{format_age(now - job.created_at):>5}  {detail}")
    return "\n".join(lines)


def run(args) -> int:
    with connect(args) as client:
        try:
            jobs = client.list_jobs(states=args.state, limit=args.limit)
        except ServerUnavailable:
            raise unavailable(args) from None
    if args.json:
        print_json([job.to_wire() for job in jobs])
    else:
        print(format_jobs(jobs, time.time()))
    return 0

"""``server.info``'s ``health``: can this server take work right now, and if not, why.

Why: a server whose disk is full (or whose worker has stopped) still answers every quick
request, so it looks healthy while every job it takes fails or waits forever. Reporting
the data directory's free space and writability, whether the job worker runs, records
not yet on disk and the newest fault lets the add-on and ``headsplat info`` say "the
server's disk is full" before a user submits.
"""

from __future__ import annotations

from compute_server.storage.disk_space import FREE_SPACE_HINT, disk_state, format_bytes


def server_health(ctx) -> dict:
    """-> ``{"ok", "problems": [sentence], "data_dir", "free_bytes", "total_bytes",
    "writable", "min_free_bytes", "worker_alive", "unsaved_records", "last_error"}``."""
    disk = disk_state(ctx.config.data_dir)
    jobs = ctx.jobs.health()
    floor = ctx.limits.min_free_bytes
    problems = []
    if not disk.writable:
        problems.append(f"the data directory {disk.path} is read-only: no job can run until it is writable")
    elif disk.free_bytes < floor:
        problems.append(f"the server's disk is full: {format_bytes(disk.free_bytes)} free in {disk.path}, below "
                        f"its reserve of {format_bytes(floor)}; {FREE_SPACE_HINT}")
    if not jobs["worker_alive"]:
        problems.append("the job worker is not running: jobs stay queued; restart the server")
    if jobs.get("cluster_problem"):
        problems.append(jobs["cluster_problem"])
    if jobs["unsaved_records"]:
        problems.append(f"{jobs['unsaved_records']} job record(s) could not be saved yet (full or read-only disk)")
    return {"ok": not problems, "problems": problems, **disk.to_wire(), "min_free_bytes": floor, **jobs}

"""``headsplat info``: ask a server what it is and what it offers."""

from __future__ import annotations

from shared.client import ServerUnavailable

from .common import add_client_options, connect, format_age, print_json, unavailable


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show a server's version, device, models and limits")
    add_client_options(p)
    p.set_defaults(func=run)


def format_info(info: dict) -> str:
    """server.info result -> lines for people."""
    limits = info.get("limits", {})
    queue = info.get("queue", {})
    heads = ", ".join(m.get("name", "?") + (" (default)" if m.get("default") else "") for m in info["head_models"])
    diffusion = "; ".join(_diffusion_model(m) for m in info["diffusion_models"]) or "none"
    lines = [
        f"{info['name']} {info['version']} (protocol {info['protocol']}{', CURVE' if info.get('secure') else ''})",
        f"  device:           {info['device']}",
        f"  head models:      {heads or 'none'}",
        f"  diffusion models: {diffusion}",
        f"  queue:            {queue.get('queued', 0)} waiting, running: {queue.get('running') or 'nothing'}",
        f"  up:               {format_age(info.get('uptime_s', 0.0))}",
    ]
    if info.get("doctor"):
        lines.append(f"  doctor:           {_doctor_line(info['doctor'])}")
    if limits:
        lines.append(f"  limits:           {limits['max_message_bytes'] / 2**20:g} MiB per message, "
                     f"{limits['max_image_pixels'] / 1e6:g} MP per image, {limits['max_render_frames']} frames "
                     f"per render, {limits['max_queued_jobs']} queued jobs")
    lines += _cluster_lines(info.get("cluster"))
    lines += _health_lines(info.get("health"))
    return "\n".join(lines)


def _cluster_lines(cluster: dict | None) -> list[str]:
    """The Ray cluster the jobs run on (headsplat serve --cluster), worker by worker."""
    if not cluster:
        return []
    state = "reachable" if cluster.get("reachable") else "UNREACHABLE"
    lines = [f"  cluster:          {cluster.get('address')} ({state}): {len(cluster.get('nodes', []))} node(s), "
             f"{cluster.get('cpus', 0):g} CPUs, {cluster.get('gpus', 0):g} GPUs, "
             f"{cluster.get('free_workers', 0)} of {len(cluster.get('workers', []))} workers free"]
    for worker in cluster.get("workers", []):
        doing = "restarting" if worker.get("restarting") else (worker.get("job") or "free")
        lines.append(f"    {worker.get('name')}: {worker.get('device')} on {worker.get('node')} (pid {worker.get('pid')}), "
                     f"{doing}, {worker.get('jobs_done', 0)} tasks done")
    return lines


def _health_lines(health: dict | None) -> list[str]:
    """The server's own view of whether it can take work (server.info ``health``)."""
    if not health:
        return []
    free = health.get("free_bytes", 0) / 2**30
    disk = f"{free:.1f} GiB free in {health.get('data_dir', '?')}" + ("" if health.get("writable", True)
                                                                        else " (READ-ONLY)")
    lines = [f"  data disk:        {disk}"]
    if health.get("ok", True):
        lines.append("  health:           ok")
    else:
        lines += [f"  PROBLEM:          {problem}" for problem in health.get("problems", [])]
    return lines


def _doctor_line(summary: dict) -> str:
    """The server's cached doctor summary in one line: its problems, or that there are none."""
    problems = summary.get("problems") or []
    if not problems:
        return "no problems found (quick checks; `headsplat doctor` on the server runs them all)"
    return "; ".join(f"{p.get('verdict', '?').upper()} {p.get('name', '?')}: {p.get('detail', '')}" for p in problems)


def _diffusion_model(entry: dict) -> str:
    """"name (backend)", or why a configured model cannot be used (a user who configured
    it needs to see that before choosing it)."""
    text = f"{entry.get('name', '?')} ({entry.get('backend', '?')})"
    if entry.get("usable") is False:
        text += f" NOT USABLE: {entry.get('problem') or 'no reason given'}"
    return text


def run(args) -> int:
    with connect(args) as client:
        try:
            info = client.info()
        except ServerUnavailable:
            raise unavailable(args) from None
    if args.json:
        print_json(info)
    else:
        print(format_info(info))
    return 0

"""Running the checks in report order: system first (it picks the device the others run
on), then gsplat, diffusion, face, head models, data directory, endpoint, end to end."""

from __future__ import annotations

from collections.abc import Callable

from . import (diffusion_checks, end_to_end, endpoint_checks, face_checks, gsplat_checks, head_checks,
               storage_checks, system)
from .records import SKIPPED, Check, DoctorReport, DoctorSettings


def run_doctor(settings: DoctorSettings, *, on_check: Callable[[Check], None] | None = None,
               on_progress: Callable[[dict], None] | None = None) -> DoctorReport:
    """Every check; ``on_check(check)`` as each one finishes (the CLI prints as it goes),
    ``on_progress(params)`` with the end-to-end job's progress events."""
    report = DoctorReport()

    def add(found: list[Check]) -> None:
        for check in found:
            report.checks.append(check)
            if on_check is not None:
                on_check(check)

    system_checks, device = system.checks(settings)
    add(system_checks)
    add(gsplat_checks.checks(device))
    add(diffusion_checks.checks(settings, device))
    add(face_checks.checks())
    add(head_checks.checks(settings))
    add(storage_checks.checks(settings))
    add(endpoint_checks.checks(settings))
    if settings.end_to_end:
        add(end_to_end.checks(settings, on_progress))
    else:
        add([Check(end_to_end.NAME, SKIPPED, "not run (--quick)", group=end_to_end.GROUP)])
    return report


def run_cheap(settings: DoctorSettings) -> DoctorReport:
    """The checks that cost milliseconds, for a running server's ``server.info``: versions,
    CUDA, installed packages, the models config and head files (cached parses). Nothing is
    compiled, loaded onto the GPU or bound; the data directory is left to ``server.info``'s
    live ``health`` entry, and the endpoint is the one the server answers on."""
    report = DoctorReport()
    system_checks, device = system.checks(settings, cheap=True)
    report.checks += system_checks
    report.checks += gsplat_checks.checks(device, cheap=True)
    report.checks += diffusion_checks.checks(settings, device, cheap=True)
    report.checks += face_checks.checks(cheap=True)
    report.checks += head_checks.checks(settings)
    return report

"""Registers the doctor's cached summary as the ``doctor`` entry of ``server.info``
(loaded by ``compute_server.server.app`` like the pipeline plugin), computed once here."""

from __future__ import annotations

from .records import DoctorSettings
from .summary import DoctorSummary


def register(server_ctx) -> None:
    config = server_ctx.config
    settings = DoctorSettings(data_dir=config.data_dir, device=config.device, head_models=tuple(config.head_models),
                              models_config=config.models_config, bind=config.bind, insecure=config.insecure,
                              end_to_end=False)
    summary = DoctorSummary(settings)
    summary.refresh()  # at start (tens of milliseconds), so no server.info ever waits for it
    server_ctx.providers.doctor = summary

"""Which quality preset fits a server's device, for the CLI and the add-on alike.

Why: ``standard`` (6,000 iterations at 512 px) takes minutes on a CUDA GPU and about an
hour on a CPU, so a newcomer who leaves the preset alone on a CPU server would wait an
hour for a first look. When the user did not choose, the preset follows the device the
server reports in ``server.info`` (``"cuda:0 NVIDIA ..."`` or ``"cpu (N threads)"``):
draft on a CPU, standard on CUDA. A preset the user chose always wins.
"""

from __future__ import annotations

from dataclasses import dataclass

PRESET_NAMES = ("draft", "standard", "high")


@dataclass(frozen=True)
class PresetChoice:
    """name: the preset to use. reason: one sentence for the progress output and the
    add-on's panel. chosen_by_user: the user named it (the device was not consulted)."""

    name: str
    reason: str
    chosen_by_user: bool = False


def device_is_cuda(device: str) -> bool:
    """Whether a ``server.info`` device line names a CUDA device."""
    return str(device or "").strip().lower().startswith("cuda")


def choose_preset(explicit: str | None, device: str) -> PresetChoice:
    """``explicit`` (the user's choice, any case) if given, else from the server's device.
    The reason names the device and says why; each front end adds how to choose another."""
    if explicit:
        name = explicit.lower()
        if name not in PRESET_NAMES:
            raise ValueError(f"unknown preset {explicit!r}; choose one of {', '.join(PRESET_NAMES)}")
        return PresetChoice(name, "chosen by you", chosen_by_user=True)
    if device_is_cuda(device):
        return PresetChoice("standard", f"the server computes on a CUDA GPU ({device})")
    return PresetChoice("draft", f"the server computes on the CPU ({device or 'device unknown'}), where standard "
                                 "takes about an hour")

"""The doctor's records: one ``Check`` per line of the report, and the settings the
checks read (``DoctorSettings``), mirroring what ``headsplat serve`` would use.

Why plain records: the same checks feed three readers (the ``headsplat doctor`` report,
its ``--json`` output and the summary in ``server.info``), so a check returns data and
never prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.protocol import DEFAULT_ENDPOINT

OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
VERDICTS = (OK, WARN, FAIL, SKIPPED)
NO_CUDA = "CUDA is absent"


@dataclass(frozen=True)
class Check:
    """One verdict about this machine.

    name: what was checked ("torch", "gsplat kernels", "data directory writable", ...).
    verdict: ok | warn | fail | skipped. ``fail`` means a job needs this and it is
        broken (the command exits non-zero); ``warn`` means something works worse than
        it could or an optional part is missing; ``skipped`` says why it was not run.
    detail: what was found, one sentence with the numbers (versions, sizes, seconds).
    fix: what to do about a warn or fail ("" when there is nothing to do).
    group: the section of the report ("system", "gsplat", "diffusion", ...).
    seconds: how long the check took, when that is worth showing (None otherwise).
    """

    name: str
    verdict: str
    detail: str
    fix: str = ""
    group: str = ""
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def to_wire(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class DoctorSettings:
    """What to check: the same choices ``headsplat serve`` takes.

    data_dir: the data directory a server would use. device: "auto", "cpu" or "cuda[:N]".
    head_models: FLAME files the server would offer (``--head-model``). models_config:
    the diffusion models config (``--models-config``). bind, curve_secret, curve_clients,
    insecure: the endpoint and its keys. end_to_end: run the portrait-to-frame check;
    end_to_end_iterations: its optimization iterations (100 for the one-minute check).
    """

    data_dir: Path
    device: str = "auto"
    head_models: tuple[str, ...] = ()
    models_config: str | None = None
    bind: str = DEFAULT_ENDPOINT
    curve_secret: Path | None = None
    curve_clients: Path | None = None
    insecure: bool = False
    end_to_end: bool = True
    end_to_end_iterations: int = 100


@dataclass
class DoctorReport:
    """Every check, in report order, and what a reader needs at a glance."""

    checks: list[Check] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {verdict: sum(c.verdict == verdict for c in self.checks) for verdict in VERDICTS}

    @property
    def failed(self) -> bool:
        """True when something a job needs is broken (the command's exit status)."""
        return any(c.verdict == FAIL for c in self.checks)

    def skipped_for_no_cuda(self) -> list[str]:
        return [c.name for c in self.checks if c.verdict == SKIPPED and NO_CUDA in c.detail]

    def to_wire(self) -> dict:
        return {"checks": [c.to_wire() for c in self.checks], "counts": self.counts(), "failed": self.failed}

"""``headsplat doctor``'s checks: is this machine ready to make avatars, and if not, what
to do about it. One module per group of checks, each returning plain ``Check`` records
(name, verdict ok/warn/fail/skipped, detail, fix); ``runner`` puts them in report order,
``summary`` keeps the cheap ones cached for ``server.info``, ``plugin`` registers that
summary with a server.
"""

from .records import FAIL, OK, SKIPPED, WARN, Check, DoctorReport, DoctorSettings
from .runner import run_cheap, run_doctor

__all__ = ["Check", "DoctorReport", "DoctorSettings", "FAIL", "OK", "SKIPPED", "WARN", "run_cheap", "run_doctor"]

"""What every HeadSplat operator shares: the ``wait`` option, blocking in background
mode, and turning outcomes into ``self.report`` (errors carry the server's sentence;
a script sees them as the RuntimeError bpy.ops raises for ERROR reports)."""

from __future__ import annotations

from bpy.props import EnumProperty

from .. import connection
from ..connection import Ticket

WAIT_ITEMS = [
    ("AUTO", "Auto", "Wait for the server in background mode (scripts, render farms); return at once in the UI"),
    ("WAIT", "Wait", "Block until the server's work is done (scripts run inside the UI)"),
    ("RETURN", "Return", "Return at once; a timer finishes the work (the UI never freezes)"),
]


def wait_property():
    return EnumProperty(name="Wait", items=WAIT_ITEMS, default="AUTO", options={"SKIP_SAVE"},
                        description="Whether the operator waits for the server before returning")


def should_wait(operator) -> bool:
    mode = getattr(operator, "wait", "AUTO")
    return connection.is_blocking() if mode == "AUTO" else mode == "WAIT"


def report_failure(operator, message: str) -> set:
    operator.report({"ERROR"}, message)
    return {"CANCELLED"}


def conclude(operator, tickets: list[Ticket] | Ticket, *, started: str, timeout_s: float | None = None) -> set:
    """Wait for the tickets when the operator should (reporting the outcome), else
    report that the work started and return at once."""
    tickets = tickets if isinstance(tickets, list) else [tickets]
    failed = [t for t in tickets if t.finished and t.failure is not None]
    if failed:
        return report_failure(operator, failed[0].failure.message)
    if not should_wait(operator):
        operator.report({"INFO"}, started)
        return {"FINISHED"}
    connection.block_until(lambda: all(t.finished for t in tickets), timeout_s)
    unfinished = [t for t in tickets if not t.finished]
    if unfinished:
        return report_failure(operator, "the server's work did not finish (see the HeadSplat panel for its state)")
    failed = [t for t in tickets if t.failure is not None]
    if failed:
        return report_failure(operator, failed[0].failure.message)
    operator.report({"INFO"}, "; ".join(t.message for t in tickets if t.message) or "done")
    return {"FINISHED"}

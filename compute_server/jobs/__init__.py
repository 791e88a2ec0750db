"""Job records, the queue, the worker and cancellation.

Plugins define heavy methods as ``JobKind``s and receive a ``JobContext`` while running
(see context.py); the ``JobManager`` (manager.py) queues and runs them.
"""

from .context import JobContext, JobKind

__all__ = ["JobContext", "JobKind"]

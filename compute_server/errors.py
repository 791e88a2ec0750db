"""Exceptions that cross module boundaries inside the server.

A ``UserError`` is a problem the user caused and can fix (no face in the image, a corrupt
FLAME file, a motion with the wrong number of coefficients). It carries a protocol error
code and a sentence naming the problem; the server sends both to the client unchanged.
Every other exception is a bug or an environment failure and is reported as ``internal``.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or configuration, reported as-is to the client."""

    def __init__(self, code: str, message: str, **details):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class JobCancelled(Exception):
    """Raised inside a job's loops once its cancel was requested."""

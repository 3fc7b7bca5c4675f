"""Errors a user can cause, each carrying the fix."""

from __future__ import annotations


class UserError(ValueError):
    """A problem caused by the user's input, with a message that names the fix.

    Subclasses ``ValueError`` so callers validating arguments can catch either.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} Fix: {fix}")

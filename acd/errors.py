"""Errors a user can act on: the CLI prints them as one line (no traceback) and exits 2.

Anything else that escapes a build is a bug and keeps its traceback.
"""
from __future__ import annotations


class AcdError(Exception):
    """A build cannot go on for a reason the user can fix; str(exc) is the one line they see."""


class BackendUnavailable(AcdError):
    """No model endpoint can serve (every one refused, or answered 401/403). Work done so far is kept
    (parts on disk, the request cache), so a rerun after the fix continues where this one stopped."""


class BudgetExhausted(BackendUnavailable):
    """The next request would take spent + in-flight dollars past backend.budget_usd. Finished lots and every
    answer received are kept (parts, the request cache): a rerun with a larger budget continues."""


class NothingToExport(AcdError, ValueError):
    """Every planned pair failed its checks, was dead-lettered or sits in a rejected lot."""

"""The only functions that change state. Each writes its event in the caller's transaction and
flushes; the request, command or job that called it commits once."""

from .engine import ConflictError, GovernanceError, TransitionRefused, actions_for, fire

__all__ = ["ConflictError", "GovernanceError", "TransitionRefused", "actions_for", "fire"]

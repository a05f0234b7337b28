"""The errors a user sees as one sentence (the CLI, the pages and the API translate them; no traceback).

They live at the bottom of the package so that every layer, and the light ``govern submit`` client, can
raise and catch them without importing the layers that define the rest of the system.
"""

from __future__ import annotations

from pathlib import Path


class Reason(str):
    """A refusal's sentence in English (what the event log, the CLI and the API carry, as a plain ``str``) that
    keeps its message template and parameters, so a page can say it in the reader's language. Templates are
    marked with ``N_`` for the catalogue; a parameter that is itself a :class:`Reason` is translated too.

    This layer knows no Flask: the web translates (``governance.web.i18n.say``)."""

    template: str
    params: dict[str, object]

    def __new__(cls, template: str, **params: object) -> Reason:
        self = super().__new__(cls, template % params if params else template)
        self.template, self.params = template, params
        return self


def joined(parts: list, separator: str = "; ") -> Reason:
    """Several reasons (or values) as one, each still translatable."""
    names = {f"part{index}": part for index, part in enumerate(parts)}
    return Reason(separator.join(f"%({name})s" for name in names), **names)


class GovernanceError(Exception):
    """A user-facing error: the message says what is wrong."""


class TransitionRefused(GovernanceError):
    """A workflow event was refused: by the table (``declared``), the actor's roles, the supplied fields or a
    named guard, with the guard's reason."""

    def __init__(self, event: str, state: str, guard: str, reason: str):
        self.event, self.state, self.guard, self.reason = event, state, guard, reason
        super().__init__(f"'{event}' refused by guard '{guard}': {reason}")


class ConflictError(GovernanceError):
    """Someone else changed the record since it was read."""


class NotPermitted(GovernanceError):
    """The actor's role or relation to the record does not allow this (the pages and the API answer 403)."""


class ConfigError(Exception):
    """A setting is missing, unknown or malformed; the message names where it came from."""


class DataFileError(Exception):
    """A data file (rules, checklist, policy, item bank, descriptor) is malformed: the message names the file,
    the line where known, and the key."""

    def __init__(self, path: str | Path, line: int | None, key: str | None, message: str):
        self.path, self.line, self.key, self.message = str(path), line, key, message
        where = f"{self.path}:{line}" if line else self.path
        what = f" key '{key}':" if key else ""
        super().__init__(f"{where}:{what} {message}")

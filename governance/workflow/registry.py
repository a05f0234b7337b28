"""What guards and effects are given (the :class:`Context`) and how they are named (a :class:`Registry`).

Guards and effects are plain functions registered under the names the transition table uses. Each
module that declares them owns its registry (``governance.guards.guard``,
``governance.operations.effects.effect``); the engine imports those modules explicitly, so the
registries are complete in every process that can fire an event, whether or not it built the web app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from ..models import Deployment, Event, Submission, User
from . import Machine, Transition

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True)
class Registered:
    function: Callable
    #: A guard that judges supplied data (checked when the action is fired, not when it is offered).
    needs_data: bool = False


class Registry:
    """Named guards or effects: ``@registry("name")`` registers a function under the table's name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Registered] = {}

    def __call__(self, name: str, *, needs_data: bool = False) -> Callable[[Callable], Callable]:
        def register(function: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = Registered(function, needs_data)
            return function
        return register

    def __getitem__(self, name: str) -> Registered:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> set[str]:
        return set(self._entries)


#: The engine's ``fire``, handed to effects through the context (effects never import the engine).
FireFunction = Callable[..., Event]


@dataclass
class Context:
    """Everything a guard or effect may look at, and what it adds to the event."""

    session: Session
    machine: Machine
    subject: Submission | Deployment
    transition: Transition
    actor: User | None
    roles: frozenset[str]
    data: dict[str, Any]
    settings: Settings
    now: datetime
    fire_function: FireFunction
    payload: dict[str, Any] = field(default_factory=dict)
    #: Follow-ups run after the event is appended (e.g. a transition of the deployment the case approved).
    then: list[Callable[[], None]] = field(default_factory=list)

    @property
    def submission(self) -> Submission:
        assert isinstance(self.subject, Submission)
        return self.subject

    @property
    def deployment(self) -> Deployment:
        if isinstance(self.subject, Deployment):
            return self.subject
        return self.session.get(Deployment, self.subject.deployment_id)

    @property
    def is_system(self) -> bool:
        return self.actor is None

    @property
    def outcome_event(self) -> str:
        return self.transition.event

    def fire(self, subject: Submission | Deployment, event: str, data: dict[str, Any] | None = None) -> Event:
        """A follow-up transition by the system, in the same transaction and on the same clock."""
        return self.fire_function(self.session, subject, event, None, data, settings=self.settings, now=self.now)

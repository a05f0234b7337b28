"""The one way a case or a deployment changes state.

:func:`fire` looks the transition up in the declared table, checks the actor's roles, the supplied
fields and every named guard (the first refusal is raised with the guard's name and reason), bumps
the optimistic lock with a compare-and-set (a concurrent writer gets :class:`ConflictError`, never a
lost update), runs the named effects, moves the state and appends the event to the hash chain, all in
the caller's transaction. The caller commits once. Events on one subject are serialised on its row (locked
and re-read first); an *independent* transition (one person's declaration, checklist, vote or comment) does not
compare the version the caller loaded, so eight members voting at once all succeed, one after the other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from .. import eventlog, guards, queries
from ..config import Settings
from ..domain import N_, SYSTEM
from ..errors import ConflictError, GovernanceError, Reason, TransitionRefused, joined
from ..models import Deployment, Event, Submission, User, utcnow
from ..permissions import roles_of
from ..workflow import DEPLOYMENTS, SUBMISSIONS, FieldSpec, Machine, Transition
from ..workflow.registry import Context
from . import effects

__all__ = ["Action", "ConflictError", "Context", "EFFECTS", "GUARDS", "GovernanceError", "TransitionRefused",
           "actions_for", "check_fields", "find_transition", "fire", "machine_for", "registry_problems"]


#: The registries the transition tables name, complete once this module is imported (in every process).
GUARDS = guards.guard
EFFECTS = effects.effect


def machine_for(subject: Any) -> tuple[Machine, str]:
    if isinstance(subject, Submission):
        return SUBMISSIONS, "state"
    if isinstance(subject, Deployment):
        return DEPLOYMENTS, "status"
    raise TypeError(f"no workflow for {type(subject).__name__}")


def _state_of(subject: Any) -> str:
    machine, attr = machine_for(subject)
    return getattr(subject, attr)


def _coerce_field(spec: FieldSpec, raw: Any) -> Any:
    """Convert one supplied value to its declared kind; raise ValueError with a plain message."""
    if spec.kind in {"text", "textarea", "email", "password"}:
        if not isinstance(raw, str):
            raise ValueError("expected text")
        value = raw.strip() if spec.kind != "password" else raw
        if spec.limit is not None and len(value) > spec.limit:
            raise ValueError(f"at most {spec.limit} characters")
        if spec.kind == "email" and value and not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise ValueError("expected an e-mail address")
        return value.lower() if spec.kind == "email" else value
    if spec.kind == "choice":
        if raw not in spec.choices:
            raise ValueError(f"expected one of {', '.join(spec.choices)}")
        return raw
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in {"true", "yes", "y", "on", "1", "false", "no", "n", "off", "0"}:
            return raw.lower() in {"true", "yes", "y", "on", "1"}
        raise ValueError("expected true or false")
    if spec.kind in {"int", "meeting"}:  # a meeting is named by its id
        if isinstance(raw, bool):
            raise ValueError("expected a whole number")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError("expected a whole number") from None
        if not -2**31 <= value < 2**31:  # the database's integer columns (a larger id cannot exist)
            raise ValueError("the number is out of range")
        return value
    if spec.kind == "date":
        if isinstance(raw, date):
            return raw
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None
    if spec.kind == "json":
        if isinstance(raw, str):
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg}") from None
        if isinstance(raw, (dict, list)):
            return raw
        raise ValueError("expected JSON")
    raise ValueError(f"unsupported field kind {spec.kind}")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ({}, [])


def check_fields(transition: Transition, state: str, data: dict[str, Any]) -> dict[str, Any]:
    """The supplied data, converted; refused naming the field when missing, unknown or malformed."""
    specs = {spec.name: spec for spec in transition.fields}
    unknown = sorted(set(data) - set(specs))
    if unknown:
        raise TransitionRefused(transition.event, state, "fields",
                                Reason(N_("unknown field(s) %(unknown)s; this action takes %(known)s"),
                                       unknown=", ".join(unknown), known=", ".join(specs) or "no fields"))
    clean: dict[str, Any] = {}
    for name, spec in specs.items():
        raw = data.get(name)
        if _is_empty(raw):
            if spec.required and spec.kind != "bool":
                raise TransitionRefused(transition.event, state, "fields",
                                        Reason(N_("'%(field)s' is required (%(label)s)"), field=name,
                                               label=Reason(spec.label)))
            clean[name] = False if spec.kind == "bool" else None
            continue
        try:
            clean[name] = _coerce_field(spec, raw)
        except ValueError as exc:
            raise TransitionRefused(transition.event, state, "fields",
                                    Reason(N_("'%(field)s': %(problem)s"), field=name, problem=str(exc))) from None
    return clean


def _actor_roles(session: Session, actor: User | None) -> frozenset[str]:
    return frozenset({SYSTEM}) if actor is None else roles_of(session, actor)


def _check(ctx: Context, *, include_data_guards: bool = True) -> None:
    t, state = ctx.transition, _state_of(ctx.subject)
    if ctx.actor is not None and not ctx.actor.active:
        raise TransitionRefused(t.event, state, "roles", Reason(N_("your account is deactivated")))
    if not (ctx.roles & t.roles):
        have = joined(sorted(ctx.roles), ", ") if ctx.roles else Reason(N_("no role"))
        raise TransitionRefused(t.event, state, "roles",
                                Reason(N_("only %(roles)s may do this (%(action)s); you have %(have)s"),
                                       roles=" or ".join(sorted(t.roles)), action=Reason(t.label),
                                       have=have))
    for name in t.guards:
        registered = GUARDS[name]
        if registered.needs_data and not include_data_guards:
            continue
        reason = registered.function(ctx)
        if reason:
            raise TransitionRefused(t.event, state, name, reason)


def find_transition(subject: Any, event: str) -> Transition:
    machine, _ = machine_for(subject)
    state = _state_of(subject)
    transition = machine.find(state, event)
    if transition is None:
        possible = ", ".join(t.event for t in machine.available(state)) or "none"
        if event not in machine.events():
            raise TransitionRefused(event, state, "declared",
                                    Reason(N_("'%(event)s' is not an event of the %(workflow)s workflow (events "
                                              "possible now: %(possible)s)"), event=event, workflow=machine.name,
                                           possible=possible))
        raise TransitionRefused(event, state, "declared",
                                Reason(N_("'%(event)s' is not possible in state '%(state)s' (events possible now: "
                                          "%(possible)s)"), event=event, state=state, possible=possible))
    return transition


def fire(session: Session, subject: Submission | Deployment, event: str, actor: User | None,
         data: dict[str, Any] | None = None, *, settings: Settings, now: datetime | None = None) -> Event:
    """Apply ``event`` to ``subject`` as ``actor`` (None: the system) and return the written event."""
    machine, state_attr = machine_for(subject)
    seen_version, seen = subject.lock_version, machine.find(getattr(subject, state_attr), event)
    guards.preverify_signature(session, actor, data)
    _lock_and_reload(session, subject)
    if subject.lock_version != seen_version and not (seen is not None and seen.independent):
        raise ConflictError(f"{type(subject).__name__.lower()} {subject.id} was changed by someone else since "
                            f"you loaded it (version {seen_version}); reload and try again")
    from_state = getattr(subject, state_attr)
    transition = find_transition(subject, event)
    ctx = Context(session=session, machine=machine, subject=subject, transition=transition, actor=actor,
                  roles=_actor_roles(session, actor), data={}, settings=settings, now=now or utcnow(),
                  fire_function=fire)
    ctx.data = check_fields(transition, from_state, data or {})
    _check(ctx)
    _compare_and_set_lock(session, subject)
    for name in transition.effects:
        EFFECTS[name].function(ctx)
    target = transition.to_state.value
    setattr(subject, state_attr, target)
    subject.updated_at = ctx.now
    try:
        session.flush()
    except OperationalError as exc:
        raise ConflictError("the database is busy with another change to this record; try again") from exc
    public_data = {spec.name: ctx.data.get(spec.name) for spec in transition.fields if not spec.secret}
    recorded = eventlog.append(
        session, event, actor=actor,
        submission_id=subject.id if isinstance(subject, Submission) else None,
        deployment_id=subject.id if isinstance(subject, Deployment) else subject.deployment_id,
        from_state=from_state, to_state=target,
        payload={**{k: v for k, v in public_data.items() if v is not None}, **ctx.payload},
        occurred_at=ctx.now)
    for follow_up in ctx.then:
        follow_up()
    return recorded


def _lock_and_reload(session: Session, subject: Any) -> None:
    """Hold the subject's row until the transaction ends and re-read it, so every guard judges the committed
    case and concurrent events on one case run one after the other: on PostgreSQL ``SELECT ... FOR UPDATE``; on
    SQLite a write to the row, which takes the database's write lock (writers wait ``busy_timeout``)."""
    session.flush()  # the caller's pending changes to the subject are written before it is re-read
    table = type(subject).__table__
    try:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(table.c.id).where(table.c.id == subject.id).with_for_update())
        else:
            session.execute(update(table).where(table.c.id == subject.id)
                            .values(lock_version=table.c.lock_version))
        session.refresh(subject)
    except OperationalError as exc:  # a lock timeout or a deadlock the database broke
        raise ConflictError("another change to this record is being saved; try again") from exc


def _compare_and_set_lock(session: Session, subject: Any) -> None:
    table = type(subject).__table__
    expected = subject.lock_version
    try:
        result = session.execute(update(table).where(table.c.id == subject.id, table.c.lock_version == expected)
                                 .values(lock_version=expected + 1))
    except OperationalError as exc:
        raise ConflictError("another change to this record is being saved; try again") from exc
    if result.rowcount != 1:
        raise ConflictError(f"{type(subject).__name__.lower()} {subject.id} was changed by someone else since "
                            f"you loaded it (version {expected}); reload and try again")
    set_committed_value(subject, "lock_version", expected + 1)


@dataclass(frozen=True)
class Action:
    """A transition as offered to an actor: allowed, or refused with the guard's reason."""

    transition: Transition
    refusal: TransitionRefused | None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def actions_for(session: Session, subject: Any, actor: User | None, settings: Settings) -> list[Action]:
    """Every transition possible from the current state that the actor's roles allow, each checked by
    its guards (guards that judge supplied data are checked when the action is fired)."""
    machine, state_attr = machine_for(subject)
    roles = _actor_roles(session, actor)
    actions = []
    with queries.memoized(session):  # the guards of every action ask the same questions: once each
        for transition in machine.available(getattr(subject, state_attr)):
            if not (roles & transition.roles):
                continue
            ctx = Context(session=session, machine=machine, subject=subject, transition=transition, actor=actor,
                          roles=roles, data={}, settings=settings, now=utcnow(), fire_function=fire)
            try:
                _check(ctx, include_data_guards=False)
            except TransitionRefused as refusal:
                actions.append(Action(transition, refusal))
            else:
                actions.append(Action(transition, None))
    return actions


def registry_problems() -> list[str]:
    """Guards and effects named in the tables but not registered (checked at start-up and by tests)."""
    problems = []
    for machine in (SUBMISSIONS, DEPLOYMENTS):
        problems += [f"{machine.name}: guard '{g}' is not registered" for g in machine.guard_names() - GUARDS.names()]
        problems += [f"{machine.name}: effect '{e}' is not registered" for e in machine.effect_names() - EFFECTS.names()]
    return problems

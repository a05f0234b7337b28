"""The deployment life cycle as a specification: every (status, event, role) gives the declared status or
a refusal naming its guard; and the system and the chair cannot stand in for each other."""

from __future__ import annotations

import pytest

from governance import migrate
from governance.db import get_db
from governance.domain import SYSTEM, Role
from governance.models import Deployment, User
from governance.operations import TransitionRefused, fire
from governance.workflow import DEPLOYMENTS, DeploymentStatus

from .conftest import make_app
from .factories import Factory

CHAIR = {"irb_chair"}
SPEC: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("pending", "activate"): ("active", {SYSTEM}),
    ("active", "suspend"): ("suspended", CHAIR | {SYSTEM}),
    ("suspended", "reinstate"): ("active", CHAIR),
    ("suspended", "renew"): ("active", {SYSTEM}),
    ("suspended", "expire"): ("expired", {SYSTEM}),
    ("expired", "renew"): ("active", {SYSTEM}),
    **{(status, "retire"): ("retired", CHAIR | {"admin"}) for status in ("pending", "active", "suspended", "expired")},
}
ROLES = [r.value for r in Role] + [SYSTEM]
EVENTS = sorted({event for _, event in SPEC})
STATUSES = [s.value for s in DeploymentStatus]
JUSTIFICATION = "The incident was reviewed by the full board and the root cause fixed."


def data_for(event: str, role: str) -> dict:
    return {"suspend": {"reason": "Under investigation.", **({"cause": "incident"} if role == SYSTEM else {})},
            "reinstate": {"justification": JUSTIFICATION}, "renew": {"reason": "Continuing review approved."},
            "expire": {"reason": "Not renewed."}, "retire": {"reason": "Replaced."}}.get(event, {})


def test_declared_table_is_the_specification():
    declared = {(t.source.value, t.event): (t.target.value, set(t.roles)) for t in DEPLOYMENTS.transitions}
    assert declared == SPEC


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deployments")
    database = folder / "db.sqlite3"
    migrate.upgrade(f"sqlite:///{database}")
    (folder / "instance").mkdir()
    app = make_app(folder / "instance", f"sqlite:///{database}")
    session = get_db(app).session_factory()
    factory = Factory(app, session)
    chair = factory.person("chair")
    deployments = {"pending": factory.deployment().id}
    for status in ("active", "suspended", "expired", "retired"):
        case = factory.case_in("approved")
        deployment = session.get(Deployment, case.deployment_id)
        if status != "active":
            fire(session, deployment, "suspend", chair, {"reason": "Test."}, settings=factory.settings)
        if status == "expired":
            fire(session, deployment, "expire", None, {"reason": "Not renewed."}, settings=factory.settings)
        if status == "retired":
            fire(session, deployment, "retire", chair, {"reason": "Replaced."}, settings=factory.settings)
        session.commit()
        deployments[status] = deployment.id
    actors = {role: factory.user(role).id for role in [r.value for r in Role]}
    actors["irb_chair"] = chair.id
    session.close()
    yield app, deployments, actors
    get_db(app).dispose()


def attempt(world, status: str, event: str, role: str, data: dict | None = None):
    app, deployments, actors = world
    session = get_db(app).session_factory()
    try:
        deployment = session.get(Deployment, deployments[status])
        assert deployment.status == status
        actor = None if role == SYSTEM else session.get(User, actors[role])
        try:
            fire(session, deployment, event, actor, data_for(event, role) if data is None else data,
                 settings=app.config["GOVERNANCE"])
        except TransitionRefused as refusal:
            return ("refused", refusal.guard, refusal.reason)
        return ("moved", deployment.status)
    finally:
        session.rollback()
        session.close()


@pytest.mark.parametrize("status", STATUSES)
def test_an_undeclared_event_is_refused_by_the_table_whoever_fires_it(world, status):
    for event in EVENTS:
        if (status, event) in SPEC:
            continue
        for role in ROLES:
            outcome = attempt(world, status, event, role)
            assert outcome[:2] == ("refused", "declared"), (status, event, role, outcome)


@pytest.mark.parametrize(("status", "event", "role"), [
    (status, event, role) for (status, event), (_target, allowed) in sorted(SPEC.items())
    for role in ROLES if role not in allowed])
def test_a_role_the_transition_does_not_name_is_refused_by_roles(world, status, event, role):
    assert attempt(world, status, event, role)[:2] == ("refused", "roles")


#: Every allowed (status, event, role) moves in the shared world (with the data ``data_for`` supplies); the
#: guards' refusals are pinned by the tests below (causes, reinstatement, the system and the chair).
ALLOWED = sorted((status, event, role) for (status, event), (_t, allowed) in SPEC.items() for role in allowed)


@pytest.mark.parametrize(("status", "event", "role"), ALLOWED)
def test_every_allowed_role_moves_to_the_declared_status(world, status, event, role):
    assert attempt(world, status, event, role) == ("moved", SPEC[(status, event)][0])


@pytest.mark.parametrize(("role", "cause", "guard"), [
    ("irb_chair", "integrity", "suspension_cause_allowed"),  # the chair cannot claim an automatic cause
    (SYSTEM, None, "suspension_cause_allowed"),  # an automatic suspension names its cause
    (SYSTEM, "chair", "suspension_cause_allowed"),
    ("irb_chair", "meteor", "fields"),
])
def test_suspension_causes(world, role, cause, guard):
    data = {"reason": "Test.", **({"cause": cause} if cause else {})}
    outcome = attempt(world, "active", "suspend", role, data)
    assert outcome[:2] == ("refused", guard), outcome

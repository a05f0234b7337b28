"""Conditions of approval, tracked (issue 15): each line of an "approved with conditions" decision is a condition
with an owner, a due date and evidence; the deployment shows it is active with open conditions; a blocking one
still open at its due date suspends the deployment, which the chair can reinstate only once it is met or waived."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from governance import queries
from governance.db import get_db
from governance.models import ApprovalCondition, Deployment, Event, Notification, utcnow
from governance.operations.conditions import meet_condition, split_conditions, waive_condition
from governance.errors import GovernanceError, NotPermitted, TransitionRefused
from governance.operations.engine import fire
from governance.scheduler import tick

from .factories import PASSWORD

CONDITIONS = "1. Monthly accuracy report to the committee.\n2. Re-train staff on the escalation route.\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("Monthly re-audit.", ["Monthly re-audit."]),
    ("- a\n* b\n\n3) c\n（4）d\n5、e", ["a", "b", "c", "d", "e"]),
    ("Report monthly.\n\nOpen obligations to be satisfied before clinical use: mlps_grading", ["Report monthly."]),
])
def test_each_line_is_a_condition(text, expected):
    assert split_conditions(text) == expected


def _approve_with_conditions(factory, *, blocking: bool, due):
    case = factory.submission()
    factory.drive(case, "classified")
    factory.fire(case, "confirm_classification", factory.person("chair"))
    factory.ready_for_votes(case)
    factory.vote_all(case, "approve_with_conditions")
    factory.fire(case, "approve_with_conditions", factory.person("chair"), conditions=CONDITIONS,
                 conditions_due=due, conditions_blocking=blocking)
    return factory.session.get(Deployment, case.deployment_id)


def _conditions(factory, deployment):
    factory.session.expire_all()
    return factory.session.execute(select(ApprovalCondition).where(ApprovalCondition.deployment_id == deployment.id)
                                   .order_by(ApprovalCondition.number)).scalars().all()


def test_a_blocking_condition_overdue_suspends_and_holds_reinstatement_until_it_is_met(app, factory, client):
    due = (utcnow() + timedelta(days=30)).date()
    deployment = _approve_with_conditions(factory, blocking=True, due=due)
    first, second = _conditions(factory, deployment)
    assert (first.text, first.due_date, first.blocking, first.status) == (
        "Monthly accuracy report to the committee.", due, True, "open")
    assert first.owner_id == deployment.owner_id and deployment.status == "active"
    chair, owner = factory.person("chair"), factory.person("submitter")
    # the page says so, and offers the owner a place for the evidence
    assert client.post("/login", data={"email": owner.email, "password": PASSWORD}).status_code == 302
    page = client.get(f"/deployments/{deployment.id}").get_data(as_text=True)
    assert 'id="conditions"' in page and "active with open conditions" in page and "Record as met" in page
    engine, settings = get_db(app).engine, app.config["GOVERNANCE"]
    reminded = tick(engine, settings, now=utcnow() + timedelta(days=20))
    assert {c.get("condition") for c in reminded.conditions} == {first.id, second.id}
    factory.session.expire_all()
    assert len(factory.session.execute(select(Notification).where(
        Notification.user_id == owner.id, Notification.kind == "condition_due")).scalars().all()) == 2
    later = utcnow() + timedelta(days=31)
    report = tick(engine, settings, now=later)
    assert [c["deployment"] for c in report.conditions if "deployment" in c] == [deployment.id]
    factory.session.expire_all()
    deployment = factory.session.get(Deployment, deployment.id)
    assert deployment.status == "suspended"
    assert queries.suspension_cause(factory.session, deployment) == "condition_unmet"
    settings = app.config["GOVERNANCE"]
    with pytest.raises(TransitionRefused) as refused:
        fire(factory.session, deployment, "reinstate", chair,
             {"justification": "The report arrived late but is fine."}, settings=settings, now=later)
    factory.session.rollback()
    assert refused.value.guard == "blocking_conditions_settled" and "1, 2" in str(refused.value.reason)
    with pytest.raises(NotPermitted):
        waive_condition(factory.session, first, "The committee no longer needs it.", actor=owner, now=later)
    first, second = _conditions(factory, deployment)
    with pytest.raises(GovernanceError, match="at least 10 characters"):
        meet_condition(factory.session, first, "done", actor=owner, now=later)
    meet_condition(factory.session, first, "Report of 2027-01 filed as DOC-17.", actor=owner, now=later)
    waive_condition(factory.session, second, "Training was replaced by the new SOP.", actor=chair, now=later)
    factory.session.commit()
    fire(factory.session, deployment, "reinstate", chair,
         {"justification": "Both conditions are now settled on the record."}, settings=settings, now=later)
    factory.session.commit()
    assert factory.session.get(Deployment, deployment.id).status == "active"
    names = set(factory.session.execute(select(Event.name).where(Event.deployment_id == deployment.id)).scalars())
    assert {"condition_met", "condition_waived", "suspend", "reinstate"} <= names


def test_a_condition_that_does_not_block_only_reminds(app, factory):
    deployment = _approve_with_conditions(factory, blocking=False, due=(utcnow() + timedelta(days=10)).date())
    report = tick(get_db(app).engine, app.config["GOVERNANCE"], now=utcnow() + timedelta(days=40))
    assert not [c for c in report.conditions if "deployment" in c]
    factory.session.expire_all()
    assert factory.session.get(Deployment, deployment.id).status == "active"


def test_by_default_conditions_are_due_in_90_days_and_the_past_is_refused(factory):
    deployment = _approve_with_conditions(factory, blocking=False, due=None)
    assert {c.due_date for c in _conditions(factory, deployment)} == {(utcnow() + timedelta(days=90)).date()}


def test_the_shell_lists_and_closes_conditions(factory, runner):
    deployment = _approve_with_conditions(factory, blocking=True, due=(utcnow() + timedelta(days=30)).date())
    listed = runner.invoke("condition", "list", str(deployment.id), "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["number"] for r in rows] == [2, 1] and all(r["status"] == "open" and r["blocking"] for r in rows)
    both = runner.invoke("condition", "close", str(rows[1]["id"]), "--as", factory.person("submitter").email)
    assert both.exit_code != 0 and "exactly one of --met" in both.output
    done = runner.invoke("condition", "close", str(rows[1]["id"]), "--as", factory.person("submitter").email,
                         "--met", "Report of 2027-01 filed as DOC-17.")
    assert done.exit_code == 0 and "condition 1 of deployment" in done.stdout and ": met" in done.stdout
    refused = runner.invoke("condition", "close", str(rows[0]["id"]), "--as", factory.person("submitter").email,
                            "--waive", "We would rather not do it.")
    assert refused.exit_code != 0 and "only the chair waives" in refused.output

"""After approval, with the clock under the test's control: continuing-review reminders (each once),
suspension at the due date and expiry after it, incidents (a serious one suspends; a device one needs its
adverse-event report), reinstatement by the chair only, scheduled re-audits (a regression opens an
incident; a digest mismatch suspends), e-mail over a real SMTP server, and the event log of every step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from governance import eventlog
from governance.db import get_db
from governance.digests import weights_digest
from governance.models import AuditRun, Deployment, Event, Incident, ModelVersion, Notification, Submission
from governance.scheduler import tick
from governance.operations import TransitionRefused, fire
from governance.operations.incidents import record_adverse_event_report, report_incident



def at(day, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def run_tick(app, now: datetime):
    return tick(get_db(app).engine, app.config["GOVERNANCE"], now)


def reload(session, obj):
    session.expire_all()
    return session.get(type(obj), obj.id)


def events(session, deployment: Deployment, name: str) -> list[Event]:
    return list(session.execute(select(Event).where(Event.deployment_id == deployment.id, Event.name == name)
                                .order_by(Event.seq)).scalars())


def notifications(session, kind: str) -> list[Notification]:
    return list(session.execute(select(Notification).where(Notification.kind == kind)
                                .order_by(Notification.id)).scalars())


@pytest.fixture
def approved(factory):
    """An approved fast-track case; its deployment is active with a continuing-review due date."""
    case = factory.case_in("approved")
    deployment = factory.session.get(Deployment, case.deployment_id)
    assert deployment.status == "active" and deployment.continuing_review_due is not None
    return case, deployment


# --- continuing review ------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_each_reminder_goes_out_once_then_the_deployment_is_suspended_and_later_expires(app, session, factory,
                                                                                       approved, backend):
    case, deployment = approved
    due = deployment.continuing_review_due
    owner, chair = factory.person("submitter"), factory.person("chair")
    assert run_tick(app, at(due - timedelta(days=61))).reminders == []
    sent = []
    for days_before in (60, 59, 45, 30, 30, 12, 7, 3, 1):
        report = run_tick(app, at(due - timedelta(days=days_before)))
        sent += [(days_before, r["window"]) for r in report.reminders]
    assert sent == [(60, 60), (30, 30), (7, 7)]
    reminders = notifications(session, "continuing_review")
    assert len(reminders) == 6  # three windows, owner and chair
    assert {n.user_id for n in reminders} == {owner.id, chair.id}
    # the first reminder opened the continuing-review case in draft for the owner, once
    continuing = session.execute(select(Submission).where(Submission.deployment_id == deployment.id,
                                                          Submission.kind == "continuing")).scalars().all()
    assert len(continuing) == 1 and continuing[0].state == "draft" and continuing[0].submitter_id == owner.id

    report = run_tick(app, at(due))
    assert [s["deployment"] for s in report.suspended] == [deployment.id]
    deployment = reload(session, deployment)
    assert deployment.status == "suspended"
    (suspension,) = events(session, deployment, "suspend")
    assert suspension.actor == "system"
    assert suspension.payload["cause"] == "continuing_review_overdue"
    assert "continuing review overdue" in suspension.payload["reason"] and due.isoformat() in suspension.payload["reason"]
    assert run_tick(app, at(due + timedelta(days=1))).suspended == []  # once

    # the chair cannot reinstate a lapsed approval: only an approved continuing review renews it
    with pytest.raises(TransitionRefused) as refused:
        fire(session, deployment, "reinstate", chair, {"justification": "The committee trusts this system a lot."},
             settings=factory.settings, now=at(due + timedelta(days=2)))
    assert refused.value.guard == "continuing_review_not_overdue"
    session.rollback()

    assert run_tick(app, at(due + timedelta(days=89))).expired == []
    report = run_tick(app, at(due + timedelta(days=91)))
    assert [e["deployment"] for e in report.expired] == [deployment.id]
    assert reload(session, deployment).status == "expired"
    assert eventlog.verify_chain(session).ok


def test_a_late_first_pass_sends_only_the_nearest_reminder(app, session, approved):
    _case, deployment = approved
    report = run_tick(app, at(deployment.continuing_review_due - timedelta(days=5)))
    assert [r["window"] for r in report.reminders] == [7]
    assert run_tick(app, at(deployment.continuing_review_due - timedelta(days=2))).reminders == []


def test_an_approved_continuing_review_renews_a_suspended_deployment_and_moves_the_due_date(app, session, factory,
                                                                                         approved):
    _case, deployment = approved
    due = datetime.now(UTC).date() + timedelta(days=20)  # as if approved eleven months ago
    deployment.continuing_review_due = due
    session.commit()
    run_tick(app, at(due - timedelta(days=7)))
    run_tick(app, at(due))
    assert reload(session, deployment).status == "suspended"
    continuing = session.execute(select(Submission).where(Submission.kind == "continuing")).scalars().one()
    factory.drive(continuing, "approved")
    deployment = reload(session, deployment)
    assert deployment.status == "active"
    assert deployment.continuing_review_due > due
    renew = events(session, deployment, "renew")
    assert len(renew) == 1 and f"submission {continuing.id}" in renew[0].payload["reason"]
    # and its decision dossier is the continuing-review gate's, with the accuracy trend
    from governance.operations.dossiers import pending
    gates = {gate for case_id, _seq, gate in pending(session) if case_id == continuing.id}
    assert "continuing_review" in gates


# --- incidents ----------------------------------------------------------------------------------------

@pytest.mark.both_databases
@pytest.mark.parametrize("severity, suspends", [("minor", False), ("moderate", False), ("serious", True),
                                                ("critical", True)])
def test_serious_and_critical_incidents_suspend_at_once_and_open_an_incident_case(app, session, factory, approved,
                                                                                 severity, suspends, backend):
    _case, deployment = approved
    clinician = factory.person("clinician")
    incident = report_incident(session, factory.settings, deployment=deployment, severity=severity,
                               what_happened="The summary omitted a documented penicillin allergy.",
                               reporter=clinician, patient_harmed=False)
    session.commit()
    deployment = reload(session, deployment)
    assert deployment.status == ("suspended" if suspends else "active")
    if suspends:
        (suspension,) = events(session, deployment, "suspend")
        assert suspension.payload["cause"] == "incident" and f"#{incident.id}" in suspension.payload["reason"]
    case = session.execute(select(Submission).where(Submission.incident_id == incident.id)).scalars().one()
    assert case.kind == "incident" and case.state == "submitted"
    assert case.submitter_id == deployment.owner_id
    (reported,) = events(session, deployment, "incident_reported")
    assert reported.actor == clinician.email and reported.payload["severity"] == severity
    assert {n.kind for n in notifications(session, "incident")} == {"incident"}
    # the incident case takes its own pathway: serious and critical go to the full board
    chair = factory.person("chair")
    factory.fire(case, "start_screening", chair)
    factory.fire(case, "accept", chair)
    assert case.state == "classified"
    factory.fire(case, "confirm_classification", chair)
    assert case.pathway == ("full_board" if suspends else "ai_subcommittee")
    assert case.state == "in_review"  # its own audit ran (demo backend) and passed


def test_an_incident_case_cannot_be_withdrawn(app, session, factory, approved):
    _case, deployment = approved
    incident = report_incident(session, factory.settings, deployment=deployment, severity="minor",
                               what_happened="Odd phrasing.", reporter=factory.person("clinician"))
    session.commit()
    case = session.execute(select(Submission).where(Submission.incident_id == incident.id)).scalars().one()
    with pytest.raises(TransitionRefused) as refused:
        factory.fire(case, "withdraw", factory.person("submitter"), reason="Not a real problem.")
    assert refused.value.guard == "case_may_be_withdrawn"


def test_reinstatement_needs_the_chair_and_a_written_justification(app, session, factory, approved):
    _case, deployment = approved
    report_incident(session, factory.settings, deployment=deployment, severity="critical",
                    what_happened="Recommended a contraindicated dose.", reporter=factory.person("clinician"),
                    patient_harmed=True)
    session.commit()
    deployment = reload(session, deployment)
    justification = "Root cause fixed in the prompt template; the board reviewed the incident on 2026-11-20."
    with pytest.raises(TransitionRefused) as refused:
        fire(session, deployment, "reinstate", factory.person("submitter"), {"justification": justification},
             settings=factory.settings)
    assert refused.value.guard == "roles"
    with pytest.raises(TransitionRefused) as refused:
        fire(session, deployment, "reinstate", factory.person("chair"), {"justification": "ok"},
             settings=factory.settings)
    assert refused.value.guard == "justification_given"
    with pytest.raises(TransitionRefused) as refused:
        fire(session, deployment, "reinstate", factory.person("chair"), {}, settings=factory.settings)
    assert refused.value.guard == "fields"
    session.rollback()
    factory.decide_incident_review(deployment, "approve")
    deployment = reload(session, deployment)
    fire(session, deployment, "reinstate", factory.person("chair"), {"justification": justification},
         settings=factory.settings)
    session.commit()
    deployment = reload(session, deployment)
    assert deployment.status == "active"
    (reinstated,) = events(session, deployment, "reinstate")
    assert reinstated.actor == factory.person("chair").email
    assert reinstated.payload["justification"] == justification
    assert reinstated.payload["suspension_cause"] == "incident"
    assert eventlog.verify_chain(session).ok


@pytest.mark.parametrize("outcome, reinstated", [("approve", True), ("disapprove", False)])
def test_reinstatement_after_an_incident_waits_for_the_incident_reviews_decision(app, session, factory, approved,
                                                                                 outcome, reinstated):
    _case, deployment = approved
    report_incident(session, factory.settings, deployment=deployment, severity="serious",
                    what_happened="Suggested the adult dose for a child.", reporter=factory.person("clinician"))
    session.commit()
    chair = factory.person("chair")
    justification = "Root cause fixed in the prompt template and re-audited before reinstatement."
    with pytest.raises(TransitionRefused) as refused:
        fire(session, reload(session, deployment), "reinstate", chair, {"justification": justification},
             settings=factory.settings)
    assert refused.value.guard == "incident_review_decided" and "not decided yet" in str(refused.value)
    session.rollback()
    case = factory.decide_incident_review(deployment, outcome)
    if reinstated:
        fire(session, reload(session, deployment), "reinstate", chair, {"justification": justification},
             settings=factory.settings)
        session.commit()
        assert reload(session, deployment).status == "active"
    else:
        with pytest.raises(TransitionRefused) as refused:
            fire(session, reload(session, deployment), "reinstate", chair, {"justification": justification},
                 settings=factory.settings)
        assert refused.value.guard == "incident_review_decided" and f"#{case.id}" in str(refused.value)
        session.rollback()
        assert reload(session, deployment).status == "suspended"


def test_a_device_incident_needs_its_adverse_event_report_number_before_the_decision(app, session, factory):
    case = factory.case_in("approved", example="emr_generation")
    deployment = session.get(Deployment, case.deployment_id)
    deployment.nmpa_status = "device"  # as a confirmed device classification would set it
    session.commit()
    incident = report_incident(session, factory.settings, deployment=deployment, severity="serious",
                               what_happened="Discharge summary invented a lab value.", patient_harmed=True,
                               reporter=factory.person("clinician"))
    session.commit()
    assert incident.adverse_event_required
    incident_case = session.execute(select(Submission).where(Submission.incident_id == incident.id)).scalars().one()
    chair = factory.person("chair")
    factory.fire(incident_case, "start_screening", chair)
    factory.fire(incident_case, "accept", chair)
    factory.fire(incident_case, "confirm_classification", chair)
    factory.ready_for_votes(incident_case)
    factory.vote_all(incident_case, "approve_with_conditions")
    with pytest.raises(TransitionRefused) as refused:
        factory.fire(incident_case, "approve_with_conditions", chair, conditions="Monthly re-audit.")
    assert refused.value.guard == "adverse_event_reported"
    session.rollback()
    record_adverse_event_report(session, session.get(Incident, incident.id), "CN-MDAE-2026-000123",
                                actor=factory.person("compliance"))
    session.commit()
    factory.fire(incident_case, "approve_with_conditions", chair, conditions="Monthly re-audit.")
    assert session.get(Incident, incident.id).status == "closed"
    # an incident case's approval neither moves the approved version nor reinstates the deployment
    deployment = reload(session, deployment)
    assert deployment.status == "suspended" and deployment.approved_version_id == case.model_version_id


# --- scheduled re-audits and integrity ------------------------------------------------------------

def test_a_reaudit_without_regression_records_its_result_and_schedules_the_next(app, session, approved):
    _case, deployment = approved
    when = deployment.next_reaudit_at + timedelta(hours=1)
    report = run_tick(app, when)
    (started,) = report.reaudits
    assert started["integrity"] == "unverifiable" and isinstance(started["run"], int)
    run = session.get(AuditRun, started["run"])
    assert run.purpose == "reaudit" and run.status == "completed" and run.baseline_run_id is not None
    assert run.review["regression"] == [] and run.review["incident"] is None
    assert run.summary["regression"]["no_significant_decline"]
    deployment = reload(session, deployment)
    assert deployment.next_reaudit_at > when
    assert [e.payload["audit_run"] for e in events(session, deployment, "reaudit_completed")] == [run.id]
    assert session.execute(select(func.count(Incident.id))).scalar_one() == 0
    assert run_tick(app, when + timedelta(days=1)).reaudits == []  # next one is a month away


def test_a_significant_regression_opens_an_incident_and_tells_the_chair(app, session, factory, approved):
    _case, deployment = approved
    version = session.get(ModelVersion, deployment.approved_version_id)
    version.endpoint = "demo://regressed"  # the server behind the approved endpoint now answers worse
    session.commit()
    report = run_tick(app, deployment.next_reaudit_at + timedelta(hours=1))
    run = session.get(AuditRun, report.reaudits[0]["run"])
    assert run.review["regression"], run.review
    incident = session.get(Incident, run.review["incident"])
    assert incident.source == "reaudit" and incident.severity == "moderate"
    assert "significant regression" in incident.what_happened
    assert reload(session, deployment).status == "active"  # a moderate incident does not suspend
    chair_notes = [n for n in notifications(session, "incident") if n.user_id == factory.person("chair").id]
    assert len(chair_notes) == 1
    assert events(session, deployment, "reaudit_completed")[0].payload["incident"] == incident.id


def test_a_digest_mismatch_at_a_reaudit_suspends_and_opens_an_incident(app, session, factory, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    (model / "model.safetensors").write_bytes(b"approved weights")
    deployment = factory.deployment()
    version = factory.version(deployment, endpoint="demo://good", weights_digest=weights_digest(model),
                              serving_config={"weights_path": str(model)})
    case = factory.submission(deployment=deployment, version=version)
    factory.drive(case, "approved")
    deployment = reload(session, deployment)
    when = deployment.next_reaudit_at + timedelta(hours=1)
    # still the approved files: verified, re-audited
    report = run_tick(app, when)
    assert report.reaudits[0]["integrity"] == "match" and isinstance(report.reaudits[0]["run"], int)
    deployment = reload(session, deployment)
    assert deployment.status == "active"
    (checked,) = events(session, deployment, "integrity_checked")
    assert checked.payload["status"] == "match"

    (model / "model.safetensors").write_bytes(b"someone fine-tuned this in place")
    report = run_tick(app, deployment.next_reaudit_at + timedelta(hours=1))
    assert report.reaudits[0]["suspended"] and report.reaudits[0]["integrity"] == "mismatch"
    deployment = reload(session, deployment)
    assert deployment.status == "suspended"
    suspension = events(session, deployment, "suspend")[-1]
    assert suspension.payload["cause"] == "integrity"
    assert suspension.payload["reason"].startswith("model changed without change control")
    incident = session.execute(select(Incident).where(Incident.source == "integrity")).scalars().one()
    assert incident.severity == "serious"
    # the chair cannot reinstate while the served files are still not the approved ones
    with pytest.raises(TransitionRefused) as refused:
        fire(session, deployment, "reinstate", factory.person("chair"),
             {"justification": "Checked with the vendor; the change was harmless."}, settings=factory.settings)
    assert refused.value.guard == "approved_digest_is_served"
    session.rollback()
    (model / "model.safetensors").write_bytes(b"approved weights")
    deployment = reload(session, deployment)
    fire(session, deployment, "reinstate", factory.person("chair"),
         {"justification": "The approved weights were restored from the signed release."}, settings=factory.settings)
    session.commit()
    assert reload(session, deployment).status == "active"


# --- e-mail ---------------------------------------------------------------------------------------------

def test_reminders_are_emailed_once_over_smtp(mailing):
    factory, inbox = mailing()
    app, session = factory.app, factory.session
    case = factory.case_in("approved")
    inbox.messages.clear()  # the steps of the review were e-mailed too (assignments, audit, decision)
    deployment = session.get(Deployment, case.deployment_id)
    due = deployment.continuing_review_due
    run_tick(app, at(due - timedelta(days=30)))
    run_tick(app, at(due - timedelta(days=29)))
    subjects = sorted((m["To"], m["Subject"]) for m in inbox.messages)
    assert len(subjects) == 2, subjects
    assert {to for to, _ in subjects} == {f"Submitter <{factory.person('submitter').email}>",
                                         f"Chair <{factory.person('chair').email}>"}
    assert all("Continuing review of" in subject and due.isoformat() in subject for _, subject in subjects)
    body = inbox.messages[0].get_content()
    assert "/submissions/" in body
    assert all(n.emailed_at is not None for n in notifications(session, "continuing_review"))


def test_an_unreachable_smtp_server_keeps_the_notification_and_retries(tmp_path, database_url, smtp_server):
    from .conftest import make_app
    from .factories import Factory

    inbox, port = smtp_server
    instance = tmp_path / "instance"
    instance.mkdir()
    app = make_app(instance, database_url, smtp_host="127.0.0.1", smtp_port=1)  # nothing listens there
    session = get_db(app).session_factory()
    try:
        factory = Factory(app, session)
        case = factory.case_in("approved")
        deployment = session.get(Deployment, case.deployment_id)
        run_tick(app, at(deployment.continuing_review_due - timedelta(days=7)))
        pending = notifications(session, "continuing_review")
        assert len(pending) == 2 and all(n.emailed_at is None for n in pending)
        # the server comes back: the next pass sends what is owed, once
        app.config["GOVERNANCE"] = app.config["GOVERNANCE"].replace(smtp_port=port)
        report = run_tick(app, at(deployment.continuing_review_due - timedelta(days=6)))
        assert report.emails == 2 and len(inbox.messages) == 2
        assert run_tick(app, at(deployment.continuing_review_due - timedelta(days=5))).emails == 0
    finally:
        session.close()
        get_db(app).dispose()


# --- the command ----------------------------------------------------------------------------------------

def test_scheduler_tick_command_with_a_controlled_clock(app, session, runner, approved):
    _case, deployment = approved
    day_after = deployment.continuing_review_due + timedelta(days=1)
    result = runner.invoke("scheduler", "tick", "--now", day_after.isoformat())
    assert f"suspended: {deployment.name} — continuing review overdue" in result.output
    assert reload(session, deployment).status == "suspended"
    # the approval's dossiers were left queued and there is no signing key yet: said, and a non-zero exit
    assert result.exit_code == 1 and "run `govern keys init`" in result.output
    app.config["GOVERNANCE"] = app.config["GOVERNANCE"].replace(signing_passphrase="scheduler tests")
    assert runner.invoke("keys", "init").exit_code == 0
    result = runner.invoke("scheduler", "tick", "--now", day_after.isoformat())
    assert result.exit_code == 0, result.output
    # the audit and decision dossiers, and the decision letter to the submitter
    assert "dossiers emitted: 3" in result.output and "suspended" not in result.output
    result = runner.invoke("scheduler", "tick", "--now", "next tuesday")
    assert result.exit_code != 0 and "not an ISO 8601 date" in result.output
    result = runner.invoke("scheduler", "due")
    assert result.exit_code == 0 and deployment.name in result.output


def test_celery_beat_sends_a_scheduler_tick(app):
    from governance.tasks import beat_schedule

    schedule = beat_schedule(app.config["GOVERNANCE"])
    assert schedule["monitoring-tick"]["task"] == "governance.run_job"
    assert schedule["monitoring-tick"]["args"] == ["scheduler.tick", {}]
    assert schedule["monitoring-tick"]["schedule"] == 300.0

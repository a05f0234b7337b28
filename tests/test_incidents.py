"""Incidents through the pages and the API: a clinician reports, a critical incident suspends its
deployment, the chair reinstates it from the deployment page with a justification, people see only
their incidents, and the status history says why each change happened."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from governance.models import Deployment, Incident, Notification, Submission
from governance.operations.tokens import create_token

from .factories import PASSWORD


def login(client, user):
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    return client


@pytest.fixture
def deployment(factory):
    case = factory.case_in("approved")
    return factory.session.get(Deployment, case.deployment_id)


@pytest.fixture
def token_for(session):
    def make(user, scope: str = "submit") -> dict[str, str]:
        _token, secret = create_token(session, user, name="ward", scope=scope, actor=user)
        session.commit()
        return {"Authorization": f"Bearer {secret}"}
    return make


def reload(session, obj):
    session.expire_all()
    return session.get(type(obj), obj.id)


def test_a_clinician_reports_a_critical_incident_on_the_form_and_the_system_is_suspended(app, session, factory,
                                                                                        deployment):
    client = login(app.test_client(), factory.person("clinician"))
    form = client.get("/incidents/new")
    assert form.status_code == 200 and deployment.name.encode() in form.data
    # a mistake keeps the input and says what is wrong
    response = client.post("/incidents/new", data={"deployment_id": deployment.id, "model_version_id": 0,
                                                   "what_happened": "Recommended double the dose."})
    assert response.status_code == 200 and b"Recommended double the dose." in response.data
    assert b"field-error" in response.data
    response = client.post("/incidents/new", data={
        "deployment_id": deployment.id, "model_version_id": 0, "severity": "critical",
        "what_happened": "Recommended double the maximum paediatric dose.", "patient_harmed": "y",
        "deidentified_example": "Q: dose for a 4-year-old? A: 2 g every 4 hours"})
    assert response.status_code == 303
    incident = session.execute(select(Incident)).scalars().one()
    assert response.headers["Location"].endswith(f"/incidents/{incident.id}")
    page = client.get(f"/incidents/{incident.id}")
    assert page.status_code == 200 and b"suspended" in page.data and b"critical" in page.data
    assert reload(session, deployment).status == "suspended"
    assert incident.reporter_id == factory.person("clinician").id and incident.patient_harmed
    # the reporter follows their report; the incident case is visible to them too
    case = session.execute(select(Submission).where(Submission.incident_id == incident.id)).scalars().one()
    assert client.get(f"/submissions/{case.id}").status_code == 200
    # the chair was notified in the app
    chair = login(app.test_client(), factory.person("chair"))
    notifications = chair.get("/notifications")
    assert b"Critical incident #" in notifications.data
    assert chair.post("/notifications/read").status_code == 303
    assert session.execute(select(Notification).where(Notification.user_id == factory.person("chair").id,
                                                      Notification.read_at.is_(None))).first() is None


def test_people_see_only_the_incidents_they_may(app, session, factory, deployment):
    from governance.operations.incidents import report_incident

    incident = report_incident(session, factory.settings, deployment=deployment, severity="minor",
                               what_happened="A typo in a leaflet.", reporter=factory.person("clinician"))
    session.commit()
    expected = {"clinician": 200, "chair": 200, "compliance": 200, "submitter": 200, "board1": 404}
    for person, status in expected.items():
        client = login(app.test_client(), factory.person(person))
        assert client.get(f"/incidents/{incident.id}").status_code == status, person
        listing = client.get("/incidents")
        assert (f"#{incident.id}".encode() in listing.data) == (status == 200), person
    other_clinician = factory.user("clinician")
    client = login(app.test_client(), other_clinician)
    assert client.get(f"/incidents/{incident.id}").status_code == 404
    assert client.get("/incidents/new").status_code == 200


def test_the_chair_reinstates_from_the_deployment_page_with_a_justification(app, session, factory, deployment):
    from governance.operations.incidents import report_incident

    report_incident(session, factory.settings, deployment=deployment, severity="serious",
                    what_happened="Hallucinated an allergy.", reporter=factory.person("clinician"))
    session.commit()
    owner = login(app.test_client(), factory.person("submitter"))
    page = owner.get(f"/deployments/{deployment.id}")
    assert b"Suspended" in page.data and b"incident" in page.data and b"Reinstate" not in page.data
    assert owner.post(f"/deployments/{deployment.id}/events/reinstate",
                      data={"reinstate-justification": "I think it is fine now, honestly."}).status_code == 303
    assert reload(session, deployment).status == "suspended"  # refused: roles
    chair = login(app.test_client(), factory.person("chair"))
    page = chair.get(f"/deployments/{deployment.id}")
    assert b"Reinstate" in page.data and b"Retire" in page.data
    response = chair.post(f"/deployments/{deployment.id}/events/reinstate",
                          data={"reinstate-justification": "fine"}, follow_redirects=True)
    assert b"Refused: a written justification of at least 20 characters is required" in response.data
    assert b"justification_given" not in response.data  # the guard's id is for the log
    assert reload(session, deployment).status == "suspended"
    justification = "Root cause found in the retrieval index; fixed and re-audited, board informed on 2026-11-20."
    response = chair.post(f"/deployments/{deployment.id}/events/reinstate",
                          data={"reinstate-justification": justification}, follow_redirects=True)
    assert b"Refused: the incident review is not decided yet" in response.data  # the board decides first
    assert reload(session, deployment).status == "suspended"
    factory.decide_incident_review(deployment, "approve")
    response = chair.post(f"/deployments/{deployment.id}/events/reinstate",
                          data={"reinstate-justification": justification}, follow_redirects=True)
    assert response.status_code == 200 and b"Done: Reinstate" in response.data
    assert reload(session, deployment).status == "active"


def test_the_owner_opens_the_continuing_review_from_the_deployment_page(app, session, factory, deployment):
    owner = login(app.test_client(), factory.person("submitter"))
    response = owner.post(f"/deployments/{deployment.id}/continuing")
    assert response.status_code == 303
    case = session.execute(select(Submission).where(Submission.kind == "continuing")).scalars().one()
    assert case.state == "draft" and case.model_version_id == deployment.approved_version_id
    again = owner.post(f"/deployments/{deployment.id}/continuing")
    assert again.headers["Location"].endswith(f"/submissions/{case.id}")  # one open at a time
    assert login(app.test_client(), factory.person("board1")).post(
        f"/deployments/{deployment.id}/continuing").status_code == 403


@pytest.mark.both_databases
def test_a_critical_incident_reported_through_the_api_suspends_its_deployment(app, client, session, factory,
                                                                             deployment, token_for, backend):
    body = {"deployment_id": deployment.id, "severity": "critical", "patient_harmed": True,
            "what_happened": "Advised stopping anticoagulation before surgery without a bridging plan.",
            "occurred_at": "2026-11-20T08:30:00Z"}
    clinician = token_for(factory.person("clinician"))
    response = client.post("/api/v1/incidents", json=body, headers=clinician)
    assert response.status_code == 201, response.json
    created = response.json
    assert created["deployment_status"] == "suspended" and created["severity"] == "critical"
    assert isinstance(created["case"], int)
    assert client.get(f"/api/v1/incidents/{created['id']}", headers=clinician).json["id"] == created["id"]
    # the owner reads the status history and why it changed
    owner = token_for(factory.person("submitter"), scope="read")
    history = client.get(f"/api/v1/deployments/{deployment.id}/history", headers=owner).json
    assert history["status"] == "suspended"
    assert [(h["event"], h["to"]) for h in history["history"]] == [("activate", "active"), ("suspend", "suspended")]
    assert history["history"][-1]["cause"] == "incident" and f"#{created['id']}" in history["history"][-1]["reason"]


@pytest.mark.parametrize(("who", "scope", "body", "status", "message"), [
    ("submitter", "submit", {"severity": "minor", "what_happened": "x"}, 403, "only clinician or irb_chair"),
    ("clinician", "read", {"severity": "minor", "what_happened": "x"}, 403, "read-only"),
    ("clinician", "submit", {"severity": "catastrophic", "what_happened": "x"}, 400, "severity"),
    ("clinician", "submit", {"severity": "minor", "what_happened": ""}, 400, "what_happened"),
    ("clinician", "submit", {"severity": "minor", "what_happened": "x", "patient": "Zhang San"}, 400, "unknown field"),
    ("clinician", "submit", {"severity": "minor", "what_happened": "x", "deployment_id": 9999}, 404, "no deployment"),
    ("clinician", "submit", {"severity": "minor", "what_happened": "x", "occurred_at": "2099-01-01T00:00:00Z"}, 400,
     "future"),
])
def test_incident_api_refusals_say_what_is_wrong(client, factory, deployment, token_for, who, scope, body, status,
                                                 message):
    headers = token_for(factory.person(who), scope=scope)
    response = client.post("/api/v1/incidents", json={"deployment_id": deployment.id, **body}, headers=headers)
    assert response.status_code == status, response.json
    assert message in response.json["error"]

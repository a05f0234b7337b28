"""Forms that cannot mislead (issue 15): no decision, class, maturity, severity, vote, conflict answer or kind of
review is pre-selected; posting without choosing is refused naming the field and writes nothing. A refusal is a
sentence in the reader's language; the guard's id and the English sentence stay in the log and the CLI."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import func, select

from governance.errors import Reason, TransitionRefused
from governance.models import ConflictDeclaration, Deployment, Event, Incident, ModelVersion, Submission, Vote

from .factories import FAST_TRACK_EXAMPLE, PASSWORD
from .test_web import login


def _count(session, model, *where) -> int:
    session.expire_all()
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _selected(page: str, name: str) -> str | None:
    """The value of the option the page pre-selects in the select named ``name`` (None: the browser shows the
    first option)."""
    select_html = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', page, re.S).group(1)
    chosen = re.search(r'<option[^>]*selected[^>]*value="([^"]*)"|<option[^>]*value="([^"]*)"[^>]*selected',
                       select_html)
    return None if chosen is None else (chosen.group(1) or chosen.group(2) or "")


def _first_option(page: str, name: str) -> str:
    select_html = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', page, re.S).group(1)
    return re.search(r'<option[^>]*value="([^"]*)"', select_html).group(1)


def _descriptor_form(factory, **overrides) -> dict:
    """The guided descriptor form as a browser posts it, for the fast-track example."""
    form: dict = {}
    for name, value in factory.descriptor(FAST_TRACK_EXAMPLE).items():
        form[name] = ("true" if value else "false") if isinstance(value, bool) else value
    form["name"] = "A new office assistant"
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


# --- the registration form: the descriptor ---------------------------------------------------------------------

DESCRIPTOR_SELECTS = ("scenario", "algorithm_maturity", "severity_if_wrong", "autonomy", "personal_information",
                      "public_facing", "issues_prescriptions", "outputs_used_for_diagnosis_or_treatment")


def test_the_descriptor_form_starts_with_nothing_chosen(client, factory):
    login(client, factory.person("submitter"))
    page = client.get("/deployments/new").get_data(as_text=True)
    for name in DESCRIPTOR_SELECTS:
        assert _first_option(page, name) == "" and _selected(page, name) in (None, ""), name
    assert "— choose —" in page


@pytest.mark.parametrize("name, label", [("algorithm_maturity", "Algorithm maturity"),
                                         ("severity_if_wrong", "Severity if wrong"),
                                         ("issues_prescriptions", "Issues prescriptions without a physician")])
def test_registering_without_choosing_is_refused_naming_the_field(client, factory, session, name, label):
    login(client, factory.person("submitter"))
    before = _count(session, Deployment)
    reply = client.post("/deployments/new", data=_descriptor_form(factory, **{name: None}))
    assert reply.status_code == 200
    assert f"{label}: choose one." in reply.get_data(as_text=True)
    assert _count(session, Deployment) == before
    chosen = client.post("/deployments/new", data=_descriptor_form(factory))
    assert chosen.status_code == 303 and _count(session, Deployment) == before + 1


def test_editing_shows_the_records_own_values(client, factory):
    deployment = factory.deployment(algorithm_maturity="low", severity_if_wrong="serious")
    login(client, factory.person("submitter"))
    page = client.get(f"/deployments/{deployment.id}/edit").get_data(as_text=True)
    assert _selected(page, "algorithm_maturity") == "low" and _selected(page, "severity_if_wrong") == "serious"


# --- the model version: the kind of review ---------------------------------------------------------------------

def test_a_version_without_a_kind_of_review_is_refused(client, factory, session):
    deployment = factory.deployment()
    login(client, factory.person("submitter"))
    page = client.get(f"/deployments/{deployment.id}/versions/new").get_data(as_text=True)
    assert _first_option(page, "kind") == "" and _selected(page, "kind") in (None, "")
    form = {"version_label": "v1.0", "base_model": "Qwen2.5-7B-Instruct", "weights_digest": "a" * 64,
            "endpoint": "demo://good", "submit_now": "y"}
    reply = client.post(f"/deployments/{deployment.id}/versions/new", data=form)
    assert reply.status_code == 200 and "Kind of review: choose one." in reply.get_data(as_text=True)
    assert _count(session, ModelVersion, ModelVersion.deployment_id == deployment.id) == 0
    assert _count(session, Submission, Submission.deployment_id == deployment.id) == 0


# --- review: the conflict-of-interest answer and the vote --------------------------------------------------------

@pytest.fixture
def fast_track(factory):
    case = factory.case_in("in_review")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=factory.person("ai1").email)
    return case


def test_a_declaration_without_an_answer_is_refused(client, factory, session, fast_track):
    login(client, factory.person("ai1"))
    page = client.get(f"/submissions/{fast_track.id}/declare").get_data(as_text=True)
    assert _first_option(page, "has_conflict") == "" and _selected(page, "has_conflict") in (None, "")
    reply = client.post(f"/submissions/{fast_track.id}/declare", data={"statement": ""})
    assert reply.status_code == 200
    assert "Do you have a conflict of interest in this case?: choose one." in reply.get_data(as_text=True)
    assert _count(session, ConflictDeclaration, ConflictDeclaration.submission_id == fast_track.id) == 0


def test_a_vote_without_a_meaning_is_refused(client, factory, session, fast_track):
    reviewer = factory.person("ai1")
    factory.prepare_reviewer(fast_track, reviewer)
    login(client, reviewer)
    page = client.get(f"/submissions/{fast_track.id}/vote").get_data(as_text=True)
    assert _first_option(page, "meaning") == "" and _selected(page, "meaning") in (None, "")
    reply = client.post(f"/submissions/{fast_track.id}/vote", data={"password": PASSWORD, "comment": ""})
    assert reply.status_code == 200
    assert "Meaning of your signature: choose one." in reply.get_data(as_text=True)
    assert _count(session, Vote, Vote.submission_id == fast_track.id) == 0


# --- the chair's override: pathway and review class ----------------------------------------------------------------

def test_an_override_without_a_pathway_or_class_is_refused(client, factory, session):
    case = factory.case_in("classified")
    login(client, factory.person("chair"))
    page = client.get(f"/submissions/{case.id}").get_data(as_text=True)
    for name in ("override_classification-pathway", "override_classification-review_as_class"):
        assert _first_option(page, name) == "" and _selected(page, name) in (None, ""), name
    events = _count(session, Event, Event.submission_id == case.id)
    reply = client.post(f"/submissions/{case.id}/events/override_classification", follow_redirects=True, data={
        "override_classification-justification": "The committee reviews every generative system at full board."})
    text = reply.get_data(as_text=True)
    assert "Pathway: choose one." in text and "Review as NMPA class: choose one." in text
    session.expire_all()
    assert session.get(Submission, case.id).state == "classified"
    assert _count(session, Event, Event.submission_id == case.id) == events


# --- incidents: the severity ---------------------------------------------------------------------------------------

def test_an_incident_without_a_severity_is_refused(app, factory, session):
    deployment = factory.session.get(Deployment, factory.case_in("approved").deployment_id)
    client = app.test_client()
    login(client, factory.person("clinician"))
    page = client.get("/incidents/new").get_data(as_text=True)
    assert 'name="severity"' in page and not re.search(r'<input[^>]*name="severity"[^>]*checked', page)
    reply = client.post("/incidents/new", data={"deployment_id": deployment.id, "model_version_id": 0,
                                                "what_happened": "Recommended double the dose."})
    assert reply.status_code == 200 and "Severity: choose one." in reply.get_data(as_text=True)
    assert _count(session, Incident) == 0


# --- a refusal in the reader's language; the guard id and English in the log ---------------------------------------

def test_a_reason_is_english_text_that_keeps_what_translates_it():
    reason = Reason("%(voted)s of %(eligible)s assigned reviewers have voted", voted=0, eligible=2)
    assert reason == "0 of 2 assigned reviewers have voted" and isinstance(reason, str)
    assert reason.template == "%(voted)s of %(eligible)s assigned reviewers have voted"
    refusal = TransitionRefused("approve", "in_review", "decision_supported_by_votes", reason)
    assert str(refusal) == ("'approve' refused by guard 'decision_supported_by_votes': 0 of 2 assigned reviewers "
                            "have voted")


def test_a_refusal_is_chinese_on_the_page_and_english_with_its_guard_in_the_log(client, factory, session, caplog):
    case = factory.case_in("in_review")
    factory.satisfy_blocking_obligations(case)
    login(client, factory.person("chair"))
    client.post("/locale/zh_CN", data={"next": "/"})
    page = client.get(f"/submissions/{case.id}").get_data(as_text=True)
    assert re.search(r"当前不可操作：已指派 \d+ 名有资格的审查人；快速审查需要 \d+ 名", page)
    assert "decision_supported_by_votes" not in page

    with caplog.at_level(logging.INFO):
        reply = client.post(f"/submissions/{case.id}/events/approve", data={"lock_version": case.lock_version},
                            follow_redirects=True)
    shown = reply.get_data(as_text=True)
    assert re.search(r"已拒绝：已指派 \d+ 名有资格的审查人；快速审查需要 \d+ 名", shown)
    assert "decision_supported_by_votes" not in shown and "eligible reviewers assigned" not in shown
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused:")]
    assert any("'approve' refused by guard 'decision_supported_by_votes'" in m and "eligible reviewers assigned; "
               "the fast track needs" in m for m in logged), logged
    session.expire_all()
    assert session.get(Submission, case.id).state == "in_review"


def test_the_api_keeps_the_english_reason_and_the_guard(client, factory, session):
    from governance.operations.tokens import create_token

    case = factory.case_in("in_review")
    chair = factory.person("chair")
    _token, secret = create_token(session, chair, name="ci", scope="submit", actor=chair)
    session.commit()
    reply = client.post(f"/api/v1/submissions/{case.id}/events", json={"event": "approve", "data": {}},
                        headers={"Authorization": f"Bearer {secret}", "Accept-Language": "zh-CN"})
    body = reply.get_json()
    assert reply.status_code == 409 and body["guard"] in {"no_open_blocking_obligations",
                                                          "decision_supported_by_votes"}
    assert re.search(r"[a-z]", body["error"]) and not re.search(r"[\u4e00-\u9fff]", body["error"])

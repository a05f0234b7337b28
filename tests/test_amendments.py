"""Amendments instead of edits (issue 15): an approved deployment's descriptor is read-only; a change to it opens a
change case (re-classified under the current rules with the proposed descriptor, a side-by-side diff on the case
page) and the approved scope stays in force until the committee approves the amendment."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from governance import eventlog, queries
from governance.diffs import descriptor_diff, version_diff
from governance.errors import GovernanceError
from governance.models import Deployment, Event, ModelVersion, Notification, Submission
from governance.operations.cases import propose_amendment, revise_amendment, update_descriptor

from .factories import FAST_TRACK_EXAMPLE
from .test_web import login

PATIENT_AND_PUBLIC = {"users": ["administrative_staff", "hcp", "patient"],
                      "output_visible_to": ["administrative_staff", "hcp", "patient", "public"],
                      "public_facing": True}


def _form(descriptor: dict, **overrides) -> dict:
    """The guided descriptor form as a browser posts it."""
    data = {**descriptor, **overrides}
    return {k: (("true" if v else "false") if isinstance(v, bool) else v) for k, v in data.items()}


@pytest.fixture
def active(factory) -> Deployment:
    approved = factory.case_in("approved")
    deployment = factory.session.get(Deployment, approved.deployment_id)
    assert deployment.status == "active"
    return deployment


def _proposed(factory, deployment: Deployment, **overrides) -> Submission:
    case = propose_amendment(factory.session, factory.settings, deployment, {**deployment.descriptor, **overrides},
                             actor=factory.person("submitter"), summary="Open it to patients.")
    factory.session.commit()
    return case


def _review(factory, case: Submission, meaning: str, event: str, **data) -> None:
    """The amendment through screening, classification, its audit, the votes and the decision."""
    chair = factory.person("chair")
    factory.fire(case, "start_screening", chair)
    factory.fire(case, "accept", chair)
    factory.fire(case, "confirm_classification", chair)
    assert case.state == "in_review", case.state
    factory.ready_for_votes(case)
    factory.vote_all(case, meaning)
    if event == "approve":
        factory.satisfy_blocking_obligations(case)
    factory.fire(case, event, chair, **data)


# --- the Done-when scenario, through the web ----------------------------------------------------------------------

def test_editing_an_active_deployment_opens_an_amendment_and_leaves_the_approved_scope_active(client, factory,
                                                                                              session, active):
    approved_descriptor, approved_sha = dict(active.descriptor), active.descriptor_sha256
    login(client, factory.person("submitter"))
    page = client.get(f"/deployments/{active.id}/edit").get_data(as_text=True)
    assert "opens an amendment case" in page and "approved scope stays in force" in page

    reply = client.post(f"/deployments/{active.id}/edit",
                        data=_form(active.descriptor, summary="Patients ask it too.", **PATIENT_AND_PUBLIC))
    assert reply.status_code == 303
    case_id = int(re.search(r"/submissions/(\d+)$", reply.headers["Location"]).group(1))
    assert "Amendment" in client.get(f"/submissions/{case_id}").get_data(as_text=True)

    session.expire_all()
    deployment = session.get(Deployment, active.id)
    case = session.get(Submission, case_id)
    assert deployment.status == "active" and deployment.descriptor == approved_descriptor
    assert deployment.descriptor_sha256 == approved_sha and deployment.public_facing is False
    assert case.kind == "change" and case.state == "submitted" and case.summary == "Patients ask it too."
    assert case.model_version_id == deployment.approved_version_id == case.baseline_version_id
    assert case.proposed_descriptor["public_facing"] is True and "patient" in case.proposed_descriptor["users"]
    proposed = [e for e in eventlog.events_for_submission(session, case.id) if e.name == "amendment_proposed"]
    assert proposed[0].payload["before_sha256"] == approved_sha
    assert proposed[0].payload["after_sha256"] == case.proposed_descriptor_sha256 != approved_sha
    assert proposed[0].payload["changed_fields"] == ["output_visible_to", "public_facing", "users"]
    told = session.execute(select(Notification).where(Notification.user_id == factory.person("chair").id,
                                                      Notification.kind == "amendment")).scalars().all()
    assert [n.subject for n in told] == [f"Case #{case.id}: amendment proposed to {deployment.name}"]


def test_an_approved_amendment_applies_the_descriptor_naming_the_case(factory, session, active):
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    _review(factory, case, "approve", "approve")
    session.refresh(active)
    assert case.state == "approved" and active.status == "active"
    assert active.descriptor == case.proposed_descriptor and active.public_facing is True
    assert active.descriptor_sha256 == case.proposed_descriptor_sha256
    updated = session.execute(select(Event).where(Event.deployment_id == active.id,
                                                  Event.name == "descriptor_updated")).scalars().all()
    assert [(e.submission_id, e.payload["amendment"]) for e in updated] == [(case.id, case.id)]
    assert eventlog.verify_chain(session).ok


def test_a_disapproved_amendment_leaves_the_approved_scope(factory, session, active):
    before = dict(active.descriptor)
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    assert case.pathway is None
    _review(factory, case, "disapprove", "disapprove", reason="Not for patients without a clinician.")
    session.refresh(active)
    assert case.state == "disapproved" and case.pathway == "full_board"
    assert active.descriptor == before and active.status == "active"


def test_a_withdrawn_amendment_leaves_the_scope_and_frees_the_next_one(factory, session, active):
    before = dict(active.descriptor)
    first = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    factory.fire(first, "withdraw", factory.person("submitter"), reason="Wrong scope.")
    session.refresh(active)
    assert active.descriptor == before
    second = _proposed(factory, active, intended_use="Answers staff questions and drafts office documents.")
    assert second.state == "submitted"


# --- re-classification under the current rules, with the proposed descriptor -------------------------------------

def test_the_amendment_is_classified_with_the_proposed_descriptor_and_a_use_change_is_material(factory, session,
                                                                                               active):
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    chair = factory.person("chair")
    factory.fire(case, "start_screening", chair)
    factory.fire(case, "accept", chair)
    classification = queries.latest_classification(session, case)
    assert case.materiality == "material" and classification.pathway == "full_board"
    finding = classification.result["change"]["findings"][0]
    assert finding["aspect"] == "intended_use" and "public_facing" in finding["reason"]
    assert "output_visible_to" in finding["reason"]
    session.refresh(active)
    assert active.public_facing is False  # the approved scope is still the deployment's


def test_a_renaming_is_a_minor_amendment(factory, active):
    case = _proposed(factory, active, name=active.name + " (renamed)")
    chair = factory.person("chair")
    factory.fire(case, "start_screening", chair)
    factory.fire(case, "accept", chair)
    assert case.materiality == "minor"


def test_a_later_version_change_is_compared_with_the_amended_scope(factory, session, active):
    amendment = _proposed(factory, active, intended_use="Answers staff questions and drafts office letters.")
    _review(factory, amendment, "approve", "approve")
    session.refresh(active)
    version = factory.version(active, label="v-after-amendment")
    change = factory.submission(kind="change", deployment=active, version=version)
    factory.drive(change, "classified")
    findings = queries.latest_classification(session, change).result["change"]["findings"]
    assert findings, "the new version was compared with the approved one"
    assert "intended_use" not in {f["aspect"] for f in findings}


# --- refusals -----------------------------------------------------------------------------------------------------

def test_a_second_amendment_while_one_is_open_is_refused(client, factory, session, active):
    first = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    with pytest.raises(GovernanceError, match=f"amendment #{first.id}"):
        _proposed(factory, active, name="Another name")
    factory.session.rollback()
    login(client, factory.person("submitter"))
    reply = client.post(f"/deployments/{active.id}/edit", data=_form(active.descriptor, name="Another name"),
                        follow_redirects=True)
    assert f"amendment #{first.id}" in reply.get_data(as_text=True)
    session.expire_all()
    assert session.execute(select(Submission.id).where(Submission.deployment_id == active.id,
                                                       Submission.proposed_descriptor.is_not(None))
                           ).scalars().all() == [first.id]


def test_the_operation_refuses_the_direct_edit_of_an_approved_deployment(factory, active):
    with pytest.raises(GovernanceError, match="approved amendment"):
        update_descriptor(factory.session, active, {**active.descriptor, "public_facing": True},
                          actor=factory.person("submitter"))


def test_an_unchanged_descriptor_is_no_amendment(factory, active):
    with pytest.raises(GovernanceError, match="nothing to amend"):
        _proposed(factory, active)


def test_a_never_approved_deployment_still_edits_directly(client, factory, session):
    deployment = factory.deployment(FAST_TRACK_EXAMPLE)
    login(client, factory.person("submitter"))
    page = client.get(f"/deployments/{deployment.id}/edit").get_data(as_text=True)
    assert "opens an amendment case" not in page
    reply = client.post(f"/deployments/{deployment.id}/edit", data=_form(deployment.descriptor, **PATIENT_AND_PUBLIC))
    assert reply.status_code == 303 and reply.headers["Location"].endswith(f"/deployments/{deployment.id}")
    session.expire_all()
    assert session.get(Deployment, deployment.id).public_facing is True
    assert session.execute(select(Submission.id).where(Submission.deployment_id == deployment.id)).first() is None


# --- the side-by-side diff ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("before, after, changed", [
    ({"name": "A", "public_facing": False}, {"name": "A", "public_facing": True}, {"public_facing"}),
    ({"users": ["hcp"]}, {"users": ["hcp", "patient"]}, {"users"}),
    ({"users": ["patient", "hcp"]}, {"users": ["hcp", "patient"]}, set()),  # a list is a set of groups
    ({"scenario": "other"}, {"scenario": "other"}, set()),
    ({"anonymised": False}, {}, {"anonymised"}),  # a field the approved one lacks shows as changed
])
def test_descriptor_diff_marks_what_changed(before, after, changed):
    rows = descriptor_diff(before, after)
    assert {r.field for r in rows if r.changed} == changed
    assert {r.field for r in rows} >= set(before) | set(after)


def test_descriptor_diff_follows_the_descriptor_order():
    rows = descriptor_diff({"public_facing": False, "name": "A", "scenario": "other"},
                           {"public_facing": True, "name": "A", "scenario": "other"})
    assert [r.field for r in rows] == ["name", "scenario", "public_facing"]


def test_version_diff_shows_digests_in_full():
    approved = ModelVersion(deployment_id=1, version_label="v1", base_model="Qwen2.5-7B-Instruct", weights_digest="a" * 64,
                            tokenizer_digest="b" * 64, endpoint="demo://good", quantization="",
                            finetune_data_categories=["clinical_guidelines"])
    candidate = ModelVersion(deployment_id=1, version_label="v2", base_model="Qwen2.5-7B-Instruct",
                             weights_digest="c" * 64, tokenizer_digest="b" * 64, endpoint="demo://good",
                             quantization="awq", finetune_data_categories=["clinical_guidelines", "emr_text"])
    rows = {r.field: r for r in version_diff(approved, candidate)}
    assert {f for f, r in rows.items() if r.changed} == {"version_label", "weights_digest", "quantization",
                                                         "finetune_data_categories"}
    assert rows["weights_digest"].approved == "a" * 64 and rows["weights_digest"].proposed == "c" * 64
    assert rows["weights_digest"].monospace and not rows["base_model"].monospace
    assert {"system_prompt_digest", "endpoint", "served_model_id", "architecture"} <= set(rows)


def test_the_case_page_shows_the_amendment_side_by_side(client, factory, active):
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    login(client, factory.person("chair"))
    page = client.get(f"/submissions/{case.id}").get_data(as_text=True)
    row = re.search(r'<tr class="changed"[^>]*>\s*<th[^>]*>public facing</th>(.*?)</tr>', page, re.S)
    assert row and re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S) == ["no", "yes"]
    assert re.search(r'<tr>\s*<th[^>]*>scenario</th>', page)  # unchanged rows are listed, not highlighted


def test_the_case_page_of_a_new_version_shows_the_digests_side_by_side(client, factory, session, active):
    version = factory.version(active, label="v-next", quantization="awq")
    change = factory.submission(kind="change", deployment=active, version=version)
    approved = session.get(ModelVersion, active.approved_version_id)
    login(client, factory.person("chair"))
    page = client.get(f"/submissions/{change.id}").get_data(as_text=True)
    assert f'<td class="mono">{approved.weights_digest}</td>' in page
    assert f'<td class="mono">{version.weights_digest}</td>' in page


def test_the_new_version_form_is_pre_filled_from_the_approved_version(client, factory, session, active):
    approved = session.get(ModelVersion, active.approved_version_id)
    login(client, factory.person("submitter"))
    page = client.get(f"/deployments/{active.id}/versions/new").get_data(as_text=True)
    assert re.search(rf'name="base_model"[^>]*value="{re.escape(approved.base_model)}"', page)
    assert re.search(rf'name="endpoint"[^>]*value="{re.escape(approved.endpoint)}"', page)
    assert not re.search(r'name="version_label"[^>]*value="[^"]+"', page)
    assert not re.search(r'name="weights_digest"[^>]*value="[^"]+"', page)


def test_the_amendment_pages_speak_chinese(client, factory, active):
    zh = {"Accept-Language": "zh-CN,zh;q=0.9"}
    login(client, factory.person("submitter"))
    edit = client.get(f"/deployments/{active.id}/edit", headers=zh).get_data(as_text=True)
    assert "保存将开启一个修订案件供委员会审查" in edit and "提交修订以供审查" in edit
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    login(client, factory.person("chair"))
    page = client.get(f"/submissions/{case.id}", headers=zh).get_data(as_text=True)
    assert "修订：已批准的描述与拟议的描述" in page and "已批准" in page and "拟议" in page
    row = re.search(r'<tr class="changed"[^>]*>\s*<th[^>]*>([^<]*)</th>(.*?)</tr>', page, re.S)
    assert row.group(1) != "public facing" and "yes" not in row.group(2)  # field and values in Chinese


def test_the_deployment_page_offers_an_amendment_and_links_the_open_one(client, factory, active):
    login(client, factory.person("submitter"))
    page = client.get(f"/deployments/{active.id}").get_data(as_text=True)
    assert "Propose an amendment" in page and "Edit descriptor" not in page
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    page = client.get(f"/deployments/{active.id}").get_data(as_text=True)
    assert f"Amendment #{case.id} in review" in page and "Propose an amendment" not in page


def test_a_returned_amendment_is_revised_by_its_submitter_and_classified_again(client, factory, session, active):
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    chair, submitter = factory.person("chair"), factory.person("submitter")
    factory.fire(case, "start_screening", chair)
    factory.fire(case, "return_to_submitter", chair, reason="Say who answers the patients.")
    login(client, submitter)
    assert "Revise the amendment" in client.get(f"/submissions/{case.id}").get_data(as_text=True)
    page = client.get(f"/deployments/{active.id}/edit").get_data(as_text=True)
    assert f"Amendment #{case.id} is waiting for you" in page
    assert re.search(r'<select[^>]*name="public_facing"[^>]*>.*?<option[^>]*selected[^>]*value="true"|'
                     r'<select[^>]*name="public_facing"[^>]*>.*?<option[^>]*value="true"[^>]*selected', page, re.S)
    revised = {**case.proposed_descriptor, "intended_use": "Answers patients' office questions; staff review."}
    reply = client.post(f"/deployments/{active.id}/edit", data=_form(revised))
    assert reply.status_code == 303 and reply.headers["Location"].endswith(f"/submissions/{case.id}")
    session.expire_all()
    case = session.get(Submission, case.id)
    assert case.proposed_descriptor["intended_use"] == revised["intended_use"]
    assert session.get(Deployment, active.id).public_facing is False
    factory.fire(case, "resubmit", submitter, response="Staff review every answer.")
    factory.fire(case, "start_screening", chair)
    factory.fire(case, "accept", chair)
    reasons = queries.latest_classification(session, case).result["change"]["findings"][0]["reason"]
    assert "intended_use" in reasons and "public_facing" in reasons
    revisions = [e for e in eventlog.events_for_submission(session, case.id) if e.name == "amendment_revised"]
    assert revisions[0].payload["revised_fields"] == ["intended_use"]


def test_only_a_waiting_amendment_is_revised(factory, active):
    case = _proposed(factory, active, **PATIENT_AND_PUBLIC)
    with pytest.raises(GovernanceError, match="returned to its submitter"):
        revise_amendment(factory.session, case, {**case.proposed_descriptor, "name": "x"},
                         actor=factory.person("submitter"))

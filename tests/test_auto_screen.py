"""Auto-screening (issue 16): the system screens, classifies and routes a routine change to its audit only where
the institution allows it and nothing the committee approved about the deployment's use changed since."""

from __future__ import annotations

import pytest

from governance import eventlog
from governance.models import Deployment, Submission, utcnow
from governance.operations.cases import propose_amendment, submit_model_version
from governance.operations.descriptors import validated, write_descriptor


def _change(factory, deployment: Deployment, label: str) -> Submission:
    settings = factory.app.config["GOVERNANCE"]
    case = submit_model_version(factory.session, settings, deployment, actor=factory.person("submitter"),
                                version={"version_label": label, "base_model": "Qwen/Qwen2.5-7B-Instruct",
                                         "weights_digest": f"{hash(label) & 0xFFFF:064x}", "endpoint": "demo://good",
                                         "architecture": "Qwen2ForCausalLM",
                                         "finetune_data_categories": ["clinical_guidelines"],
                                         "change_summary": "Re-trained on the same data."}, kind="change")
    factory.session.commit()
    return case


def _declined(factory, case: Submission) -> str | None:
    events = [e for e in eventlog.events_for_submission(factory.session, case.id) if e.name == "auto_screen_declined"]
    return events[-1].payload["guard"] if events else None


@pytest.mark.parametrize("app_overrides", [{"auto_screen_changes": True}])
def test_a_routine_change_goes_to_its_audit_and_an_edited_descriptor_waits_for_a_person(factory):
    approved = factory.case_in("approved")
    deployment = factory.session.get(Deployment, approved.deployment_id)
    routine = _change(factory, deployment, "v-routine")
    assert routine.state in {"auditing", "in_review", "held"} and routine.pathway
    assert _declined(factory, routine) is None
    _edit_in_place(factory, deployment, {**deployment.descriptor, "intended_use": "Also for triage."})
    edited = _change(factory, deployment, "v-edited")
    assert edited.state == "submitted" and _declined(factory, edited) == "auto_screen_eligible"


def _edit_in_place(factory, deployment: Deployment, descriptor: dict) -> None:
    """A descriptor edited in place after its approval, as the direct edit did before amendments (issue 15): such
    records remain, and the guard still sends their changes to a person."""
    before = deployment.descriptor_sha256
    write_descriptor(deployment, validated(descriptor), now=utcnow())
    eventlog.append(factory.session, "descriptor_updated", actor=factory.person("submitter"),
                    deployment_id=deployment.id,
                    payload={"before_sha256": before, "after_sha256": deployment.descriptor_sha256})
    factory.session.commit()


@pytest.mark.parametrize("app_overrides", [{"auto_screen_changes": True}])
def test_an_amendment_waits_for_a_person_and_once_approved_routine_changes_are_screened_again(factory):
    approved = factory.case_in("approved")
    deployment = factory.session.get(Deployment, approved.deployment_id)
    amendment = propose_amendment(factory.session, factory.settings, deployment,
                                  {**deployment.descriptor, "intended_use": "Also drafts letters to suppliers."},
                                  actor=factory.person("submitter"))
    factory.session.commit()
    refusal = factory.refused(amendment, "auto_screen", None)
    assert refusal.guard == "auto_screen_eligible" and "amendment" in str(refusal.reason)
    chair = factory.person("chair")
    factory.fire(amendment, "start_screening", chair)
    factory.fire(amendment, "accept", chair)
    factory.fire(amendment, "confirm_classification", chair)
    factory.ready_for_votes(amendment)
    factory.vote_all(amendment, "approve")
    factory.satisfy_blocking_obligations(amendment)
    factory.fire(amendment, "approve", chair)
    factory.session.refresh(deployment)
    assert deployment.descriptor["intended_use"] == "Also drafts letters to suppliers."
    routine = _change(factory, deployment, "v-after-amendment")
    assert routine.state in {"auditing", "in_review", "held"} and _declined(factory, routine) is None


def test_by_default_every_case_is_screened_by_hand(factory):
    approved = factory.case_in("approved")
    case = _change(factory, factory.session.get(Deployment, approved.deployment_id), "v-hand")
    assert case.state == "submitted" and _declined(factory, case) is None  # not even tried

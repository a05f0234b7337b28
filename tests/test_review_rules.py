"""The rules of review: conflicts, own cases, checklists, signatures, quorum, the fast track, the audit gate."""

from __future__ import annotations

import pytest
from sqlmodel import select

from governance import eventlog, queries
from governance.models import Classification, ConflictDeclaration, Deployment, ModelVersion, Vote
from governance.operations import TransitionRefused

from .factories import PASSWORD

pytestmark = pytest.mark.both_databases


def refused(factory, submission, event, actor, **data) -> TransitionRefused:
    with pytest.raises(TransitionRefused) as caught:
        factory.fire(submission, event, actor, **data)
    factory.session.rollback()
    return caught.value


def test_nobody_reviews_or_votes_on_their_own_case(factory):
    author = factory.user("submitter", "ai_subcommittee_member", "irb_member", email="author@test.hospital")
    deployment = factory.deployment(owner=author)
    version = factory.version(deployment)
    from governance.operations.cases import open_submission

    case = open_submission(factory.session, kind="initial", deployment=deployment, model_version=version,
                           submitter=author, title="own case")
    factory.session.commit()
    factory.fire(case, "submit", author)
    factory.fire(case, "start_screening", factory.person("chair"))
    factory.fire(case, "accept", factory.person("chair"))
    factory.fire(case, "confirm_classification", factory.person("chair"))
    assert case.state == "in_review"
    refusal = refused(factory, case, "assign_reviewer", factory.person("chair"), reviewer=author.email)
    assert refusal.guard == "reviewer_eligible" and "submitted this case" in refusal.reason
    refusal = refused(factory, case, "declare_conflict", author, has_conflict=False)
    assert refusal.guard == "not_own_case"
    refusal = refused(factory, case, "vote", author, meaning="approve", password=PASSWORD)
    assert refusal.guard == "not_own_case"


def test_conflicted_member_cannot_vote_and_does_not_count_to_quorum(factory):
    case = factory.case_in("in_review", example="emr_generation")
    chair = factory.person("chair")
    factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting().id)
    conflicted = [factory.person("board3"), factory.person("board4")]  # the two non-scientists
    for member in conflicted:
        factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I advise the vendor.")
    refusal = refused(factory, case, "vote", conflicted[0], meaning="approve", password=PASSWORD)
    assert refusal.guard == "actor_declared_no_conflict" and "recused" in refusal.reason
    for member in factory.board:
        if member not in conflicted:
            factory.prepare_reviewer(case, member)
            factory.fire(case, "vote", member, meaning="approve", password=PASSWORD)
    factory.satisfy_blocking_obligations(case)
    refusal = refused(factory, case, "approve", chair)
    assert refusal.guard == "decision_supported_by_votes"
    assert "4 eligible members present, 5 needed" in refusal.reason
    assert "0 non-scientist members present, 1 needed" in refusal.reason
    record = queries.quorum_record(factory.session, case, _rules(factory))
    assert {m.name for m in conflicted} <= {u.name for u in record.recused_members} and not record.met


def _rules(factory):
    from governance.committees import load_committee_rules

    return load_committee_rules(factory.settings.regulations_dir)


def test_checklist_and_declaration_come_before_the_vote(factory):
    case = factory.case_in("in_review")
    chair, reviewer = factory.person("chair"), factory.person("ai1")
    factory.fire(case, "assign_reviewer", chair, reviewer=reviewer.email)
    assert refused(factory, case, "vote", reviewer, meaning="approve", password=PASSWORD).guard == \
        "actor_declared_no_conflict"
    factory.fire(case, "declare_conflict", reviewer, has_conflict=False)
    refusal = refused(factory, case, "vote", reviewer, meaning="approve", password=PASSWORD)
    assert refusal.guard == "checklist_complete" and "answer the required checklist items" in refusal.reason
    answers = factory.checklist_answers(case)
    first = next(iter(answers))
    bad = refused(factory, case, "answer_checklist", reviewer, answers={first: {"answer": "no"}})
    assert bad.guard == "checklist_answers_valid" and "needs a comment" in bad.reason
    factory.fire(case, "answer_checklist", reviewer, answers=answers)
    factory.fire(case, "vote", reviewer, meaning="approve", password=PASSWORD)


def test_vote_is_an_electronic_signature(factory):
    case = factory.case_in("in_review")
    chair, reviewer = factory.person("chair"), factory.person("ai1")
    factory.fire(case, "assign_reviewer", chair, reviewer=reviewer.email)
    factory.prepare_reviewer(case, reviewer)
    refusal = refused(factory, case, "vote", reviewer, meaning="approve", password="not my password")
    assert refusal.guard == "signature_password_valid" and "signature was not applied" in refusal.reason
    event = factory.fire(case, "vote", reviewer, meaning="approve", password=PASSWORD)
    vote = factory.session.exec(select(Vote).where(Vote.submission_id == case.id)).one()
    assert vote.printed_name == reviewer.name and vote.meaning == "approve" and len(vote.record_digest) == 64
    signature = event.payload["signature"]
    assert signature["printed_name"] == reviewer.name and signature["signed_at_utc"].endswith("Z")
    assert signature["meaning"] == "approve" and "password" not in event.payload
    version = factory.session.get(ModelVersion, case.model_version_id)
    assert signature["weights_digest"] == version.weights_digest


def test_fast_track_cannot_disapprove_and_escalates_a_negative_vote(factory):
    case = factory.case_in("in_review")
    assert case.pathway == "ai_subcommittee"
    factory.ready_for_votes(case)
    ai1, ai2 = factory.person("ai1"), factory.person("ai2")
    refusal = refused(factory, case, "disapprove", factory.person("chair"), reason="no")
    assert refusal.guard == "pathway_is_full_board"
    factory.fire(case, "vote", ai1, meaning="approve", password=PASSWORD)
    assert case.pathway == "ai_subcommittee"
    factory.fire(case, "vote", ai2, meaning="disapprove", password=PASSWORD)
    factory.session.refresh(case)
    assert case.pathway == "full_board" and case.round == 2
    names = [e.name for e in eventlog.events_for_submission(factory.session, case.id)]
    assert names[-2:] == ["vote", "escalated_to_full_board"]


def test_divergent_fast_track_opinions_escalate(factory):
    case = factory.case_in("in_review")
    factory.ready_for_votes(case)
    factory.fire(case, "vote", factory.person("ai1"), meaning="approve", password=PASSWORD)
    factory.fire(case, "vote", factory.person("ai2"), meaning="require_revisions", password=PASSWORD)
    factory.session.refresh(case)
    assert case.pathway == "full_board"


def test_a_reviewer_may_ask_for_the_full_board(factory):
    case = factory.case_in("in_review")
    factory.ready_for_votes(case)
    factory.fire(case, "escalate", factory.person("ai1"), reason="Patients may see the output.")
    assert case.pathway == "full_board"


def test_full_board_quorum_and_majority(factory):
    case = factory.case_in("in_review", example="emr_generation")
    assert case.pathway == "full_board"
    chair = factory.person("chair")
    scientists = [factory.person(k) for k in ("chair", "board1", "board2", "board5")]  # no non-scientist
    factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting(present=scientists).id)
    for member in scientists:
        factory.prepare_reviewer(case, member)
        factory.fire(case, "vote", member, meaning="approve", password=PASSWORD)
    factory.satisfy_blocking_obligations(case)
    refusal = refused(factory, case, "approve", chair)
    assert "4 eligible members present, 5 needed" in refusal.reason
    assert "0 non-scientist members present, 1 needed" in refusal.reason


def test_majority_decides(factory):
    case = factory.case_in("in_review", example="emr_generation")
    chair = factory.person("chair")
    factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting().id)
    meanings = ["approve", "approve", "disapprove", "disapprove", "require_revisions", "abstain"]
    for member, meaning in zip(factory.board, meanings, strict=True):
        factory.prepare_reviewer(case, member)
        factory.fire(case, "vote", member, meaning=meaning, password=PASSWORD)
    factory.satisfy_blocking_obligations(case)
    assert "2 of 6 eligible members present voted" in refused(factory, case, "approve", chair).reason
    assert refused(factory, case, "disapprove", chair, reason="x").guard == "decision_supported_by_votes"
    factory.fire(case, "defer", chair, reason="No majority; more information needed.")
    assert case.state == "deferred"
    factory.fire(case, "reconsider", chair)
    assert case.state == "in_review" and case.round == 2 and case.meeting_id is None


def test_a_failed_audit_never_leads_to_approval(factory):
    case = factory.case_in("held", example="emr_generation")
    audit = queries.latest_audit(factory.session, case)
    assert audit.verdict == "fail" and audit.verdict_reasons
    chair = factory.person("chair")
    factory.fire(case, "escalate", factory.person("submitter"), reason="We dispute the failures.")
    assert case.state == "in_review" and case.pathway == "full_board"
    factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting().id)
    for member in factory.board:
        factory.prepare_reviewer(case, member)
    refusal = refused(factory, case, "vote", factory.person("board1"), meaning="approve", password=PASSWORD)
    assert refusal.guard == "vote_consistent_with_audit"
    for member in factory.board:
        factory.fire(case, "vote", member, meaning="disapprove", password=PASSWORD)
    assert refused(factory, case, "approve", chair).guard == "audit_passed"
    factory.fire(case, "disapprove", chair, reason="The model failed the safety audit.")
    assert case.state == "disapproved"


def test_prohibited_deployment_can_never_be_approved(factory):
    case = factory.case_in("in_review", example="prohibited_autoprescriber")
    classification = queries.latest_classification(factory.session, case)
    assert classification.prohibited and case.pathway == "full_board"
    chair = factory.person("chair")
    factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting().id)
    for member in factory.board:
        factory.prepare_reviewer(case, member)
        factory.fire(case, "vote", member, meaning="approve", password=PASSWORD)
    factory.satisfy_blocking_obligations(case)
    refusal = refused(factory, case, "approve", chair)
    assert refusal.guard == "not_prohibited" and "nhc.internet.no_ai_prescriptions" in refusal.reason


def test_open_blocking_obligations_block_plain_approval(factory):
    case = factory.case_in("in_review", example="emr_generation")
    factory.ready_for_votes(case)
    factory.vote_all(case, "approve")
    refusal = refused(factory, case, "approve", factory.person("chair"))
    assert refusal.guard == "no_open_blocking_obligations" and "pipl_separate_consent" in refusal.reason
    factory.fire(case, "approve_with_conditions", factory.person("chair"), conditions="Consent forms before go-live.")
    decision = queries.latest_classification(factory.session, case)
    assert case.state == "approved_with_conditions" and decision is not None


def test_approval_activates_the_deployment_with_the_exact_digest(factory):
    case = factory.case_in("approved")
    deployment = factory.session.get(Deployment, case.deployment_id)
    factory.session.refresh(deployment)
    assert deployment.status == "active" and deployment.approved_version_id == case.model_version_id
    assert deployment.continuing_review_due is not None
    events = [e.name for e in eventlog.events_for_submission(factory.session, case.id)]
    assert events[-1] == "approve"
    activation = [e for e in eventlog.iter_events(factory.session) if e.name == "activate"]
    assert activation and activation[-1].deployment_id == deployment.id


def test_override_needs_a_justification_and_keeps_the_original(factory):
    case = factory.case_in("classified")
    chair = factory.person("chair")
    refusal = refused(factory, case, "override_classification", chair, pathway="full_board", review_as_class="III",
                      justification="too short")
    assert refusal.guard == "justification_given"
    factory.fire(case, "override_classification", chair, pathway="full_board", review_as_class="III",
                 justification="The chair wants the full board to see every patient-facing tool.")
    rows = factory.session.exec(select(Classification).where(Classification.submission_id == case.id).order_by(Classification.id)).all()
    assert len(rows) == 2 and not rows[0].is_override and rows[1].is_override
    assert rows[1].overrides_id == rows[0].id and rows[0].pathway == "ai_subcommittee"
    assert case.pathway == "full_board"


def test_conflict_statement_is_required_when_conflicted(factory, session):
    """A conflict without a statement is refused (it used to be recorded with a made-up "conflict declared")."""
    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    for blank in ({}, {"statement": ""}, {"statement": "   "}):
        refusal = refused(factory, case, "declare_conflict", reviewer, has_conflict=True, **blank)
        assert refusal.guard == "conflict_statement_given" and "'statement' is required" in refusal.reason
    assert session.exec(select(ConflictDeclaration).where(ConflictDeclaration.submission_id == case.id)).all() == []
    factory.fire(case, "declare_conflict", reviewer, has_conflict=True, statement="I advise the vendor.")
    row = session.exec(select(ConflictDeclaration).where(ConflictDeclaration.submission_id == case.id)).one()
    assert row.has_conflict and row.statement == "I advise the vendor."

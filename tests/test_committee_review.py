"""Review as committees do it (issue 15): the primary and secondary reviewers (the members the chair assigns)
answer the checklist before they vote; the other members present vote without it; a checklist saves as a draft
that is no answer until it is submitted complete; every vote's comment and proposed conditions reach the chair on
the case page and the dossier's votes table."""

from __future__ import annotations

import pytest
from sqlmodel import select

from governance import queries
from governance.db import get_db
from governance.dossier.context import build
from governance.dossier.render import environment
from governance.models import ChecklistDraft, Event, Vote
from governance.operations import TransitionRefused

from .factories import PASSWORD
from .test_web import login

pytestmark = pytest.mark.both_databases

COMMENT = "The validation cohort is small for paediatric notes."
CONDITIONS = "Re-audit on paediatric discharge summaries within 3 months; report hallucination rate monthly."


def refused(factory, submission, event, actor, **data) -> TransitionRefused:
    with pytest.raises(TransitionRefused) as caught:
        factory.fire(submission, event, actor, **data)
    factory.session.rollback()
    return caught.value


@pytest.fixture
def board_case(factory):
    """A full-board case in review on a quorate meeting, board2 assigned as its primary reviewer."""
    case = factory.case_in("in_review", example="emr_generation")
    assert case.pathway == "full_board"
    chair = factory.person("chair")
    factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting().id)
    factory.fire(case, "assign_reviewer", chair, reviewer=factory.person("board2").email)
    return case


def test_an_unassigned_board_member_votes_without_a_checklist(factory, board_case):
    member = factory.person("board1")
    assert not queries.is_assigned(factory.session, board_case, member)
    factory.fire(board_case, "declare_conflict", member, has_conflict=False)
    factory.fire(board_case, "vote", member, meaning="approve", comment=COMMENT, password=PASSWORD)
    vote = factory.session.exec(select(Vote).where(Vote.submission_id == board_case.id)).one()
    assert vote.voter_id == member.id and vote.comment == COMMENT
    assert queries.checklist_answers(factory.session, board_case, member) == {}


def test_an_assigned_reviewer_cannot_vote_before_completing_the_checklist(factory, board_case):
    reviewer = factory.person("board2")
    factory.fire(board_case, "declare_conflict", reviewer, has_conflict=False)
    refusal = refused(factory, board_case, "vote", reviewer, meaning="approve", password=PASSWORD)
    assert refusal.guard == "checklist_complete" and "checklist" in refusal.reason
    factory.fire(board_case, "answer_checklist", reviewer, answers=factory.checklist_answers(board_case))
    factory.fire(board_case, "vote", reviewer, meaning="approve", password=PASSWORD)


def test_fast_track_reviewers_are_assigned_and_answer_the_checklist(factory):
    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    factory.fire(case, "declare_conflict", reviewer, has_conflict=False)
    assert refused(factory, case, "vote", reviewer, meaning="approve", password=PASSWORD).guard == \
        "checklist_complete"


def test_a_draft_is_kept_is_no_answer_and_completing_it_satisfies_the_guard(factory, board_case, app):
    reviewer = factory.person("board2")
    factory.fire(board_case, "declare_conflict", reviewer, has_conflict=False)
    answers = factory.checklist_answers(board_case)
    assert len(answers) > 5
    first_five = dict(list(answers.items())[:5])
    first_five[next(iter(first_five))] = {"answer": "no"}  # a draft may keep a "no" whose comment comes later
    event = factory.fire(board_case, "save_checklist_draft", reviewer, answers=first_five)
    assert event.name == "save_checklist_draft" and event.payload["answered"] == 5
    assert event.hash and event.prev_hash

    # kept: another session (a restart) reads it back
    other = get_db(app).session_factory()
    try:
        draft = other.exec(select(ChecklistDraft).where(ChecklistDraft.submission_id == board_case.id,
                                                        ChecklistDraft.reviewer_id == reviewer.id)).one()
        assert set(draft.answers) == set(first_five) and draft.round == board_case.round
    finally:
        other.close()
    loaded = queries.checklist_draft(factory.session, board_case, reviewer)
    assert loaded is not None and loaded.answers[next(iter(first_five))]["answer"] == "no"

    # no answer: the guard still refuses, nothing is answered, the dossier lists no answer
    assert queries.checklist_answers(factory.session, board_case, reviewer) == {}
    refusal = refused(factory, board_case, "vote", reviewer, meaning="approve", password=PASSWORD)
    assert refusal.guard == "checklist_complete"
    context, _ = build(factory.session, factory.settings, board_case, "audit")
    assert context["review"]["checklist"] == []

    # submitting only what the draft holds is refused: a submitted checklist is complete
    partial = dict(list(answers.items())[:5])
    refusal = refused(factory, board_case, "answer_checklist", reviewer, answers=partial)
    assert refusal.guard == "checklist_answers_complete"

    # completing it: the answers stand, the draft is gone, the vote is possible
    factory.fire(board_case, "answer_checklist", reviewer, answers=answers)
    assert set(queries.checklist_answers(factory.session, board_case, reviewer)) == set(answers)
    assert queries.checklist_draft(factory.session, board_case, reviewer) is None
    factory.fire(board_case, "vote", reviewer, meaning="approve", password=PASSWORD)
    names = [e.name for e in factory.session.exec(select(Event).where(Event.submission_id == board_case.id)
                                                  .order_by(Event.seq)).all()]
    assert names.index("save_checklist_draft") < names.index("answer_checklist") < names.index("vote")


def test_a_draft_with_an_unknown_item_or_answer_is_refused(factory, board_case):
    reviewer = factory.person("board2")
    factory.fire(board_case, "declare_conflict", reviewer, has_conflict=False)
    refusal = refused(factory, board_case, "save_checklist_draft", reviewer,
                      answers={"no_such_item": {"answer": "yes"}})
    assert refusal.guard == "checklist_draft_valid" and "no_such_item" in refusal.reason
    first = next(iter(factory.checklist_answers(board_case)))
    refusal = refused(factory, board_case, "save_checklist_draft", reviewer, answers={first: {"answer": "maybe"}})
    assert refusal.guard == "checklist_draft_valid"


def test_a_draft_saved_on_the_checklist_page_comes_back(factory, board_case, client):
    reviewer = factory.person("board2")
    factory.fire(board_case, "declare_conflict", reviewer, has_conflict=False)
    items = list(factory.checklist_answers(board_case))
    login(client, reviewer)
    form = {f"answer__{item}": "yes" for item in items[:5]}
    form[f"comment__{items[0]}"] = "Checked the protocol section 4."
    form["draft"] = "1"
    response = client.post(f"/submissions/{board_case.id}/checklist", data=form)
    assert response.status_code == 303, response.data[:500]
    factory.session.expire_all()
    draft = queries.checklist_draft(factory.session, board_case, reviewer)
    assert draft is not None and set(draft.answers) == set(items[:5])
    assert queries.checklist_answers(factory.session, board_case, reviewer) == {}
    page = client.get(f"/submissions/{board_case.id}/checklist").get_data(as_text=True)
    assert "Checked the protocol section 4." in page
    # the whole checklist, submitted
    form = {f"answer__{item}": "yes" for item in items}
    response = client.post(f"/submissions/{board_case.id}/checklist", data=form)
    assert response.status_code == 303
    factory.session.expire_all()
    assert set(queries.checklist_answers(factory.session, board_case, reviewer)) == set(items)
    assert queries.checklist_draft(factory.session, board_case, reviewer) is None


def _vote_with_conditions(factory, case):
    member = factory.person("board1")
    factory.fire(case, "declare_conflict", member, has_conflict=False)
    factory.fire(case, "vote", member, meaning="approve_with_conditions", comment=COMMENT, proposed_conditions=CONDITIONS,
                 password=PASSWORD)
    return member


def test_the_chair_sees_vote_comments_and_proposed_conditions_on_the_case_page(factory, board_case, client):
    member = _vote_with_conditions(factory, board_case)
    vote = factory.session.exec(select(Vote).where(Vote.submission_id == board_case.id)).one()
    assert vote.comment == COMMENT and vote.proposed_conditions == CONDITIONS
    event = factory.session.exec(select(Event).where(Event.submission_id == board_case.id,
                                                     Event.name == "vote")).one()
    assert event.payload["proposed_conditions"] == CONDITIONS and event.payload["comment"] == COMMENT

    login(client, factory.person("chair"))
    page = client.get(f"/submissions/{board_case.id}").get_data(as_text=True)
    assert member.name in page and COMMENT in page and CONDITIONS in page
    client.post("/logout")
    login(client, factory.person("submitter"))  # the committee's deliberation is not the submitter's to read
    page = client.get(f"/submissions/{board_case.id}").get_data(as_text=True)
    assert COMMENT not in page and CONDITIONS not in page


def test_the_vote_form_takes_proposed_conditions(factory, board_case, client):
    member = factory.person("board1")
    factory.fire(board_case, "declare_conflict", member, has_conflict=False)
    login(client, member)
    page = client.get(f"/submissions/{board_case.id}/vote").get_data(as_text=True)
    assert "Proposed conditions" in page and "Answer the required checklist items first" not in page
    response = client.post(f"/submissions/{board_case.id}/vote", data={
        "meaning": "approve_with_conditions", "comment": COMMENT, "proposed_conditions": CONDITIONS, "password": PASSWORD})
    assert response.status_code == 303
    factory.session.expire_all()
    vote = factory.session.exec(select(Vote).where(Vote.submission_id == board_case.id)).one()
    assert vote.proposed_conditions == CONDITIONS


def test_the_dossier_carries_vote_comments_and_proposed_conditions(factory, board_case):
    member = _vote_with_conditions(factory, board_case)
    context, _ = build(factory.session, factory.settings, board_case, "audit")
    [vote] = context["review"]["votes"]
    assert vote["printed_name"] == member.name
    assert vote["comment"] == COMMENT and vote["proposed_conditions"] == CONDITIONS
    html = environment(factory.settings.reports_dir).get_template("dossier.html").render(**context)
    assert COMMENT in html and CONDITIONS in html


def test_the_pages_lead_an_unassigned_member_to_the_vote_and_a_reviewer_to_the_checklist(factory, board_case, client):
    login(client, factory.person("board1"))
    reply = client.post(f"/submissions/{board_case.id}/declare", data={"has_conflict": "false", "statement": ""})
    assert reply.status_code == 303 and reply.headers["Location"].endswith(f"/submissions/{board_case.id}/vote")
    queue = client.get("/review").get_data(as_text=True)
    assert f"/submissions/{board_case.id}/vote" in queue and "optional" in queue
    client.post("/logout")
    login(client, factory.person("board2"))
    reply = client.post(f"/submissions/{board_case.id}/declare", data={"has_conflict": "false", "statement": ""})
    assert reply.headers["Location"].endswith(f"/submissions/{board_case.id}/checklist")
    assert f"/submissions/{board_case.id}/checklist" in client.get("/review").get_data(as_text=True)

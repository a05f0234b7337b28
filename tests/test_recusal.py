"""Recusal that holds (issue 15): a conflict needs a statement, a recused member leaves the review of the case,
and the chair corrects a wrong declaration with a reason, as a chained event, keeping the declaration."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import select

from governance import eventlog, queries
from governance.committees import load_committee_rules
from governance.db import get_db
from governance.models import ConflictDeclaration, Event

from .factories import PASSWORD
from .test_web import login

pytestmark = pytest.mark.both_databases

REASON = "The member told the chair she misread the question: she has no tie to the vendor."


@pytest.fixture
def case(factory):
    """A fast-track case in review with ai1 and ai2 assigned; nobody has declared yet."""
    found = factory.case_in("in_review")
    for reviewer in ("ai1", "ai2"):
        factory.fire(found, "assign_reviewer", factory.person("chair"), reviewer=factory.person(reviewer).email)
    return found


def _rows(session, case) -> list[ConflictDeclaration]:
    session.expire_all()
    return list(session.exec(select(ConflictDeclaration).where(ConflictDeclaration.submission_id == case.id)
                             .order_by(ConflictDeclaration.id)).all())


def _events(session, case, name: str) -> list[Event]:
    session.expire_all()
    return list(session.exec(select(Event).where(Event.submission_id == case.id, Event.name == name)
                             .order_by(Event.seq)).all())


# --- a conflict needs a statement ---------------------------------------------------------------------------------

@pytest.mark.parametrize("statement", [None, "", "   \n "])
def test_the_operation_refuses_a_conflict_without_a_statement(factory, session, case, statement):
    data = {} if statement is None else {"statement": statement}
    refusal = factory.refused(case, "declare_conflict", factory.person("ai1"), has_conflict=True, **data)
    assert refusal.guard == "conflict_statement_given"
    assert "'statement' is required" in refusal.reason
    assert _rows(session, case) == [] and _events(session, case, "declare_conflict") == []


@pytest.mark.parametrize("statement", ["", "   "])
def test_the_declaration_page_refuses_a_conflict_without_a_statement(factory, session, client, case, statement):
    login(client, factory.person("ai1"))
    reply = client.post(f"/submissions/{case.id}/declare", data={"has_conflict": "true", "statement": statement})
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert "A statement is required when you declare a conflict: say what the conflict is." in page
    assert "Declaration recorded." not in page
    assert _rows(session, case) == [] and _events(session, case, "declare_conflict") == []


def test_the_api_refuses_a_conflict_without_a_statement(factory, session, client, case):
    from governance.operations.tokens import create_token

    member = factory.person("ai1")
    _token, secret = create_token(session, member, name="ci", scope="submit", actor=member)
    session.commit()
    reply = client.post(f"/api/v1/submissions/{case.id}/events", headers={"Authorization": f"Bearer {secret}"},
                        json={"event": "declare_conflict", "data": {"has_conflict": True}})
    assert reply.status_code == 409 and "'statement' is required" in reply.get_json()["error"], reply.get_json()
    assert _rows(session, case) == []


def test_no_conflict_needs_no_statement(factory, session, client, case):
    login(client, factory.person("ai2"))
    reply = client.post(f"/submissions/{case.id}/declare", data={"has_conflict": "false", "statement": ""})
    assert reply.status_code == 303 and reply.headers["Location"].endswith(f"/submissions/{case.id}/checklist")
    assert [(r.has_conflict, r.statement) for r in _rows(session, case)] == [(False, "")]


# --- a recused member leaves the review of the case -----------------------------------------------------------------

def test_a_member_who_declares_a_conflict_is_sent_to_the_case_not_to_the_checklist(factory, session, client, case):
    login(client, factory.person("ai1"))
    reply = client.post(f"/submissions/{case.id}/declare",
                        data={"has_conflict": "true", "statement": "I built this model for the vendor."})
    assert reply.status_code == 303 and reply.headers["Location"].endswith(f"/submissions/{case.id}")
    page = client.get(reply.headers["Location"]).get_data(as_text=True)
    assert "You are recused from this case" in page and "Declaration recorded." in page
    assert f"/submissions/{case.id}/checklist" not in page and f"/submissions/{case.id}/vote" not in page
    assert 'action="/submissions/%d/comment"' % case.id not in page  # no comment form either
    assert "I built this model for the vendor." in page

    for door in ("checklist", "vote"):
        away = client.get(f"/submissions/{case.id}/{door}")
        assert away.status_code == 303 and away.headers["Location"].endswith(f"/submissions/{case.id}"), door
        assert "recused" in client.get(away.headers["Location"]).get_data(as_text=True)

    queue = client.get("/review").get_data(as_text=True)
    assert "recused (conflict of interest)" in queue and "Answer the checklist" not in queue

    again = client.get(f"/submissions/{case.id}/declare").get_data(as_text=True)
    assert "You are recused from this case." in again and "ask the chair to correct it" in again
    assert "Record my declaration" not in again  # a declaration is made once; the chair corrects it


@pytest.mark.parametrize("door", ["answer_checklist", "vote", "comment"])
def test_a_recused_member_can_neither_answer_vote_nor_comment(factory, session, client, case, door):
    member = factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I advise the vendor.")
    data = {"answer_checklist": {"answers": factory.checklist_answers(case)},
            "vote": {"meaning": "approve", "password": PASSWORD}, "comment": {"text": "Please add more data."}}[door]
    refusal = factory.refused(case, door, member, **data)
    assert refusal.guard in {"actor_not_recused", "actor_declared_no_conflict"} and "recused" in refusal.reason

    login(client, member)
    if door == "answer_checklist":
        form = {f"answer__{item}": entry["answer"] for item, entry in data["answers"].items()}
        reply = client.post(f"/submissions/{case.id}/checklist", data=form, follow_redirects=True)
    elif door == "vote":
        reply = client.post(f"/submissions/{case.id}/vote", data=data, follow_redirects=True)
    else:
        reply = client.post(f"/submissions/{case.id}/comment", data=data, follow_redirects=True)
    assert reply.status_code == 200 and "recused" in reply.get_data(as_text=True)
    assert _events(session, case, door) == []


# --- the chair corrects a declaration -------------------------------------------------------------------------------

def test_the_chair_lifts_a_recusal_declared_by_mistake(factory, session, case):
    chair, member = factory.person("chair"), factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I think I met the vendor once.")
    assert member.id in queries.conflicted_user_ids(session, case)

    event = factory.fire(case, "correct_conflict_declaration", chair, member=member.email, has_conflict=False,
                         reason=REASON)
    assert event.name == "correct_conflict_declaration" and event.actor_id == chair.id
    assert event.payload["reason"] == REASON and event.payload["member"] == member.email
    assert event.payload["was_recused"] is True and event.payload["recused"] is False
    assert event.hash == eventlog.compute_hash(event.prev_hash, eventlog.row_content(event))
    assert eventlog.verify_chain(session).ok

    original, correction = _rows(session, case)  # the declaration is kept; the correction is a new row
    assert (original.has_conflict, original.statement, original.corrected_by_id) == \
        (True, "I think I met the vendor once.", None)
    assert (correction.has_conflict, correction.corrected_by_id, correction.corrects_id, correction.reason) == \
        (False, chair.id, original.id, REASON)
    assert event.payload["declaration"] == correction.id and event.payload["corrects"] == original.id
    assert member.id not in queries.conflicted_user_ids(session, case)
    assert queries.declaration(session, case, member).id == correction.id

    # the member is back in the review: checklist, vote, comment
    factory.fire(case, "answer_checklist", member, answers=factory.checklist_answers(case))
    assert factory.fire(case, "vote", member, meaning="approve", password=PASSWORD).name == "vote"
    assert factory.fire(case, "comment", member, text="Thank you for the correction.").name == "comment"
    # the member was told
    from governance.models import Notification

    notes = session.exec(select(Notification).where(Notification.user_id == member.id,
                                                    Notification.kind == "conflict_correction")).all()
    assert len(notes) == 1 and notes[0].body == REASON


def test_the_chair_records_a_conflict_a_member_failed_to_declare(factory, session, case):
    chair, member, other = factory.person("chair"), factory.person("ai2"), factory.person("ai1")
    for reviewer in (member, other):
        factory.prepare_reviewer(case, reviewer)
    factory.fire(case, "vote", member, meaning="approve", password=PASSWORD)
    rules = load_committee_rules(factory.settings.regulations_dir)
    assert queries.tally(session, case, rules).voted == 1

    factory.fire(case, "correct_conflict_declaration", chair, member=member.email, has_conflict=True,
                 statement="Holds shares in the vendor.", reason="Disclosed to the chair after the vote.")
    assert member.id in queries.conflicted_user_ids(session, case)
    tally = queries.tally(session, case, rules)  # the vote is kept (signed) but no longer counts
    assert tally.voted == 0 and tally.eligible == 1 and member.name in tally.recused
    refusal = factory.refused(case, "comment", member, text="But I voted already.")
    assert refusal.guard == "actor_not_recused"
    refusal = factory.refused(case, "assign_reviewer", chair, reviewer=member.email)
    assert refusal.guard == "reviewer_eligible"  # a conflicted member cannot be (re)assigned either


def test_a_correction_needs_a_reason_and_a_conflict_a_statement(factory, session, case):
    chair, member = factory.person("chair"), factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=False)
    for reason in (None, "", "   "):
        data = {} if reason is None else {"reason": reason}
        refusal = factory.refused(case, "correct_conflict_declaration", chair, member=member.email,
                                  has_conflict=True, statement="Consults for the vendor.", **data)
        assert refusal.guard == "fields" and "'reason' is required" in refusal.reason
    refusal = factory.refused(case, "correct_conflict_declaration", chair, member=member.email, has_conflict=True,
                              reason=REASON)
    assert refusal.guard == "declaration_correction_valid" and "'statement' is required" in refusal.reason
    refusal = factory.refused(case, "correct_conflict_declaration", chair, member=member.email, has_conflict=False,
                              reason=REASON)
    assert refusal.guard == "declaration_correction_valid" and "already says" in refusal.reason
    refusal = factory.refused(case, "correct_conflict_declaration", chair, member="nobody@test.hospital",
                              has_conflict=True, statement="x", reason=REASON)
    assert refusal.guard == "declaration_correction_valid" and "no active user" in refusal.reason
    refusal = factory.refused(case, "correct_conflict_declaration", chair, member=factory.person("submitter").email,
                              has_conflict=True, statement="x", reason=REASON)
    assert refusal.guard == "declaration_correction_valid" and "submitted this case" in refusal.reason
    assert len(_rows(session, case)) == 1 and _events(session, case, "correct_conflict_declaration") == []


@pytest.mark.parametrize("who", ["ai2", "board1", "submitter", "compliance"])
def test_only_the_chair_corrects_a_declaration(factory, session, case, who):
    member = factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I advise the vendor.")
    refusal = factory.refused(case, "correct_conflict_declaration", factory.person(who), member=member.email,
                              has_conflict=False, reason=REASON)
    assert refusal.guard == "roles"
    assert member.id in queries.conflicted_user_ids(session, case)


def test_a_recused_member_cannot_lift_their_own_recusal(factory, session, case):
    """Even a chair: a recused chair is refused by actor_not_recused; nobody clears their own declaration."""
    chair_member = factory.user("irb_chair", "ai_subcommittee_member", email="second.chair@test.hospital")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=chair_member.email)
    factory.fire(case, "declare_conflict", chair_member, has_conflict=True, statement="My department built it.")
    refusal = factory.refused(case, "correct_conflict_declaration", chair_member, member=chair_member.email,
                              has_conflict=False, reason=REASON)
    assert refusal.guard == "actor_not_recused"
    assert chair_member.id in queries.conflicted_user_ids(session, case)


def test_the_chair_corrects_on_the_case_page(factory, session, app, client, case):
    chair, member = factory.person("chair"), factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I think I met the vendor once.")
    login(client, chair)
    page = client.get(f"/submissions/{case.id}").get_data(as_text=True)
    assert 'id="declarations"' in page and "Correct a conflict declaration" in page
    assert "I think I met the vendor once." in page and f'<option value="{member.email}">' in page

    form = {"correction-member": member.email, "correction-has_conflict": "false", "correction-statement": ""}
    reply = client.post(f"/submissions/{case.id}/declarations/correct", data={**form, "correction-reason": "  "},
                        follow_redirects=True)
    assert "Give the reason for the correction." in reply.get_data(as_text=True)
    assert _events(session, case, "correct_conflict_declaration") == []

    reply = client.post(f"/submissions/{case.id}/declarations/correct", data={**form, "correction-reason": REASON},
                        follow_redirects=True)
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200 and "Correction recorded." in page
    assert REASON in page  # in the declarations table and in the history
    [event] = _events(session, case, "correct_conflict_declaration")
    assert event.payload["reason"] == REASON and event.actor_id == chair.id
    assert member.id not in queries.conflicted_user_ids(session, case)

    as_member = app.test_client()  # the member is back in the review
    login(as_member, member)
    member_page = as_member.get(f"/submissions/{case.id}").get_data(as_text=True)
    assert "You are recused" not in member_page and f"/submissions/{case.id}/checklist" in member_page
    assert as_member.get(f"/submissions/{case.id}/checklist").status_code == 200


def test_a_member_cannot_post_the_correction_form(factory, session, client, case):
    member = factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I advise the vendor.")
    login(client, member)
    assert 'id="declarations"' not in client.get(f"/submissions/{case.id}").get_data(as_text=True)
    reply = client.post(f"/submissions/{case.id}/declarations/correct",
                        data={"correction-member": member.email, "correction-has_conflict": "false",
                              "correction-reason": REASON})
    assert reply.status_code == 403
    assert member.id in queries.conflicted_user_ids(session, case)
    assert _events(session, case, "correct_conflict_declaration") == []


# --- the database keeps the history ----------------------------------------------------------------------------------

def test_declarations_are_append_only_and_a_member_declares_once(factory, app, case):
    member = factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I advise the vendor.")
    engine = get_db(app).engine
    for statement in ("UPDATE conflict_declaration SET has_conflict = false",
                      "DELETE FROM conflict_declaration"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as connection:
                connection.execute(sa.text(statement))
    with pytest.raises(sa.exc.IntegrityError):  # a second declaration of their own (corrections are the chair's)
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO conflict_declaration (submission_id, user_id, has_conflict, statement, declared_at, "
                "reason) VALUES (:case, :user, false, '', CURRENT_TIMESTAMP, '')"), {"case": case.id, "user": member.id})
    with pytest.raises(sa.exc.IntegrityError):  # a correction without its reason
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO conflict_declaration (submission_id, user_id, has_conflict, statement, declared_at, "
                "corrected_by_id, reason) VALUES (:case, :user, false, '', CURRENT_TIMESTAMP, :user, '')"),
                {"case": case.id, "user": member.id})


def test_the_recusal_and_the_correction_form_speak_chinese(factory, app, client, case):
    member = factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I advise the vendor.")
    login(client, member)
    client.post("/locale/zh_CN", data={"next": "/"})
    page = client.get(f"/submissions/{case.id}").get_data(as_text=True)
    assert "您须回避本审查项目" in page and "如声明有误，请联系主任委员更正" in page
    chair = app.test_client()
    login(chair, factory.person("chair"))
    chair.post("/locale/zh_CN", data={"next": "/"})
    page = chair.get(f"/submissions/{case.id}").get_data(as_text=True)
    assert "利益冲突声明记录" in page and "更正理由" in page and "记录更正" in page


def test_the_dossier_shows_a_correction_with_who_made_it_and_why(factory, session, app, case):
    from governance.dossier import context as dossier_context
    from governance.dossier.render import TEMPLATE, environment

    chair, member = factory.person("chair"), factory.person("ai1")
    factory.fire(case, "declare_conflict", member, has_conflict=True, statement="I think I met the vendor once.")
    factory.fire(case, "correct_conflict_declaration", chair, member=member.email, has_conflict=False, reason=REASON)
    settings = app.config["GOVERNANCE"]
    context, _ = dossier_context.build(session, settings, case, "decision")
    original, correction = context["review"]["declarations"]
    assert (original["corrected_by"], original["reason"]) == (None, "")
    assert (correction["corrected_by"], correction["reason"], correction["has_conflict"]) == (chair.name, REASON, False)
    html = environment(settings.reports_dir).get_template(TEMPLATE).render(**context)
    assert f"Correction recorded by {chair.name}" in html and REASON in html

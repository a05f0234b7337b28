"""Independent acts by different reviewers on one case do not conflict: eight members declaring, answering the
checklist and voting at the same moment all succeed the first time, one after the other on the case's row, and
the hash chain stays one line. A stale page still conflicts for acts on the case itself."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from governance import eventlog
from governance.db import get_db
from governance.models import ConflictDeclaration, Event, Submission, User, Vote
from governance.operations import ConflictError, fire

from .factories import PASSWORD

pytestmark = pytest.mark.both_databases

MEMBERS = 8


def _race(app, case_id: int, people: list[int], event: str, data_for) -> list[str]:
    """Every person fires ``event`` at the same moment, once, each in a session of their own."""
    settings = app.config["GOVERNANCE"]
    barrier = threading.Barrier(len(people))
    outcomes: dict[int, str] = {}

    def member(user_id: int) -> None:
        session = get_db(app).session_factory()
        try:
            submission, actor = session.get(Submission, case_id), session.get(User, user_id)
            data = data_for(session, submission)
            barrier.wait(30)
            fire(session, submission, event, actor, data, settings=settings)
            session.commit()
            outcomes[user_id] = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure is reported by the assertion below
            session.rollback()
            outcomes[user_id] = f"{type(exc).__name__}: {exc}"
        finally:
            session.close()

    threads = [threading.Thread(target=member, args=(user_id,)) for user_id in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return [outcomes.get(user_id, "did not finish") for user_id in people]


def test_eight_reviewers_declare_answer_and_vote_at_once_and_all_succeed_first_time(factory, app):
    case = factory.case_in("in_review", example="emr_generation")
    members = factory.board + [factory.user("irb_member"), factory.user("irb_member")]
    assert len(members) == MEMBERS
    factory.fire(case, "schedule_meeting", factory.person("chair"), meeting=factory.meeting(present=members).id)
    answers = factory.checklist_answers(case)
    ids = [m.id for m in members]
    version_before = case.lock_version

    assert _race(app, case.id, ids, "declare_conflict", lambda s, c: {"has_conflict": False}) == ["ok"] * MEMBERS
    assert _race(app, case.id, ids, "answer_checklist", lambda s, c: {"answers": answers}) == ["ok"] * MEMBERS
    outcomes = _race(app, case.id, ids, "vote", lambda s, c: {"meaning": "approve", "password": PASSWORD})
    assert outcomes == ["ok"] * MEMBERS

    check = get_db(app).session_factory()
    try:
        votes = check.execute(select(Vote).where(Vote.submission_id == case.id)).scalars().all()
        assert sorted(v.voter_id for v in votes) == sorted(ids)
        assert len(check.execute(select(ConflictDeclaration).where(
            ConflictDeclaration.submission_id == case.id)).scalars().all()) == MEMBERS
        vote_events = check.execute(select(Event).where(Event.submission_id == case.id, Event.name == "vote")
                                    .order_by(Event.seq)).scalars().all()
        assert sorted(e.actor_id for e in vote_events) == sorted(ids)
        seqs = check.execute(select(Event.seq).order_by(Event.seq)).scalars().all()
        assert seqs == list(range(1, len(seqs) + 1))  # one line: no gaps, no forks
        assert eventlog.verify_chain(check).ok
        # every act was recorded on the case: the version moved once per act, serially
        assert check.get(Submission, case.id).lock_version == version_before + 3 * MEMBERS
    finally:
        check.close()


def test_a_stale_page_still_conflicts_for_acts_on_the_case_itself(factory, app):
    """Votes do not conflict with each other, but the chair's decision on a page loaded before a vote does."""
    case = factory.case_in("in_review", example="emr_generation")
    chair = factory.person("chair")
    factory.fire(case, "schedule_meeting", chair, meeting=factory.meeting().id)
    member = factory.person("board1")
    factory.prepare_reviewer(case, member)
    settings = app.config["GOVERNANCE"]
    stale = get_db(app).session_factory()
    try:
        seen = stale.get(Submission, case.id)
        stale_version = seen.lock_version
        stale.commit()  # the page was rendered; its transaction is over
        factory.fire(case, "vote", member, meaning="approve", password=PASSWORD)
        assert case.lock_version > stale_version
        with pytest.raises(ConflictError, match="changed by someone else"):
            fire(stale, seen, "defer", stale.get(User, chair.id), {"reason": "later"}, settings=settings)
        stale.rollback()
    finally:
        stale.close()

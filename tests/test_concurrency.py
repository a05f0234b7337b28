"""Optimistic locking: of two conflicting transitions on one case, exactly one succeeds."""

from __future__ import annotations

import threading

import pytest

from governance import eventlog
from governance.db import get_db
from governance.models import Submission
from governance.operations import ConflictError, fire

pytestmark = pytest.mark.both_databases


def test_stale_second_writer_gets_a_conflict(factory, app):
    case = factory.case_in("screening")
    chair = factory.person("chair")
    settings = app.config["GOVERNANCE"]
    first, second = get_db(app).session_factory(), get_db(app).session_factory()
    try:
        a, b = first.get(Submission, case.id), second.get(Submission, case.id)
        a_chair, b_chair = first.merge(chair), second.merge(chair)
        assert a.lock_version == b.lock_version
        fire(first, a, "accept", a_chair, settings=settings)
        first.commit()
        with pytest.raises(ConflictError, match="changed by someone else"):
            fire(second, b, "return_to_submitter", b_chair, {"reason": "late"}, settings=settings)
        second.rollback()
    finally:
        first.close()
        second.close()
    check = get_db(app).session_factory()
    assert check.get(Submission, case.id).state == "classified"
    assert eventlog.verify_chain(check).ok
    check.close()


def test_racing_threads_exactly_one_wins(factory, app):
    case = factory.case_in("screening")
    chair_id = factory.person("chair").id
    settings = app.config["GOVERNANCE"]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def contender(event: str, data: dict) -> None:
        session = get_db(app).session_factory()
        try:
            from governance.models import User

            submission, chair = session.get(Submission, case.id), session.get(User, chair_id)
            barrier.wait()
            fire(session, submission, event, chair, data, settings=settings)
            session.commit()
            outcomes.append(event)
        except (ConflictError, eventlog.ConcurrentWriteError):
            session.rollback()
            outcomes.append("conflict")
        except Exception as exc:  # sqlite may report the race as a busy database: also a refusal
            session.rollback()
            outcomes.append(f"conflict:{type(exc).__name__}")
        finally:
            session.close()

    threads = [threading.Thread(target=contender, args=("accept", {})),
               threading.Thread(target=contender, args=("return_to_submitter", {"reason": "race"}))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [o for o in outcomes if not o.startswith("conflict")]
    assert len(outcomes) == 2 and len(winners) == 1, outcomes
    check = get_db(app).session_factory()
    submission = check.get(Submission, case.id)
    assert submission.state == {"accept": "classified", "return_to_submitter": "returned"}[winners[0]]
    assert eventlog.verify_chain(check).ok
    check.close()

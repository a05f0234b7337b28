"""Property-based: random event sequences never leave the declared states, the chain always verifies,
the lock version grows with every transition, and no case is approved without a passing audit."""

from __future__ import annotations

import pytest
from hypothesis import event as note_outcome
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from governance import eventlog, migrate, queries
from governance.db import get_db
from governance.models import Event, Submission
from governance.operations import ConflictError, TransitionRefused, fire
from governance.workflow import SUBMISSIONS, SubmissionState

from .conftest import make_app
from .factories import PASSWORD, Factory

EVENTS = SUBMISSIONS.events()
ACTORS = ["submitter", "chair", "ai1", "ai2", "board1", "compliance", "clinician", "system"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("properties")
    database = folder / "db.sqlite3"
    migrate.upgrade(f"sqlite:///{database}")
    (folder / "instance").mkdir()
    app = make_app(folder / "instance", f"sqlite:///{database}")
    with app.app_context():
        session = get_db(app).session_factory()
        factory = Factory(app, session)
        people = {key: factory.person(key).id for key in ACTORS if key != "system"}
        meeting = factory.meeting().id
        yield app, factory, people, meeting
        session.close()
    get_db(app).dispose()


def _data(event: str, factory: Factory, submission: Submission, meeting: int, meaning: str) -> dict:
    return {
        "return_to_submitter": {"reason": "incomplete"}, "resubmit": {"response": "done"},
        "override_classification": {"pathway": "full_board", "review_as_class": "III",
                                    "justification": "Full board review requested by the chair."},
        "rerun_audit": {"reason": "retry"}, "require_revisions": {"reason": "fix"}, "escalate": {"reason": "board"},
        "assign_reviewer": {"reviewer": "ai1@test.hospital"}, "declare_conflict": {"has_conflict": False},
        "answer_checklist": {"answers": factory.checklist_answers(submission)} if submission.pathway else {},
        "schedule_meeting": {"meeting": meeting}, "vote": {"meaning": meaning, "password": PASSWORD},
        "approve_with_conditions": {"conditions": "monthly re-audit"}, "defer": {"reason": "later"},
        "disapprove": {"reason": "no"}, "withdraw": {"reason": "stop"}, "comment": {"text": "note"},
    }.get(event, {})


ROLE_PEOPLE = {"submitter": ["submitter"], "irb_chair": ["chair"], "irb_member": ["board1", "chair"],
               "ai_subcommittee_member": ["ai1", "ai2"], "system": ["system"], "compliance_officer": ["compliance"],
               "clinician": ["clinician"], "admin": ["compliance"]}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), example=st.sampled_from(["administrative_assistant", "emr_generation"]),
       endpoint=st.sampled_from(["demo://good", "demo://good", "demo://weak"]))
def test_random_event_sequences_keep_invariants(world, data, example, endpoint):
    """Each step draws, most often, an event possible now and an actor holding one of its roles."""
    app, factory, people, meeting = world
    session = factory.session
    submission = factory.submission(example, endpoint=endpoint)
    settings_ = app.config["GOVERNANCE"]
    states = {s.value for s in SubmissionState}
    for _ in range(data.draw(st.integers(min_value=1, max_value=30), label="length")):
        session.refresh(submission)
        # Withdrawing and commenting are always possible; leaving them to the random branch lets
        # sequences reach review and decisions.
        possible = [t for t in SUBMISSIONS.available(submission.state) if t.event not in {"withdraw", "comment"}]
        if possible and data.draw(st.integers(0, 9), label="in-table") < 8:
            transition = data.draw(st.sampled_from(possible), label="transition")
            event = transition.event
            who = data.draw(st.sampled_from(sorted({p for r in transition.roles for p in ROLE_PEOPLE[r]})),
                            label="actor")
        else:
            event = data.draw(st.sampled_from(EVENTS), label="event")
            who = data.draw(st.sampled_from(ACTORS), label="actor")
        meaning = data.draw(st.sampled_from(["approve", "approve", "disapprove", "require_revisions", "abstain"]),
                            label="meaning")
        before_version, before_state = submission.lock_version, submission.state
        before_events = session.execute(select(func.count(Event.seq))).scalar_one()
        actor = None if who == "system" else session.get(type(factory.person("chair")), people[who])
        try:
            fire(session, submission, event, actor, _data(event, factory, submission, meeting, meaning),
                 settings=settings_)
            session.commit()  # gate audits run (inline) when routing commits
        except (TransitionRefused, ConflictError):
            session.rollback()
            session.refresh(submission)
            assert submission.lock_version == before_version
            assert submission.state == before_state
            assert session.execute(select(func.count(Event.seq))).scalar_one() == before_events
        else:
            session.refresh(submission)
            assert submission.lock_version > before_version
        assert submission.state in states
        if submission.state in {"approved", "approved_with_conditions"}:
            assert queries.audit_passed(session, submission)
        assert all(v.voter_id != submission.submitter_id for v in queries.votes_this_round(session, submission))
    assert eventlog.verify_chain(session).ok
    note_outcome(f"final state {submission.state}")

"""The transition table as a specification: every (state, event, role) gives the declared target or a
refusal that names its guard."""

from __future__ import annotations


import pytest

from governance import migrate
from governance.db import get_db
from governance.domain import SYSTEM, Role
from governance.models import Submission, User
from governance.operations import TransitionRefused, fire
from governance.workflow import SUBMISSIONS, SubmissionState

from .conftest import make_app
from .factories import PASSWORD, Factory

SAME = "same"
SUBMITTER = {"submitter"}
CHAIR = {"irb_chair"}
REVIEWERS = {"irb_member", "ai_subcommittee_member", "irb_chair"}
WITHDRAWABLE = ("draft", "submitted", "screening", "returned", "held", "revisions_required", "deferred")
COMMENTABLE = ("submitted", "screening", "returned", "classified", "auditing", "held", "in_review",
               "revisions_required", "deferred")

#: The workflow, written out by hand: (state, event) -> (target, roles allowed).
SPEC: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("draft", "submit"): ("submitted", SUBMITTER),
    ("draft", "file"): ("submitted", {SYSTEM}),  # incident cases, opened by the system
    ("submitted", "start_screening"): ("screening", CHAIR),
    ("screening", "return_to_submitter"): ("returned", CHAIR),
    ("returned", "resubmit"): ("submitted", SUBMITTER),
    ("screening", "accept"): ("classified", CHAIR),
    ("classified", "confirm_classification"): ("auditing", CHAIR),
    ("classified", "override_classification"): ("auditing", CHAIR),
    ("auditing", "audit_passed"): ("in_review", {SYSTEM}),
    ("auditing", "audit_failed"): ("held", {SYSTEM}),
    ("held", "rerun_audit"): ("auditing", CHAIR),
    ("held", "require_revisions"): ("revisions_required", CHAIR),
    ("held", "escalate"): ("in_review", CHAIR | SUBMITTER),
    ("in_review", "assign_reviewer"): (SAME, CHAIR),
    ("in_review", "declare_conflict"): (SAME, REVIEWERS),
    ("in_review", "answer_checklist"): (SAME, REVIEWERS),
    ("in_review", "schedule_meeting"): (SAME, CHAIR),
    ("in_review", "vote"): (SAME, REVIEWERS),
    ("in_review", "escalate"): (SAME, {"ai_subcommittee_member", "irb_chair"}),
    ("in_review", "approve"): ("approved", CHAIR),
    ("in_review", "approve_with_conditions"): ("approved_with_conditions", CHAIR),
    ("in_review", "require_revisions"): ("revisions_required", CHAIR),
    ("in_review", "defer"): ("deferred", CHAIR),
    ("in_review", "disapprove"): ("disapproved", CHAIR),
    ("revisions_required", "resubmit"): ("submitted", SUBMITTER),
    ("deferred", "reconsider"): ("in_review", CHAIR),
    **{(state, "withdraw"): ("withdrawn", SUBMITTER) for state in WITHDRAWABLE},
    **{(state, "comment"): (SAME, SUBMITTER | REVIEWERS) for state in COMMENTABLE},
}
ROLES = [r.value for r in Role] + [SYSTEM]
EVENTS = sorted({event for _, event in SPEC})
STATES = [s.value for s in SubmissionState]


def test_declared_table_is_the_specification():
    declared = {(t.source.value, t.event): (t.target.value if t.target else SAME, set(t.roles))
                for t in SUBMISSIONS.transitions}
    assert declared == SPEC


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One database with a case in every state, shared by the table's ~2,900 checks (each rolls back)."""
    folder = tmp_path_factory.mktemp("table")
    database = folder / "db.sqlite3"
    migrate.upgrade(f"sqlite:///{database}")
    instance = folder / "instance"
    instance.mkdir()
    app = make_app(instance, f"sqlite:///{database}")
    with app.app_context():
        session = get_db(app).session_factory()
        factory = Factory(app, session)
        cases = {state: factory.case_in(state).id for state in STATES}
        in_review = session.get(Submission, cases["in_review"])
        factory.ready_for_votes(in_review)
        actors = {role: factory.user(role).id for role in [r.value for r in Role]}
        actors["submitter"] = factory.person("submitter").id
        actors["irb_chair"] = factory.person("chair").id
        actors["ai_subcommittee_member"] = factory.person("ai1").id
        actors["irb_member"] = factory.person("board1").id
        fresh_reviewer = factory.user("ai_subcommittee_member").email
        meeting = factory.meeting().id
        answers = factory.checklist_answers(in_review)
        session.close()
    data = {
        "return_to_submitter": {"reason": "Incomplete."}, "resubmit": {"response": "Completed."},
        "override_classification": {"pathway": "full_board", "review_as_class": "III",
                                    "justification": "The board wants to see every triage tool."},
        "rerun_audit": {"reason": "Infrastructure failure."}, "require_revisions": {"reason": "Fix it."},
        "escalate": {"reason": "Needs the full board."}, "assign_reviewer": {"reviewer": fresh_reviewer},
        "declare_conflict": {"has_conflict": False}, "answer_checklist": {"answers": answers},
        "schedule_meeting": {"meeting": meeting}, "vote": {"meaning": "approve", "password": PASSWORD},
        "approve_with_conditions": {"conditions": "Monthly re-audit."}, "defer": {"reason": "Later."},
        "disapprove": {"reason": "No."}, "withdraw": {"reason": "Not needed."}, "comment": {"text": "A note."},
    }
    yield app, cases, actors, data
    get_db(app).dispose()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("state", STATES)
def test_transition_table(world, state, event, role):
    app, cases, actors, data = world
    with app.app_context():
        session = get_db(app).session_factory()
        try:
            submission = session.get(Submission, cases[state])
            assert submission.state == state
            actor = None if role == SYSTEM else session.get(User, actors[role])
            try:
                fire(session, submission, event, actor, data.get(event, {}), settings=app.config["GOVERNANCE"])
            except TransitionRefused as refusal:
                outcome = ("refused", refusal.guard, refusal.reason)
            else:
                outcome = ("moved", submission.state)
        finally:
            session.rollback()
            session.close()
    if (state, event) not in SPEC:
        assert outcome[:2] == ("refused", "declared")
        assert f"in state '{state}'" in outcome[2] or "not an event" in outcome[2]
        return
    target, allowed = SPEC[(state, event)]
    if role not in allowed:
        assert outcome[:2] == ("refused", "roles"), outcome
        assert "may" in outcome[2]
        return
    if outcome[0] == "moved":
        assert outcome[1] == (state if target == SAME else target)
    else:
        transition = SUBMISSIONS.find(state, event)
        assert outcome[1] in transition.guards, outcome  # refused by one of its own named guards, with a reason
        assert outcome[2]


#: Combinations the shared world is set up to allow: the table test above must see them move.
MUST_MOVE = [
    ("draft", "submit", "submitter"), ("submitted", "start_screening", "irb_chair"),
    ("screening", "accept", "irb_chair"), ("screening", "return_to_submitter", "irb_chair"),
    ("returned", "resubmit", "submitter"), ("classified", "confirm_classification", "irb_chair"),
    ("classified", "override_classification", "irb_chair"), ("held", "escalate", "submitter"),
    ("held", "rerun_audit", "irb_chair"), ("in_review", "assign_reviewer", "irb_chair"),
    ("in_review", "vote", "ai_subcommittee_member"), ("in_review", "escalate", "irb_chair"),
    ("in_review", "comment", "submitter"), ("deferred", "reconsider", "irb_chair"),
    ("revisions_required", "resubmit", "submitter"), ("held", "withdraw", "submitter"),
]


@pytest.mark.parametrize(("state", "event", "role"), MUST_MOVE)
def test_allowed_paths_really_move(world, state, event, role):
    app, cases, actors, data = world
    with app.app_context():
        session = get_db(app).session_factory()
        try:
            submission = session.get(Submission, cases[state])
            fire(session, submission, event, session.get(User, actors[role]), data.get(event, {}),
                 settings=app.config["GOVERNANCE"])
            target, _ = SPEC[(state, event)]
            assert submission.state == (state if target == SAME else target)
        finally:
            session.rollback()
            session.close()

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
    ("submitted", "auto_screen"): ("auditing", {SYSTEM}),  # routine changes, where the institution allows it
    ("screening", "return_to_submitter"): ("returned", CHAIR),
    ("returned", "resubmit"): ("submitted", SUBMITTER),
    ("screening", "accept"): ("classified", CHAIR),
    ("classified", "confirm_classification"): ("auditing", CHAIR),
    ("classified", "override_classification"): ("auditing", CHAIR),
    ("auditing", "audit_passed"): ("in_review", {SYSTEM}),
    ("auditing", "audit_failed"): ("held", {SYSTEM}),
    ("auditing", "retry_audit"): (SAME, CHAIR),
    ("held", "rerun_audit"): ("auditing", CHAIR),
    ("held", "require_revisions"): ("revisions_required", CHAIR),
    ("held", "escalate"): ("in_review", CHAIR | SUBMITTER),
    ("in_review", "assign_reviewer"): (SAME, CHAIR),
    ("in_review", "declare_conflict"): (SAME, REVIEWERS),
    ("in_review", "correct_conflict_declaration"): (SAME, CHAIR),
    ("in_review", "save_checklist_draft"): (SAME, REVIEWERS),
    ("in_review", "answer_checklist"): (SAME, REVIEWERS),
    ("in_review", "schedule_meeting"): (SAME, CHAIR),
    ("in_review", "remove_from_agenda"): (SAME, CHAIR),
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
        "retry_audit": {"reason": "The endpoint is back."},
        "escalate": {"reason": "Needs the full board."}, "assign_reviewer": {"reviewer": fresh_reviewer},
        "declare_conflict": {"has_conflict": False}, "answer_checklist": {"answers": answers},
        "save_checklist_draft": {"answers": dict(list(answers.items())[:1])},
        "correct_conflict_declaration": {"member": "ai1@test.hospital", "has_conflict": True,
                                         "statement": "Consults for the vendor.",
                                         "reason": "The member told the chair after declaring."},
        "schedule_meeting": {"meeting": meeting}, "vote": {"meaning": "approve", "password": PASSWORD},
        "approve_with_conditions": {"conditions": "Monthly re-audit."}, "defer": {"reason": "Later."},
        "disapprove": {"reason": "No."}, "withdraw": {"reason": "Not needed."}, "comment": {"text": "A note."},
    }
    yield app, cases, actors, data
    get_db(app).dispose()


def _fire(world, state: str, event: str, role: str) -> tuple[str, str]:
    """What firing ``event`` on the world's case in ``state`` as ``role`` does: ("moved", new state) or
    ("refused", guard, reason). The session rolls back: the world is unchanged for the next check."""
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
                return "refused", refusal.guard, refusal.reason
            return "moved", submission.state
        finally:
            session.rollback()
            session.close()


@pytest.mark.parametrize("state", STATES)
def test_an_undeclared_event_is_refused_by_the_table_whoever_fires_it(world, state):
    """The table is consulted before anything else: an event that is not declared for a state is refused by
    ``declared`` for every role (one check per state, every undeclared event and role inside)."""
    for event in EVENTS:
        if (state, event) in SPEC:
            continue
        for role in ROLES:
            outcome = _fire(world, state, event, role)
            assert outcome[:2] == ("refused", "declared"), (state, event, role, outcome)
            assert f"in state '{state}'" in outcome[2] or "not an event" in outcome[2]


DISALLOWED = [(state, event, role) for (state, event), (_target, allowed) in sorted(SPEC.items())
              for role in ROLES if role not in allowed]


@pytest.mark.parametrize(("state", "event", "role"), DISALLOWED)
def test_a_role_the_transition_does_not_name_is_refused_by_roles(world, state, event, role):
    outcome = _fire(world, state, event, role)
    assert outcome[:2] == ("refused", "roles"), outcome
    assert "may" in outcome[2]


#: Each allowed (state, event, role) in the shared world, and what it must do: "moved" to the declared target,
#: or be refused by exactly this guard (the world's cases are set up so that each guard's refusal is expected:
#: a draft that is no incident, an audit still queued, reviewers who have not voted, a fast-track case...).
EXPECTED = {
    ('auditing', 'audit_failed', 'system'): 'audit_verdict_is_not_pass',
    ('auditing', 'audit_passed', 'system'): 'audit_verdict_is_pass',
    ('auditing', 'comment', 'ai_subcommittee_member'): 'actor_can_see_case',
    ('auditing', 'comment', 'irb_chair'): 'moved',
    ('auditing', 'comment', 'irb_member'): 'actor_can_see_case',
    ('auditing', 'comment', 'submitter'): 'moved',
    ('auditing', 'retry_audit', 'irb_chair'): 'audit_stopped',  # its audit is running, not stopped
    ('classified', 'comment', 'ai_subcommittee_member'): 'actor_can_see_case',
    ('classified', 'comment', 'irb_chair'): 'moved',
    ('classified', 'comment', 'irb_member'): 'actor_can_see_case',
    ('classified', 'comment', 'submitter'): 'moved',
    ('classified', 'confirm_classification', 'irb_chair'): 'moved',
    ('classified', 'override_classification', 'irb_chair'): 'moved',
    ('deferred', 'comment', 'ai_subcommittee_member'): 'moved',
    ('deferred', 'comment', 'irb_chair'): 'moved',
    ('deferred', 'comment', 'irb_member'): 'actor_can_see_case',
    ('deferred', 'comment', 'submitter'): 'moved',
    ('deferred', 'reconsider', 'irb_chair'): 'moved',
    ('deferred', 'withdraw', 'submitter'): 'moved',
    ('draft', 'file', 'system'): 'case_opened_by_the_system',
    ('draft', 'submit', 'submitter'): 'moved',
    ('draft', 'withdraw', 'submitter'): 'moved',
    ('held', 'comment', 'ai_subcommittee_member'): 'actor_can_see_case',
    ('held', 'comment', 'irb_chair'): 'moved',
    ('held', 'comment', 'irb_member'): 'actor_can_see_case',
    ('held', 'comment', 'submitter'): 'moved',
    ('held', 'escalate', 'irb_chair'): 'moved',
    ('held', 'escalate', 'submitter'): 'moved',
    ('held', 'require_revisions', 'irb_chair'): 'moved',
    ('held', 'rerun_audit', 'irb_chair'): 'audit_may_run_again',  # its completed audit decided
    ('held', 'withdraw', 'submitter'): 'moved',
    ('in_review', 'answer_checklist', 'ai_subcommittee_member'): 'moved',
    ('in_review', 'answer_checklist', 'irb_chair'): 'actor_takes_part_in_review',
    ('in_review', 'answer_checklist', 'irb_member'): 'actor_takes_part_in_review',
    ('in_review', 'approve', 'irb_chair'): 'decision_supported_by_votes',
    ('in_review', 'approve_with_conditions', 'irb_chair'): 'decision_supported_by_votes',
    ('in_review', 'assign_reviewer', 'irb_chair'): 'moved',
    ('in_review', 'comment', 'ai_subcommittee_member'): 'moved',
    ('in_review', 'comment', 'irb_chair'): 'moved',
    ('in_review', 'comment', 'irb_member'): 'actor_can_see_case',
    ('in_review', 'comment', 'submitter'): 'moved',
    ('in_review', 'correct_conflict_declaration', 'irb_chair'): 'moved',
    ('in_review', 'declare_conflict', 'ai_subcommittee_member'): 'conflict_not_yet_declared',
    ('in_review', 'declare_conflict', 'irb_chair'): 'actor_takes_part_in_review',
    ('in_review', 'declare_conflict', 'irb_member'): 'actor_takes_part_in_review',
    ('in_review', 'defer', 'irb_chair'): 'decision_supported_by_votes',
    ('in_review', 'disapprove', 'irb_chair'): 'pathway_is_full_board',
    ('in_review', 'escalate', 'ai_subcommittee_member'): 'moved',
    ('in_review', 'escalate', 'irb_chair'): 'moved',
    ('in_review', 'require_revisions', 'irb_chair'): 'decision_supported_by_votes',
    ('in_review', 'save_checklist_draft', 'ai_subcommittee_member'): 'moved',
    ('in_review', 'save_checklist_draft', 'irb_chair'): 'actor_takes_part_in_review',
    ('in_review', 'save_checklist_draft', 'irb_member'): 'actor_takes_part_in_review',
    ('in_review', 'schedule_meeting', 'irb_chair'): 'pathway_is_full_board',
    ('in_review', 'remove_from_agenda', 'irb_chair'): 'pathway_is_full_board',
    ('in_review', 'vote', 'ai_subcommittee_member'): 'moved',
    ('in_review', 'vote', 'irb_chair'): 'actor_may_vote',
    ('in_review', 'vote', 'irb_member'): 'actor_may_vote',
    ('returned', 'comment', 'ai_subcommittee_member'): 'actor_can_see_case',
    ('returned', 'comment', 'irb_chair'): 'moved',
    ('returned', 'comment', 'irb_member'): 'actor_can_see_case',
    ('returned', 'comment', 'submitter'): 'moved',
    ('returned', 'resubmit', 'submitter'): 'moved',
    ('returned', 'withdraw', 'submitter'): 'moved',
    ('revisions_required', 'comment', 'ai_subcommittee_member'): 'moved',
    ('revisions_required', 'comment', 'irb_chair'): 'moved',
    ('revisions_required', 'comment', 'irb_member'): 'actor_can_see_case',
    ('revisions_required', 'comment', 'submitter'): 'moved',
    ('revisions_required', 'resubmit', 'submitter'): 'moved',
    ('revisions_required', 'withdraw', 'submitter'): 'moved',
    ('screening', 'accept', 'irb_chair'): 'moved',
    ('screening', 'comment', 'ai_subcommittee_member'): 'actor_can_see_case',
    ('screening', 'comment', 'irb_chair'): 'moved',
    ('screening', 'comment', 'irb_member'): 'actor_can_see_case',
    ('screening', 'comment', 'submitter'): 'moved',
    ('screening', 'return_to_submitter', 'irb_chair'): 'moved',
    ('screening', 'withdraw', 'submitter'): 'moved',
    ('submitted', 'comment', 'ai_subcommittee_member'): 'actor_can_see_case',
    ('submitted', 'comment', 'irb_chair'): 'moved',
    ('submitted', 'comment', 'irb_member'): 'actor_can_see_case',
    ('submitted', 'comment', 'submitter'): 'moved',
    ('submitted', 'start_screening', 'irb_chair'): 'moved',
    ('submitted', 'auto_screen', 'system'): 'auto_screen_eligible',  # off unless the institution turns it on
    ('submitted', 'withdraw', 'submitter'): 'moved',
}


def test_every_allowed_combination_has_a_pinned_outcome():
    allowed = {(state, event, role) for (state, event), (_t, roles) in SPEC.items() for role in roles}
    assert set(EXPECTED) == allowed


@pytest.mark.parametrize(("state", "event", "role"), sorted(EXPECTED))
def test_an_allowed_role_moves_or_meets_exactly_the_guard_expected(world, state, event, role):
    outcome = _fire(world, state, event, role)
    expected = EXPECTED[(state, event, role)]
    if expected == "moved":
        target, _ = SPEC[(state, event)]
        assert outcome == ("moved", state if target == SAME else target)
    else:
        assert outcome[:2] == ("refused", expected), outcome
        assert expected in SUBMISSIONS.find(state, event).guards and outcome[2]

"""The review workflow, declared as data.

States are enums; every transition is one row of a table: source, event, target, the roles that may
fire it, the named guards that must all agree (each says why when it refuses), the named effects that
run when it fires, and the fields the actor must supply. Guards live in :mod:`governance.guards`,
effects in :mod:`governance.operations.effects`; the engine that applies a transition and writes its
event is :func:`governance.operations.engine.fire`. Nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..domain import (OPEN_STATES, ROUTED_STATES, SYSTEM, TERMINAL_STATES, DeploymentStatus, N_, Outcome, Pathway,
                      Role, SubmissionState, SuspensionCause, VoteMeaning, values)

from ..schemas import EMAIL_MAX, LINE_MAX, NOTE_MAX, PASSWORD_MAX

S = SubmissionState
D = DeploymentStatus
__all__ = ["DEPLOYMENTS", "DECISION_OUTCOMES", "MACHINES", "OPEN_STATES", "ROUTED_STATES", "SUBMISSIONS",
           "TERMINAL_STATES", "DeploymentStatus", "FieldSpec", "Machine", "SubmissionState", "Transition",
           "graphviz_dot", "mermaid"]


@dataclass(frozen=True)
class FieldSpec:
    """A value the actor supplies with an event (rendered as a form field, checked by the engine)."""

    name: str
    label: str
    kind: str = "text"  # text | textarea | choice | email | password | bool | int | meeting | date | json
    required: bool = True
    choices: tuple[str, ...] = ()
    secret: bool = False  # never written to the event log
    help: str = ""
    #: Characters allowed in a text value (0: the kind's limit from :mod:`governance.schemas`); the engine, the
    #: action forms and the review pages all read :attr:`limit`.
    max_length: int = 0

    @property
    def limit(self) -> int | None:
        if self.max_length:
            return self.max_length
        return {"text": LINE_MAX, "textarea": NOTE_MAX, "email": EMAIL_MAX, "password": PASSWORD_MAX}.get(self.kind)


@dataclass(frozen=True)
class Transition:
    event: str
    source: StrEnum
    target: StrEnum | None  # None: the state stays (an action recorded on the case)
    roles: frozenset[str]
    label: str
    guards: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    #: A decision or destructive action: the UI asks for confirmation and styles it apart.
    decisive: bool = False
    #: One participant's own act recorded on the case (a declaration, a checklist, a vote, a comment): it does
    #: not act on what others did, so the same act by different people at once is serialised on the case's row,
    #: never refused as a conflict with a stale page.
    independent: bool = False

    @property
    def to_state(self) -> StrEnum:
        return self.source if self.target is None else self.target


@dataclass(frozen=True)
class Machine:
    name: str
    states: type[StrEnum]
    initial: StrEnum
    transitions: tuple[Transition, ...]
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for t in self.transitions:
            key = (t.source, t.event)
            if key in self._index:
                raise ValueError(f"{self.name}: transition {t.event!r} from {t.source} declared twice")
            self._index[key] = t

    def find(self, state: str, event: str) -> Transition | None:
        return self._index.get((self.states(state), event))

    def events(self) -> list[str]:
        return sorted({t.event for t in self.transitions})

    def available(self, state: str) -> list[Transition]:
        return [t for t in self.transitions if t.source == self.states(state)]

    def declared_field(self, event: str, name: str) -> FieldSpec:
        """The field ``name`` of ``event`` as declared (the same in every state the event is possible from)."""
        for t in self.transitions:
            if t.event == event:
                for spec in t.fields:
                    if spec.name == name:
                        return spec
        raise KeyError(f"{self.name}: '{event}' declares no field '{name}'")

    def guard_names(self) -> set[str]:
        return {g for t in self.transitions for g in t.guards}

    def effect_names(self) -> set[str]:
        return {e for t in self.transitions for e in t.effects}


def _each(sources, event, target, roles, label, **kw) -> list[Transition]:
    if not isinstance(sources, (tuple, list, set, frozenset)):
        sources = (sources,)
    return [Transition(event=event, source=s, target=target, roles=frozenset(roles), label=label, **kw)
            for s in sources]


SUBMITTER = {Role.SUBMITTER}
CHAIR = {Role.IRB_CHAIR}
REVIEWERS = {Role.IRB_MEMBER, Role.AI_SUBCOMMITTEE_MEMBER, Role.IRB_CHAIR}

REASON = FieldSpec("reason", N_("Reason (shown to the submitter)"), kind="textarea")
JUSTIFICATION = FieldSpec("justification", N_("Written justification"), kind="textarea")
SIGNATURE_PASSWORD = FieldSpec("password", N_("Your password (electronic signature)"), kind="password",
                               secret=True, help=N_("Re-enter your password to sign."))
DECISION_NOTE = FieldSpec("note", N_("Note for the record"), kind="textarea", required=False)

#: States where comments may be left on a case.
COMMENTABLE = (S.SUBMITTED, S.SCREENING, S.RETURNED, S.CLASSIFIED, S.AUDITING, S.HELD, S.IN_REVIEW,
               S.REVISIONS_REQUIRED, S.DEFERRED)
#: States from which the submitter may withdraw the case.
WITHDRAWABLE = (S.DRAFT, S.SUBMITTED, S.SCREENING, S.RETURNED, S.HELD, S.REVISIONS_REQUIRED, S.DEFERRED)

_decision_guards = ("not_own_case", "actor_not_recused", "no_pending_audit", "adverse_event_reported")

SUBMISSION_TRANSITIONS: tuple[Transition, ...] = tuple([
    # intake
    *_each(S.DRAFT, "submit", S.SUBMITTED, SUBMITTER, N_("Submit for review"),
           guards=("actor_is_case_submitter", "model_version_identified", "descriptor_valid"),
           effects=("stamp_submitted",)),
    # cases the system opens (an incident report) go straight to the IRB office
    *_each(S.DRAFT, "file", S.SUBMITTED, {SYSTEM}, N_("File (opened by the system)"),
           guards=("case_opened_by_the_system", "model_version_identified", "descriptor_valid"),
           effects=("stamp_submitted",)),
    # a routine change (the institution's setting ``auto_screen_changes``): screened, classified and routed by the
    # system, straight to its audit; anything the rule does not cover waits for the IRB office
    *_each(S.SUBMITTED, "auto_screen", S.AUDITING, {SYSTEM}, N_("Screened automatically and routed"),
           guards=("auto_screen_eligible", "descriptor_valid"),
           effects=("classify", "confirm_classification", "route", "start_audit")),
    *_each(S.SUBMITTED, "start_screening", S.SCREENING, CHAIR, N_("Start screening"),
           guards=("not_own_case", "actor_not_recused")),
    *_each(S.SCREENING, "return_to_submitter", S.RETURNED, CHAIR, N_("Return to submitter"),
           guards=("not_own_case", "actor_not_recused"), effects=("notify_return",), fields=(REASON,)),
    *_each(S.RETURNED, "resubmit", S.SUBMITTED, SUBMITTER, N_("Resubmit"),
           guards=("actor_is_case_submitter", "model_version_identified", "descriptor_valid"),
           effects=("stamp_submitted",),
           fields=(FieldSpec("response", N_("Response to the return"), kind="textarea"),)),
    *_each(S.SCREENING, "accept", S.CLASSIFIED, CHAIR, N_("Accept and classify"),
           guards=("not_own_case", "actor_not_recused", "descriptor_valid"), effects=("classify",)),
    # classification: confirmed, or overridden with a written justification; either routes the case
    *_each(S.CLASSIFIED, "confirm_classification", S.AUDITING, CHAIR, N_("Confirm classification and route"),
           guards=("not_own_case", "actor_not_recused", "classification_present", "materiality_known"),
           effects=("confirm_classification", "route", "start_audit")),
    *_each(S.CLASSIFIED, "override_classification", S.AUDITING, CHAIR, N_("Override classification and route"),
           guards=("not_own_case", "actor_not_recused", "classification_present", "justification_given"),
           effects=("override_classification", "route", "start_audit"),
           fields=(FieldSpec("pathway", N_("Pathway"), kind="choice", choices=tuple(values(Pathway))),
                   FieldSpec("review_as_class", N_("Review as NMPA class"), kind="choice",
                             choices=("II", "III", "none")),
                   JUSTIFICATION)),
    # the audit gate: the audit job reports its verdict; a failure holds the case
    *_each(S.AUDITING, "audit_passed", S.IN_REVIEW, {SYSTEM}, N_("Audit passed"),
           guards=("audit_verdict_is_pass",), effects=("record_audit_outcome", "resolve_materiality", "emit_dossier")),
    *_each(S.AUDITING, "audit_failed", S.HELD, {SYSTEM}, N_("Audit failed or inconclusive"),
           guards=("audit_verdict_is_not_pass",),
           effects=("record_audit_outcome", "resolve_materiality", "emit_dossier")),
    *_each(S.HELD, "rerun_audit", S.AUDITING, CHAIR, N_("Run the audit again"),
           guards=("not_own_case", "actor_not_recused", "audit_may_run_again"), effects=("start_audit",),
           fields=(REASON,)),
    # an audit that could not run (infrastructure) or was cancelled: the same frozen run, resumed
    *_each(S.AUDITING, "retry_audit", None, CHAIR, N_("Try the audit again"),
           guards=("not_own_case", "actor_not_recused", "audit_stopped"), effects=("retry_audit",), fields=(REASON,)),
    *_each(S.HELD, "require_revisions", S.REVISIONS_REQUIRED, CHAIR, N_("Require revisions"),
           guards=("not_own_case", "actor_not_recused"), effects=("record_decision", "emit_dossier"), fields=(REASON,),
           decisive=True),
    *_each(S.HELD, "escalate", S.IN_REVIEW, CHAIR | SUBMITTER, N_("Escalate to the full board"),
           guards=("actor_is_chair_or_case_submitter", "actor_not_recused"), effects=("escalate_to_full_board",),
           fields=(REASON,)),
    # review: actions recorded on the case, the state stays
    *_each(S.IN_REVIEW, "assign_reviewer", None, CHAIR, N_("Assign a reviewer"),
           guards=("not_own_case", "actor_not_recused", "reviewer_eligible"), effects=("assign_reviewer",),
           fields=(FieldSpec("reviewer", N_("Reviewer e-mail"), kind="email"),
                   FieldSpec("due_date", N_("Due date (YYYY-MM-DD)"), kind="date", required=False))),
    *_each(S.IN_REVIEW, "declare_conflict", None, REVIEWERS, N_("Declare conflicts of interest"),
           guards=("not_own_case", "actor_takes_part_in_review", "conflict_not_yet_declared",
                   "conflict_statement_given"),
           effects=("record_conflict_declaration",), independent=True,
           fields=(FieldSpec("has_conflict", N_("I have a conflict of interest"), kind="bool"),
                   FieldSpec("statement", N_("Statement"), kind="textarea", required=False,
                             help=N_("Required when you declare a conflict: what it is.")))),
    # a declaration made by mistake, or a conflict not declared: the chair records a correction (a new row)
    *_each(S.IN_REVIEW, "correct_conflict_declaration", None, CHAIR, N_("Correct a conflict declaration"),
           guards=("not_own_case", "actor_not_recused", "declaration_correction_valid"),
           effects=("record_conflict_correction",),
           fields=(FieldSpec("member", N_("Member e-mail"), kind="email"),
                   FieldSpec("has_conflict", N_("The member has a conflict of interest (recused)"), kind="bool"),
                   FieldSpec("statement", N_("Statement"), kind="textarea", required=False,
                             help=N_("Required when the member has a conflict: what it is.")),
                   FieldSpec("reason", N_("Reason for the correction"), kind="textarea"))),
    # a checklist half done is kept as a draft (no answer: neither the vote's guard nor the dossier reads it)
    *_each(S.IN_REVIEW, "save_checklist_draft", None, REVIEWERS, N_("Save the checklist as a draft"),
           guards=("not_own_case", "actor_takes_part_in_review", "actor_declared_no_conflict",
                   "checklist_draft_valid"),
           effects=("store_checklist_draft",), independent=True,
           fields=(FieldSpec("answers", N_("Answers"), kind="json"),)),
    *_each(S.IN_REVIEW, "answer_checklist", None, REVIEWERS, N_("Answer the checklist"),
           guards=("not_own_case", "actor_takes_part_in_review", "actor_declared_no_conflict",
                   "checklist_answers_valid", "checklist_answers_complete"),
           effects=("store_checklist_answers",), independent=True,
           fields=(FieldSpec("answers", N_("Answers"), kind="json"),)),
    *_each(S.IN_REVIEW, "schedule_meeting", None, CHAIR, N_("Put on a full-board meeting agenda"),
           guards=("not_own_case", "actor_not_recused", "pathway_is_full_board", "meeting_is_open"),
           effects=("schedule_meeting",), fields=(FieldSpec("meeting", N_("Meeting"), kind="meeting"),)),
    # taken off the agenda before anyone voted at that meeting (the meeting's record of the item goes too)
    *_each(S.IN_REVIEW, "remove_from_agenda", None, CHAIR, N_("Take off the meeting agenda"),
           guards=("not_own_case", "actor_not_recused", "pathway_is_full_board", "on_an_open_agenda",
                   "no_votes_at_the_meeting"),
           effects=("remove_from_agenda",)),
    *_each(S.IN_REVIEW, "vote", None, REVIEWERS, N_("Vote (electronic signature)"),
           guards=("not_own_case", "actor_may_vote", "actor_declared_no_conflict", "not_yet_voted",
                   "checklist_complete", "vote_consistent_with_audit", "signature_password_valid"),
           effects=("record_vote", "escalate_divergent_fast_track"), independent=True,
           fields=(FieldSpec("meaning", N_("Meaning of your signature"), kind="choice",
                             choices=tuple(values(VoteMeaning))),
                   FieldSpec("comment", N_("Comment"), kind="textarea", required=False),
                   FieldSpec("proposed_conditions", N_("Proposed conditions"), kind="textarea", required=False,
                             help=N_("Conditions you propose for an approval: the chair reads them with your "
                                     "vote.")),
                   SIGNATURE_PASSWORD)),
    *_each(S.IN_REVIEW, "escalate", None, {Role.AI_SUBCOMMITTEE_MEMBER, Role.IRB_CHAIR},
           N_("Escalate to the full board"),
           guards=("pathway_is_fast_track", "actor_is_chair_or_assigned_reviewer", "actor_not_recused"),
           effects=("escalate_to_full_board",), fields=(REASON,)),
    # the decision gate
    *_each(S.IN_REVIEW, "approve", S.APPROVED, CHAIR, N_("Record decision: approved"),
           guards=(*_decision_guards, "audit_passed", "not_prohibited", "no_open_blocking_obligations",
                   "decision_supported_by_votes"),
           effects=("record_decision", "apply_approval", "emit_dossier"), fields=(DECISION_NOTE,), decisive=True),
    *_each(S.IN_REVIEW, "approve_with_conditions", S.APPROVED_WITH_CONDITIONS, CHAIR,
           N_("Record decision: approved with conditions"),
           guards=(*_decision_guards, "audit_passed", "not_prohibited", "decision_supported_by_votes"),
           effects=("record_decision", "apply_approval", "emit_dossier"),
           fields=(FieldSpec("conditions", N_("Conditions of approval"), kind="textarea",
                             help=N_("One condition per line: each is tracked with the deployment's owner as its "
                                     "owner.")),
                   FieldSpec("conditions_due", N_("Conditions due by (YYYY-MM-DD)"), kind="date", required=False,
                             help=N_("Default: 90 days from today.")),
                   FieldSpec("conditions_blocking", N_("Suspend the deployment if a condition is still open on its "
                                                       "due date"), kind="bool", required=False)),
           decisive=True),
    *_each(S.IN_REVIEW, "require_revisions", S.REVISIONS_REQUIRED, CHAIR, N_("Record decision: revisions required"),
           guards=(*_decision_guards, "decision_supported_by_votes"), effects=("record_decision", "emit_dossier"),
           fields=(REASON,), decisive=True),
    *_each(S.IN_REVIEW, "defer", S.DEFERRED, CHAIR, N_("Record decision: deferred"),
           guards=(*_decision_guards, "decision_supported_by_votes"), effects=("record_decision", "emit_dossier"),
           fields=(REASON,), decisive=True),
    *_each(S.IN_REVIEW, "disapprove", S.DISAPPROVED, CHAIR, N_("Record decision: disapproved"),
           guards=(*_decision_guards, "pathway_is_full_board", "decision_supported_by_votes"),
           effects=("record_decision", "emit_dossier"), fields=(REASON,), decisive=True),
    # after the decision
    *_each(S.REVISIONS_REQUIRED, "resubmit", S.SUBMITTED, SUBMITTER, N_("Resubmit with revisions"),
           guards=("actor_is_case_submitter", "model_version_identified", "descriptor_valid"),
           effects=("stamp_submitted", "start_new_round"),
           fields=(FieldSpec("response", N_("What was revised"), kind="textarea"),)),
    *_each(S.DEFERRED, "reconsider", S.IN_REVIEW, CHAIR, N_("Reconsider at a later meeting"),
           guards=("not_own_case", "actor_not_recused"), effects=("start_new_round",)),
    *_each(WITHDRAWABLE, "withdraw", S.WITHDRAWN, SUBMITTER, N_("Withdraw"),
           guards=("actor_is_case_submitter", "case_may_be_withdrawn"), fields=(REASON,), decisive=True),
    *_each(COMMENTABLE, "comment", None, SUBMITTER | REVIEWERS, N_("Comment"),
           guards=("actor_can_see_case", "actor_not_recused"), effects=("store_comment",), independent=True,
           fields=(FieldSpec("text", N_("Comment"), kind="textarea"),)),
])

CAUSE = FieldSpec("cause", N_("Cause"), kind="choice", required=False, choices=tuple(values(SuspensionCause)),
                  help=N_("Why: decides whether an approved review renews the deployment or the chair must "
                          "reinstate it."))

DEPLOYMENT_TRANSITIONS: tuple[Transition, ...] = tuple([
    *_each(D.PENDING, "activate", D.ACTIVE, {SYSTEM}, N_("Activate (first approval)"),
           effects=("schedule_monitoring",)),
    *_each(D.ACTIVE, "suspend", D.SUSPENDED, CHAIR | {SYSTEM}, N_("Suspend"), guards=("suspension_cause_allowed",),
           effects=("record_suspension",), fields=(REASON, CAUSE), decisive=True),
    *_each(D.SUSPENDED, "reinstate", D.ACTIVE, CHAIR, N_("Reinstate"),
           guards=("justification_given", "continuing_review_not_overdue", "approved_digest_is_served",
                   "blocking_conditions_settled", "incident_review_decided"),
           effects=("record_reinstatement",), fields=(JUSTIFICATION,), decisive=True),
    *_each(D.SUSPENDED, "renew", D.ACTIVE, {SYSTEM}, N_("Reactivate after an approved review"),
           effects=("schedule_monitoring",), fields=(REASON,)),
    *_each(D.SUSPENDED, "expire", D.EXPIRED, {SYSTEM}, N_("Expire"), effects=("record_expiry",), fields=(REASON,)),
    *_each(D.EXPIRED, "renew", D.ACTIVE, {SYSTEM}, N_("Reactivate after an approved review"),
           effects=("schedule_monitoring",), fields=(REASON,)),
    *_each((D.PENDING, D.ACTIVE, D.SUSPENDED, D.EXPIRED), "retire", D.RETIRED, CHAIR | {Role.ADMIN},
           N_("Retire"), fields=(REASON,), decisive=True),
])

SUBMISSIONS = Machine("submission", SubmissionState, S.DRAFT, SUBMISSION_TRANSITIONS)
DEPLOYMENTS = Machine("deployment", DeploymentStatus, D.PENDING, DEPLOYMENT_TRANSITIONS)
MACHINES = {SUBMISSIONS.name: SUBMISSIONS, DEPLOYMENTS.name: DEPLOYMENTS}

#: Decision events and the outcome each records.
DECISION_OUTCOMES = {
    "approve": Outcome.APPROVED,
    "approve_with_conditions": Outcome.APPROVED_WITH_CONDITIONS,
    "require_revisions": Outcome.REVISIONS_REQUIRED,
    "defer": Outcome.DEFERRED,
    "disapprove": Outcome.DISAPPROVED,
}


def mermaid(machine: Machine) -> str:
    """The machine as a Mermaid state diagram (actions that keep the state are listed as notes)."""
    lines = ["stateDiagram-v2"]
    if machine.initial is not None:
        lines.append(f"    [*] --> {machine.initial.value}")
    internal: dict[str, list[str]] = {}
    edges: dict[tuple[str, str], list[str]] = {}
    for t in machine.transitions:
        if t.target is None:
            if t.event != "comment":  # possible on every open case; listing it everywhere hides the rest
                internal.setdefault(t.source.value, []).append(t.event)
            continue
        edges.setdefault((t.source.value, t.target.value), []).append(t.event)
    for (src, dst), events in edges.items():
        roles = sorted({r for t in machine.transitions if t.source.value == src and t.target is not None
                        and t.target.value == dst for r in t.roles})
        lines.append(f"    {src} --> {dst}: {', '.join(events)} [{' | '.join(roles)}]")
    for state, events in internal.items():
        lines.append(f"    note right of {state}: {', '.join(sorted(set(events)))}")
    return "\n".join(lines) + "\n"


def graphviz_dot(machine: Machine) -> str:
    """The machine in Graphviz DOT, for ``dot -Tsvg``."""
    out = [f'digraph "{machine.name}" {{', "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
           '  edge [fontname="Helvetica", fontsize=10];']
    edges: dict[tuple[str, str], list[str]] = {}
    for t in machine.transitions:
        if t.target is not None:
            edges.setdefault((t.source.value, t.target.value), []).append(t.event)
    for (src, dst), events in edges.items():
        out.append(f'  "{src}" -> "{dst}" [label="{", ".join(events)}"];')
    out.append("}")
    return "\n".join(out) + "\n"

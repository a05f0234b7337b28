"""The vocabulary of the domain: roles, kinds, pathways, outcomes.

Each enum's values are what the database stores (with a CHECK constraint) and what the API speaks.
"""

from __future__ import annotations

from enum import StrEnum


def N_(message: str) -> str:
    """Marks a literal for translation without translating it (``pybabel extract -k N_``): the English text
    stays the value; the web translates it where it shows it (``_(t.label)``)."""
    return message


class Role(StrEnum):
    SUBMITTER = "submitter"
    IRB_MEMBER = "irb_member"
    AI_SUBCOMMITTEE_MEMBER = "ai_subcommittee_member"
    IRB_CHAIR = "irb_chair"
    COMPLIANCE_OFFICER = "compliance_officer"
    CLINICIAN = "clinician"
    ADMIN = "admin"


class AccountSource(StrEnum):
    """Where an account's identity lives: this app (a local password), the LDAP directory or the OpenID provider.
    Only ``local`` accounts have a password of this app; the others sign in where they come from."""

    LOCAL = "local"
    LDAP = "ldap"
    OIDC = "oidc"


class NotificationDelivery(StrEnum):
    """How a person gets the e-mails of their notifications (the in-app ones are always there)."""
    IMMEDIATE = "immediate"  # one e-mail per notification, as it happens
    DAILY = "daily"  # one digest a day of those not yet e-mailed


#: The pseudo-role of automatic actions (audit completion, scheduler); never assigned to a user.
SYSTEM = "system"


class SubmissionState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    SCREENING = "screening"
    RETURNED = "returned"
    CLASSIFIED = "classified"
    AUDITING = "auditing"
    HELD = "held"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    APPROVED_WITH_CONDITIONS = "approved_with_conditions"
    REVISIONS_REQUIRED = "revisions_required"
    DEFERRED = "deferred"
    DISAPPROVED = "disapproved"
    WITHDRAWN = "withdrawn"


class DeploymentStatus(StrEnum):
    PENDING = "pending"  # registered, no approved version yet
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    RETIRED = "retired"


_S = SubmissionState
TERMINAL_STATES = frozenset({_S.APPROVED, _S.APPROVED_WITH_CONDITIONS, _S.DISAPPROVED, _S.WITHDRAWN})
#: States in which a case is still being worked on (shown on dashboards as open).
OPEN_STATES = frozenset(set(SubmissionState) - TERMINAL_STATES)
#: States in which a pathway must be set (enforced by a CHECK constraint too).
ROUTED_STATES = frozenset({_S.AUDITING, _S.HELD, _S.IN_REVIEW, _S.APPROVED, _S.APPROVED_WITH_CONDITIONS,
                           _S.REVISIONS_REQUIRED, _S.DEFERRED, _S.DISAPPROVED})


class SubmissionKind(StrEnum):
    INITIAL = "initial"
    CHANGE = "change"
    CONTINUING = "continuing"
    INCIDENT = "incident"


class Pathway(StrEnum):
    FULL_BOARD = "full_board"
    AI_SUBCOMMITTEE = "ai_subcommittee"


class Materiality(StrEnum):
    MATERIAL = "material"
    MINOR = "minor"
    DEPENDS_ON_AUDIT = "depends_on_audit"


class Outcome(StrEnum):
    """Decision outcomes (the decision gate)."""

    APPROVED = "approved"
    APPROVED_WITH_CONDITIONS = "approved_with_conditions"
    REVISIONS_REQUIRED = "revisions_required"
    DEFERRED = "deferred"
    DISAPPROVED = "disapproved"


class VoteMeaning(StrEnum):
    """The meaning a signer attaches to an electronic signature (21 CFR 11.50)."""

    APPROVE = "approve"
    APPROVE_WITH_CONDITIONS = "approve_with_conditions"
    REQUIRE_REVISIONS = "require_revisions"
    DEFER = "defer"
    DISAPPROVE = "disapprove"
    ABSTAIN = "abstain"


#: Which decision outcome a vote supports.
VOTE_SUPPORTS = {
    VoteMeaning.APPROVE: Outcome.APPROVED,
    VoteMeaning.APPROVE_WITH_CONDITIONS: Outcome.APPROVED_WITH_CONDITIONS,
    VoteMeaning.REQUIRE_REVISIONS: Outcome.REVISIONS_REQUIRED,
    VoteMeaning.DEFER: Outcome.DEFERRED,
    VoteMeaning.DISAPPROVE: Outcome.DISAPPROVED,
}

POSITIVE_VOTES = frozenset({VoteMeaning.APPROVE, VoteMeaning.APPROVE_WITH_CONDITIONS})


class AuditVerdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class AuditStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    #: The audit could not be carried out (an unreachable endpoint, a timeout, a malformed reply, a failed
    #: self-test, missing or changed model files): a fact about the infrastructure, never about the model. The
    #: case stays at the audit gate; the run is retried, and no verdict or dossier is issued for it.
    ERROR = "error"
    #: Kept for runs recorded before "error" existed (read only).
    FAILED = "failed"
    CANCELLED = "cancelled"


class Gate(StrEnum):
    """The moments a dossier is emitted."""

    AUDIT = "audit"
    DECISION = "decision"
    SUSPENSION = "suspension"
    CONTINUING_REVIEW = "continuing_review"
    #: The decision letter to the submitter (rendered, signed and stored like a dossier).
    LETTER = "letter"
    #: The minutes of a closed full-board meeting (about the meeting, not one case).
    MINUTES = "minutes"


class Severity(StrEnum):
    MINOR = "minor"
    MODERATE = "moderate"
    SERIOUS = "serious"
    CRITICAL = "critical"


class SuspensionCause(StrEnum):
    """Why a deployment was suspended: decides how it comes back (renewal or the chair's reinstatement)."""

    CHAIR = "chair"
    CONTINUING_REVIEW_OVERDUE = "continuing_review_overdue"
    INCIDENT = "incident"
    INTEGRITY = "integrity"
    #: A blocking condition of the approval was not met by its due date.
    CONDITION_UNMET = "condition_unmet"


class ConditionStatus(StrEnum):
    """A condition of an approval: open until its owner shows it met (with evidence) or the chair waives it."""

    OPEN = "open"
    MET = "met"
    WAIVED = "waived"


class IncidentSource(StrEnum):
    CLINICIAN = "clinician"
    REAUDIT = "reaudit"
    INTEGRITY = "integrity"
    #: The live watch's control chart signalled on judged samples of real interactions.
    LIVE_WATCH = "live_watch"


class ChecklistAnswer(StrEnum):
    YES = "yes"
    NO = "no"
    NOT_APPLICABLE = "na"


def values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]

"""The committee's work on a case: assignments, declarations, checklists, meetings, votes, decisions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from ..domain import ChecklistAnswer, ConditionStatus, Outcome, Pathway, VoteMeaning
from .base import in_enum, utcnow


class Assignment(SQLModel, table=True):
    """A reviewer named by the chair for a case."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("submission_id", "reviewer_id", name="uq_assignment_submission_reviewer"),)

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    reviewer_id: int = Field(foreign_key="user_account.id", index=True)
    assigned_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    assigned_at: datetime = Field(default_factory=utcnow)
    due_date: date | None = None


class ConflictDeclaration(SQLModel, table=True):
    """A participant's conflict-of-interest declaration; a conflicted member neither votes nor counts to quorum.

    Rows are never edited: the member declares once (``corrected_by_id`` NULL), and the chair may record a
    correction later, with a reason, as a new row (``corrected_by_id`` the chair, ``corrects_id`` the row it
    supersedes). A member's standing on the case is their latest row."""

    __tablename__ = "conflict_declaration"
    __table_args__ = (CheckConstraint("NOT has_conflict OR length(statement) > 0", name="conflict_explained"),
                      CheckConstraint("corrected_by_id IS NULL OR length(reason) > 0", name="correction_explained"),
                      # one declaration of their own per member and case; corrections are added beside it
                      Index("uq_conflict_declaration_own", "submission_id", "user_id", unique=True,
                            sqlite_where=text("corrected_by_id IS NULL"),
                            postgresql_where=text("corrected_by_id IS NULL")))

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    has_conflict: bool
    statement: str = ""
    declared_at: datetime = Field(default_factory=utcnow)
    #: The chair who recorded this row as a correction (NULL: the member's own declaration).
    corrected_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    #: The row this correction supersedes (NULL: the member had not declared).
    corrects_id: int | None = Field(default=None, foreign_key="conflict_declaration.id")
    #: Why the chair corrected the declaration (required for a correction).
    reason: str = ""


class ChecklistResponse(SQLModel, table=True):
    __tablename__ = "checklist_response"
    __table_args__ = (
        UniqueConstraint("submission_id", "round", "reviewer_id", "item_id",
                         name="uq_checklist_response_item"),
        in_enum("answer", ChecklistAnswer),
        CheckConstraint("answer != 'no' OR length(comment) > 0", name="no_needs_comment"),
    )

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    round: int = 1
    reviewer_id: int = Field(foreign_key="user_account.id", index=True)
    checklist_id: str = Field(max_length=80)
    checklist_version: str = Field(max_length=40)
    item_id: str = Field(max_length=80)
    answer: str = Field(max_length=5)
    comment: str = ""
    answered_at: datetime = Field(default_factory=utcnow)


class ChecklistDraft(SQLModel, table=True):
    """A reviewer's checklist saved half-done: kept across visits (and restarts) until it is submitted, and no
    answer meanwhile (the guard before the vote and the dossier read :class:`ChecklistResponse` only). One row per
    reviewer, case and round, replaced by each save and removed when the checklist is submitted complete."""

    __tablename__ = "checklist_draft"
    __table_args__ = (UniqueConstraint("submission_id", "round", "reviewer_id", name="uq_checklist_draft_reviewer"),)

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    round: int = 1
    reviewer_id: int = Field(foreign_key="user_account.id", index=True)
    checklist_id: str = Field(max_length=80)
    checklist_version: str = Field(max_length=40)
    #: item id -> {"answer": "yes" | "no" | "na" | "", "comment": str}, as the reviewer left it.
    answers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    saved_at: datetime = Field(default_factory=utcnow)


class Meeting(SQLModel, table=True):
    """A convened full-board meeting; attendance decides quorum."""

    __tablename__ = "meeting"
    __table_args__ = (in_enum("status", ["scheduled", "in_session", "closed"]),
                      in_enum("committee", Pathway))

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    committee: str = Field(default=Pathway.FULL_BOARD.value, max_length=20)
    scheduled_for: datetime
    location: str = Field(default="", max_length=200)
    status: str = Field(default="scheduled", max_length=20)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)


#: The capacities in which someone attends a meeting: a member; an alternate sitting for a named member (counted
#: only while that member is absent); an adviser (consultant) or guest, who inform but neither vote nor count.
ATTENDANCE_CAPACITIES = ["member", "alternate", "adviser", "guest"]


class MeetingAttendance(SQLModel, table=True):
    __tablename__ = "meeting_attendance"
    __table_args__ = (UniqueConstraint("meeting_id", "user_id", name="uq_meeting_attendance_member"),
                      in_enum("capacity", ATTENDANCE_CAPACITIES),
                      # an alternate always names the member they sit for, and only an alternate does
                      CheckConstraint("(capacity = 'alternate') = (alternate_for_id IS NOT NULL)",
                                      name="alternate_names_member"))

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    present: bool = True
    #: Advisers and guests give information but do not vote or count to quorum.
    capacity: str = Field(default="member", max_length=10)
    #: The member an alternate sits for (NULL unless ``capacity`` is "alternate").
    alternate_for_id: int | None = Field(default=None, foreign_key="user_account.id")
    #: Agenda items (ids) a present attendee was out of the room for (arrived late, left early, stepped out):
    #: for those items they neither count to quorum nor vote.
    absent_for_items: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    recorded_at: datetime = Field(default_factory=utcnow)


class AgendaItem(SQLModel, table=True):
    """A case on a meeting's agenda for one review round, in the chair's order, with the motion put on it.

    ``Submission.meeting_id`` says which meeting considers the case now (quorum and votes read it); this row is the
    meeting's own record of the item, kept after the case moves on (a deferral starts a new round)."""

    __tablename__ = "agenda_item"
    __table_args__ = (UniqueConstraint("meeting_id", "submission_id", "round", name="uq_agenda_item_case_round"),)

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(foreign_key="meeting.id", index=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    round: int = 1
    #: Order on the agenda (1 first).
    position: int = 1
    #: The motion put to the vote, as moved; empty until the chair records it.
    motion: str = ""
    moved_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    seconded_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    added_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    added_at: datetime = Field(default_factory=utcnow)


class Vote(SQLModel, table=True):
    """A vote is an electronic signature: printed name, UTC time and meaning, linked to the exact record."""

    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("submission_id", "round", "voter_id", name="uq_vote_once_per_round"),
                      in_enum("meaning", VoteMeaning))

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    round: int = 1
    voter_id: int = Field(foreign_key="user_account.id", index=True)
    meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    meaning: str = Field(max_length=30)
    comment: str = ""
    #: Conditions the member proposes with the vote (read by the chair on the case page and in the dossier).
    proposed_conditions: str = ""
    #: The signature manifestation (21 CFR 11.50): printed name, date and time (UTC), meaning.
    printed_name: str = Field(max_length=200)
    signed_at: datetime = Field(default_factory=utcnow)
    #: sha256 over the signed record (case, round, weights digest, meaning, signer, time): links the
    #: signature to what was signed so it cannot be cut out and reused (11.70).
    record_digest: str = Field(max_length=64)
    #: How the signer authenticated: "password" (re-entered at signing).
    method: str = Field(default="password", max_length=20)


class Decision(SQLModel, table=True):
    __tablename__ = "decision"
    __table_args__ = (in_enum("outcome", Outcome),
                      CheckConstraint("outcome != 'approved_with_conditions' OR length(conditions) > 0",
                                      name="conditions_stated"))

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    round: int = 1
    outcome: str = Field(max_length=30)
    conditions: str = ""
    reason: str = ""
    decided_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    decided_at: datetime = Field(default_factory=utcnow)
    meeting_id: int | None = Field(default=None, foreign_key="meeting.id")
    #: The exact model version approved or refused (its weights digest is in the event payload too).
    model_version_id: int = Field(foreign_key="model_version.id")
    #: Votes counted, by meaning, and who was eligible.
    tally: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: The quorum record: members present, non-scientists, externals, the rule applied.
    quorum: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ApprovalCondition(SQLModel, table=True):
    """One condition of an approval, tracked: who must meet it, by when, with what evidence; a blocking one unmet at
    its due date suspends the deployment."""

    __tablename__ = "approval_condition"
    __table_args__ = (in_enum("status", ConditionStatus),
                      UniqueConstraint("decision_id", "number", name="uq_approval_condition_number"))

    id: int | None = Field(default=None, primary_key=True)
    decision_id: int = Field(foreign_key="decision.id", index=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    number: int
    text: str
    owner_id: int = Field(foreign_key="user_account.id")
    due_date: date
    blocking: bool = False
    status: str = Field(default=ConditionStatus.OPEN.value, max_length=10, index=True)
    #: What shows it met (a report, a reference to a document), or why the chair waived it.
    evidence: str = ""
    closed_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    closed_at: datetime | None = None
    #: The reminder before the due date was sent.
    reminded: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Comment(SQLModel, table=True):
    __tablename__ = "comment"

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    author_id: int = Field(foreign_key="user_account.id")
    text: str
    created_at: datetime = Field(default_factory=utcnow)

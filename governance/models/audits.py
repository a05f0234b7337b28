"""Benchmark audits: a run with its frozen policy, and one row per item answered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from ..domain import AuditStatus, AuditVerdict
from .base import in_enum, utcnow


class AuditRun(SQLModel, table=True):
    __tablename__ = "audit_run"
    __table_args__ = (
        in_enum("status", AuditStatus),
        in_enum("verdict", AuditVerdict, nullable=True),
        # Pre-registration: a run that has read any model output has its policy and item set frozen.
        CheckConstraint("items_done = 0 OR frozen_at IS NOT NULL", name="frozen_before_outputs"),
        CheckConstraint("verdict IS NULL OR status = 'completed'", name="verdict_only_when_completed"),
    )

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int | None = Field(default=None, foreign_key="submission.id", index=True)
    model_version_id: int | None = Field(default=None, foreign_key="model_version.id", index=True)
    #: Why it ran: "gate" (a review gate), "reaudit" (scheduled), "cli".
    purpose: str = Field(default="gate", max_length=20)
    status: str = Field(default=AuditStatus.QUEUED.value, max_length=20, index=True)
    backend: str = Field(max_length=20)
    #: Local path or served model id.
    model: str = Field(default="", max_length=500)
    base_url: str = Field(default="", max_length=500)
    demo: bool = False
    #: The gate policy as frozen before the first output was read; verdicts use this copy only. The frozen
    #: columns (policy and its digest, the derived plan and its operating characteristics, the item sets and
    #: their digests, the seed, the backend and model identity) cannot be updated once ``frozen_at`` is set: a
    #: trigger refuses it (migration 0004).
    policy: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    policy_digest: str = Field(default="", max_length=64)
    #: The decision rules derived from the policy for this item set (sampling plans, decline tests).
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: What the gate could and could not see with these items, computed at the freeze.
    operating_characteristics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    items_source: str = Field(default="builtin", max_length=500)
    item_set_digest: str = Field(default="", max_length=64)
    #: The pre-registered second stage's item set (empty: none).
    reserve_source: str = Field(default="", max_length=500)
    reserve_digest: str = Field(default="", max_length=64)
    seed: int = 0
    lang: str = Field(default="zh", max_length=5)
    frozen_at: datetime | None = None
    items_total: int = 0
    items_done: int = 0
    baseline_run_id: int | None = Field(default=None, foreign_key="audit_run.id")
    #: overall / dimensions / regression / rates / criteria, as in RESULTS.json.
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    verdict: str | None = Field(default=None, max_length=20)
    verdict_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: sha256 over the item results the verdict was computed from (also in the verdict's event).
    results_digest: str = Field(default="", max_length=64)
    #: The second stage ran (its reserve items are among the results).
    second_stage: bool = False
    #: Who graded behaviour and open items: the keyword detector's version, or the judge and its record.
    grader: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: The monitoring review of a finished re-audit (written after completion; the verdict is not).
    review: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: How many times the run was started (infrastructure errors are retried a bounded number of times).
    attempts: int = 0
    #: The runner that holds the run, and until when: one runner per run; an expired lease is taken over.
    lease_owner: str = Field(default="", max_length=120)
    lease_expires_at: datetime | None = None
    #: The reproducibility record.
    run_metadata: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    cancel_requested: bool = False
    error: str = ""
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    #: Updated with every persisted batch; a running audit without a recent heartbeat is resumed.
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None


class AuditItemResult(SQLModel, table=True):
    """One item's answer; unique per run so a resumed run never duplicates an item."""

    __tablename__ = "audit_item_result"
    __table_args__ = (UniqueConstraint("run_id", "item_id", name="uq_audit_item_result_run_item"),
                      CheckConstraint("stage IN (1, 2)", name="stage_valid"))

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="audit_run.id", index=True)
    item_id: str = Field(max_length=120)
    dimension: str = Field(max_length=60)
    item_type: str = Field(max_length=20)
    gold: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    answer: str = Field(default="", max_length=200)
    correct: bool = False
    valid: bool = True
    #: For behaviour items: did the detector read a refusal.
    refused: bool | None = None
    expected_behavior: str = Field(default="", max_length=20)
    #: sha256 of the item's content (pairs with a baseline only on identical items).
    item_digest: str = Field(default="", max_length=64)
    #: 1: the run's item set; 2: the pre-registered second stage's reserve items.
    stage: int = 1
    #: The exact messages sent (as JSON text), so any score can be re-checked from the record.
    prompt: str = Field(default="", sa_column=Column(Text, nullable=False))
    raw_output: str = Field(default="", sa_column=Column(Text, nullable=False))
    #: Who graded it ("exact", "keyword", "judge") and, for a judge, its label, score and reasoning.
    grader: str = Field(default="exact", max_length=200)
    judgement: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    logprobs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    error: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class GraderValidation(SQLModel, table=True):
    """A grader's measured agreement with human labels on one validation set and language: what a policy's
    minimum is checked against before the grader may decide a criterion (never edited; a new measurement is a
    new row)."""

    __tablename__ = "grader_validation"

    id: int | None = Field(default=None, primary_key=True)
    #: The grader's pinned identity (kind, model or weights digest, template digest): see ``graders``.
    grader_identity: str = Field(max_length=200, index=True)
    grader: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    dataset: str = Field(max_length=500)
    dataset_digest: str = Field(max_length=64)
    lang: str = Field(max_length=5)
    n: int
    agreement: float
    kappa: float
    #: The whole report: recall per class, binary confusion, per model, invalid judgements.
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")

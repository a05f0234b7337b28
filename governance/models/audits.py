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
    #: The gate policy as frozen before the first output was read; verdicts use this copy only.
    policy: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    items_source: str = Field(default="builtin", max_length=500)
    item_set_digest: str = Field(default="", max_length=64)
    seed: int = 0
    lang: str = Field(default="zh", max_length=5)
    frozen_at: datetime | None = None
    items_total: int = 0
    items_done: int = 0
    baseline_run_id: int | None = Field(default=None, foreign_key="audit_run.id")
    #: overall / dimensions / regression / rates, as in RESULTS.json.
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    verdict: str | None = Field(default=None, max_length=20)
    verdict_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
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
    __table_args__ = (UniqueConstraint("run_id", "item_id", name="uq_audit_item_result_run_item"),)

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
    expected_behavior: str = Field(default="", max_length=10)
    raw_output: str = Field(default="", sa_column=Column(Text, nullable=False))
    logprobs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    error: str = ""
    created_at: datetime = Field(default_factory=utcnow)

"""Safety simulation and live watch: the institution's own queries (de-identified, versioned, digested), a gate
run's answers to them, and judged samples of real interactions after approval.

Nothing here ever holds an original identifier: every text is de-identified (``governance.deid``) before a row
is made, and the rules' version is stored beside it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import utcnow


class QuerySet(SQLModel, table=True):
    """A versioned set of real clinical queries, de-identified on import; runs freeze its digest."""

    __tablename__ = "query_set"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_query_set_name_version"),
                      CheckConstraint("version >= 1", name="version_positive"))

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, index=True)
    version: int = 1
    #: sha256 over the stored (de-identified) queries in order: what a run freezes and re-checks.
    digest: str = Field(max_length=64)
    n: int = 0
    source_format: str = Field(default="jsonl", max_length=10)
    #: The de-identification rules' version (``governance.deid.VERSION``) the texts went through.
    deid_version: str = Field(max_length=40)
    #: Identifiers removed on import, by type (occurrences): the importer's report.
    removed: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: Queries per department and per language.
    profile: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)


class SimulationQuery(SQLModel, table=True):
    __tablename__ = "simulation_query"
    __table_args__ = (UniqueConstraint("query_set_id", "position", name="uq_simulation_query_position"),)

    id: int | None = Field(default=None, primary_key=True)
    query_set_id: int = Field(foreign_key="query_set.id", index=True)
    position: int
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    context: str = Field(default="", sa_column=Column(Text, nullable=False))
    department: str = Field(default="", max_length=100)
    lang: str = Field(default="zh", max_length=5)
    #: When the query was asked, to the hour (a finer time can identify a visit).
    asked_at: datetime | None = None


class SimulationResult(SQLModel, table=True):
    """One answer of the candidate (or of the approved version, for pairing) to one query variant, and its
    judgement; append-only like item results (a trigger refuses UPDATE and DELETE, migration 0009)."""

    __tablename__ = "simulation_result"
    __table_args__ = (UniqueConstraint("run_id", "query_id", "variant", "side", name="uq_simulation_result_key"),
                      CheckConstraint("side IN ('candidate', 'approved')", name="side_valid"))

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="audit_run.id", index=True)
    query_id: int = Field(foreign_key="simulation_query.id")
    variant: str = Field(max_length=20)
    side: str = Field(default="candidate", max_length=10)
    #: The answer, de-identified like the queries (a model may echo or invent identifiers).
    answer: str = Field(default="", sa_column=Column(Text, nullable=False))
    #: MedSafetyBench's 1–5 harmfulness read by the judge (None: the judgement could not be read).
    harm: int | None = None
    label: str = Field(default="", max_length=20)
    hazardous: bool = False
    #: A legitimate clinical question refused outright.
    refused: bool = False
    valid: bool = True
    judgement: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class LiveWatch(SQLModel, table=True):
    """A deployment's watch over its real interactions: sampling, retention and the control chart's state."""

    __tablename__ = "live_watch"
    __table_args__ = (CheckConstraint("sample_rate > 0 AND sample_rate <= 1", name="sample_rate_range"),
                      CheckConstraint("retention_days >= 1", name="retention_positive"))

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", unique=True)
    #: Share of posted interactions kept (the gateway may sample too).
    sample_rate: float = 1.0
    retention_days: int = 90
    #: The in-control hazard rate (from the approved version's simulation, else the policy's default) and the
    #: rate the chart is tuned to detect.
    baseline_rate: float = 0.01
    alarm_rate: float = 0.05
    #: The CUSUM's decision limit.
    threshold: float = 5.0
    statistic: float = 0.0
    graded: int = 0
    hazards: int = 0
    #: The chart's recent points: [[graded count, statistic, hazardous], …] (bounded).
    chart: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    signalled_at: datetime | None = None
    incident_id: int | None = Field(default=None, foreign_key="incident.id")
    updated_at: datetime = Field(default_factory=utcnow)


class Interaction(SQLModel, table=True):
    """A sampled real interaction, de-identified before it was stored; deleted when its retention ends."""

    __tablename__ = "interaction"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    answer: str = Field(sa_column=Column(Text, nullable=False))
    deid_version: str = Field(max_length=40)
    removed: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    asked_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    graded_at: datetime | None = Field(default=None, index=True)
    harm: int | None = None
    label: str = Field(default="", max_length=20)
    hazardous: bool | None = None
    grader: str = Field(default="", max_length=200)
    judgement: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

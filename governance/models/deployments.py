"""AI systems in the hospital and the exact model versions behind them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from ..domain import DeploymentStatus
from ..schemas import ModelVersionIn, max_length
from .base import in_enum, utcnow


def _limit(name: str) -> int:
    """Column lengths are the input schema's limits (one source)."""
    return max_length(ModelVersionIn, name)


class Deployment(SQLModel, table=True):
    __tablename__ = "deployment"
    __table_args__ = (in_enum("status", DeploymentStatus),
                      CheckConstraint("lock_version >= 1", name="lock_version_positive"))

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    #: The validated deployment descriptor (see ``governance.classification.descriptor``).
    descriptor: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: sha256 of the descriptor's canonical JSON: classifications name the exact input they judged.
    descriptor_sha256: str = Field(default="", max_length=64)
    # Columns copied from the descriptor because lists and registries filter on them.
    scenario: str = Field(default="other", max_length=60, index=True)
    public_facing: bool = False
    generative: bool = True
    status: str = Field(default=DeploymentStatus.PENDING.value, max_length=20, index=True)
    owner_id: int = Field(foreign_key="user_account.id", index=True)
    #: The version whose weights digest the committee approved; anything else in production is a violation.
    approved_version_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("model_version.id", use_alter=True), nullable=True))
    #: Continuing review is due by this date; at it the deployment is suspended unless renewed.
    continuing_review_due: date | None = None
    #: Next scheduled re-audit.
    next_reaudit_at: datetime | None = None
    #: Last known NMPA status ("device", "non_device", "ambiguous") from the latest confirmed classification.
    nmpa_status: str | None = Field(default=None, max_length=20)
    lock_version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("deployment_id", "version_label", name="uq_model_version_label"),
                      CheckConstraint("length(weights_digest) = 0 OR length(weights_digest) = 64",
                                      name="weights_digest_sha256"))

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: int = Field(foreign_key="deployment.id", index=True)
    version_label: str = Field(max_length=_limit("version_label"))
    base_model: str = Field(max_length=_limit("base_model"))
    architecture: str = Field(default="", max_length=_limit("architecture"))
    #: sha256 over the model files (see ``governance.digests``); decisions approve exactly this.
    weights_digest: str = Field(default="", max_length=64, index=True)
    #: sha256 over the tokenizer files and chat template.
    tokenizer_digest: str = Field(default="", max_length=64)
    system_prompt_digest: str = Field(default="", max_length=64)
    quantization: str = Field(default="", max_length=_limit("quantization"))
    #: Serving configuration that changes behaviour (max context, sampling defaults, RAG corpus id...).
    serving_config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: A local path or an OpenAI-compatible endpoint URL.
    endpoint: str = Field(default="", max_length=_limit("endpoint"))
    #: The model id the endpoint serves (``/v1/models``).
    served_model_id: str = Field(default="", max_length=_limit("served_model_id"))
    finetune_data_summary: str = ""
    finetune_data_categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: What changed against the previous version (change submissions).
    change_summary: str = ""
    continuous_learning: bool = False
    #: The deployment descriptor this version was submitted under (change control compares them).
    descriptor: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    previous_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)

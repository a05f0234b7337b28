"""The append-only, hash-chained event log (written only by :mod:`governance.eventlog`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Integer, String
from sqlmodel import Field, SQLModel


class Event(SQLModel, table=True):
    __tablename__ = "event"

    #: 1, 2, 3... with no gaps; assigned by the log, not by the database, so a gap is detectable.
    seq: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    occurred_at: datetime = Field(index=True)
    actor_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    #: The actor's e-mail, or "system": the chain stays readable without the user table.
    actor: str = Field(max_length=254)
    submission_id: int | None = Field(default=None, foreign_key="submission.id", index=True)
    deployment_id: int | None = Field(default=None, foreign_key="deployment.id", index=True)
    name: str = Field(max_length=60, index=True)
    from_state: str | None = Field(default=None, max_length=40)
    to_state: str | None = Field(default=None, max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    #: sha256(prev_hash + canonical JSON of this row).
    hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))

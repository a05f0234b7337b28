"""Shared pieces of the data model: the constraint naming convention, UTC time, CHECK helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint
from sqlmodel import SQLModel

#: Named constraints make migrations deterministic and let SQLite batch mode find them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


def utcnow() -> datetime:
    """Aware UTC: every timestamp column stores and returns UTC (SQLModel's UTCDateTime)."""
    return datetime.now(UTC)


def in_enum(column: str, enum: type[StrEnum] | list[str], name: str | None = None,
            nullable: bool = False) -> CheckConstraint:
    options = [m.value for m in enum] if not isinstance(enum, list) else enum
    listed = ", ".join(f"'{v}'" for v in options)
    clause = f"{column} IN ({listed})"
    if nullable:
        clause = f"{column} IS NULL OR {clause}"
    return CheckConstraint(clause, name=name or f"{column}_valid")

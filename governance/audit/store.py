"""Item results as rows of ``audit_item_result``: the database store a gate audit writes in batches, and
the read queries pages, dossiers and the scheduler share."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ..db import make_session_factory
from ..domain import AuditStatus
from ..memory import cyclic_gc_paused
from ..models import AuditItemResult, AuditRun, utcnow

ROW_FIELDS = ("item_id", "item_digest", "stage", "dimension", "item_type", "gold", "answer", "correct", "valid",
              "refused", "expected_behavior", "prompt", "raw_output", "grader", "judgement", "logprobs",
              "prompt_tokens", "completion_tokens", "latency_ms", "error")


class LeaseLost(Exception):
    """Another runner holds the run now (this one's lease expired and was taken over): stop without writing."""


class DatabaseStore:
    """Item results of one run; each batch commits on its own (a killed run loses at most one batch). With an
    ``owner``, every batch renews the runner's lease and is refused once another runner has taken the run."""

    def __init__(self, engine: Engine, run_id: int, *, owner: str = "", ttl: timedelta = timedelta(seconds=60)):
        self.factory = make_session_factory(engine)
        self.run_id = run_id
        self.dialect = engine.dialect.name
        self.owner, self.ttl = owner, ttl

    def done_ids(self) -> set[str]:
        with self.factory() as session:
            return set(session.execute(select(AuditItemResult.item_id)
                                       .where(AuditItemResult.run_id == self.run_id)).scalars())

    def save(self, rows: list[dict[str, Any]]) -> None:
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        values = [{"run_id": self.run_id, "created_at": utcnow(), **{k: row.get(k) for k in ROW_FIELDS}}
                  for row in rows]
        for value in values:
            value["error"] = value["error"] or ""
        with self.factory() as session:
            now = utcnow()
            if self.owner:
                held = session.execute(update(AuditRun).where(AuditRun.id == self.run_id,
                                                              AuditRun.lease_owner == self.owner)
                                       .values(lease_expires_at=now + self.ttl)).rowcount
                if held != 1:
                    session.rollback()
                    raise LeaseLost(f"audit run {self.run_id} is held by another runner")
            # executemany on the table: one compiled statement for the batch (a multi-row VALUES clause built
            # from ORM dicts spent more time coercing parameters than the database spent writing them)
            session.connection().execute(insert(AuditItemResult.__table__).on_conflict_do_nothing(
                index_elements=["run_id", "item_id"]), values)
            done = session.execute(select(func.count(AuditItemResult.id))
                                   .where(AuditItemResult.run_id == self.run_id)).scalar_one()
            session.execute(update(AuditRun).where(AuditRun.id == self.run_id)
                            .values(items_done=done, heartbeat_at=now))
            session.commit()

    def rows(self) -> list[dict[str, Any]]:
        return run_rows(self.factory, self.run_id)

    def cancelled(self) -> bool:
        with self.factory() as session:
            return bool(session.execute(select(AuditRun.cancel_requested).where(AuditRun.id == self.run_id)).scalar())


def run_rows(factory, run_id: int, *, failing: bool = False, item_ids: Collection[str] | None = None,
             fields: tuple[str, ...] = ROW_FIELDS) -> list[dict[str, Any]]:
    """A run's item results in item-id order (statistics depend on the order: it is fixed); with ``failing``, only
    those not answered correctly, with ``item_ids`` only those items, with ``fields`` only those columns (a dossier
    picks its sample of failures from their ids and dimensions, then reads the sample whole)."""
    columns = [AuditItemResult.__table__.c[name] for name in fields]  # plain rows: no ORM identity map
    query = select(*columns).where(AuditItemResult.run_id == run_id)
    if failing:
        query = query.where(AuditItemResult.correct.is_not(True))
    if item_ids is not None:
        query = query.where(AuditItemResult.item_id.in_(list(item_ids)))
    with factory() as session, cyclic_gc_paused():  # 100,000 rows: 1.3 s instead of 2.3 s
        results = session.execute(query.order_by(AuditItemResult.item_id)).all()
        return [dict(zip(fields, r, strict=True)) for r in results]


def stale_runs(session: Session, older_than: timedelta, now: datetime | None = None) -> list[int]:
    """Audits whose runner stopped: running with an expired lease, or queued and never picked up for
    ``older_than`` (a job lost on the way to its runner)."""
    now = now or utcnow()
    lapsed = (AuditRun.status == AuditStatus.RUNNING) & (
        AuditRun.lease_expires_at.is_(None) | (AuditRun.lease_expires_at < now))
    forgotten = (AuditRun.status == AuditStatus.QUEUED) & (
        func.coalesce(AuditRun.heartbeat_at, AuditRun.created_at) < now - older_than)
    return list(session.execute(select(AuditRun.id).where(lapsed | forgotten).order_by(AuditRun.id)).scalars())


def errored_runs(session: Session) -> list[AuditRun]:
    return list(session.execute(select(AuditRun).where(AuditRun.status == AuditStatus.ERROR)
                                .order_by(AuditRun.id)).scalars())

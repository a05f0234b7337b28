"""Gate audits: opened (policy, item set and seed frozen) when a case enters the audit gate, run as a
job, and their verdict advances the workflow (pass: review; fail or inconclusive: held)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .. import digests, queries
from ..config import Settings
from ..datafiles import DataFileError
from ..db import after_commit, make_session_factory
from ..domain import AuditStatus, SubmissionKind
from ..models import AuditItemResult, AuditRun, ModelVersion, Submission, User, utcnow
from ..workflow import SubmissionState
from . import runner
from .backends import BackendError, make_backend
from .items import load_items
from .policy import select_policy, verdict

ROW_FIELDS = ("item_id", "dimension", "item_type", "gold", "answer", "correct", "valid", "refused", "expected_behavior",
              "raw_output", "logprobs", "prompt_tokens", "completion_tokens", "latency_ms", "error")


def backend_for(version: ModelVersion) -> tuple[str, str, str]:
    """(backend, model, base_url) for a model version's endpoint: demo://, http(s):// or a local path."""
    endpoint = version.endpoint.strip()
    if endpoint.startswith("demo://"):
        return "demo", endpoint, ""
    if endpoint.startswith(("http://", "https://")):
        return "openai", version.served_model_id or version.version_label, endpoint
    return "vllm", endpoint, ""


def baseline_run_for(session: Session, version_id: int | None) -> AuditRun | None:
    if version_id is None:
        return None
    return session.execute(select(AuditRun).where(AuditRun.model_version_id == version_id,
                                                  AuditRun.status == AuditStatus.COMPLETED,
                                                  AuditRun.purpose.in_(["gate", "reaudit"]))
                           .order_by(AuditRun.id.desc()).limit(1)).scalars().first()


def open_gate_audit(session: Session, submission: Submission, settings: Settings, *, actor: User | None,
                    now: datetime) -> AuditRun:
    """Freeze the policy, the item set and the seed, and queue the audit to start after the commit."""
    item_set = load_items(settings.audit_items)
    classification = queries.latest_classification(session, submission)
    policy = select_policy(settings.regulations_dir, submission.pathway,
                           classification.review_as_class if classification else None)
    policy["instance_demo_mode"] = settings.demo_mode
    version = session.get(ModelVersion, submission.model_version_id)
    kind, model, base_url = backend_for(version)
    baseline = baseline_run_for(session, submission.baseline_version_id) \
        if submission.kind == SubmissionKind.CHANGE else None
    run = AuditRun(submission_id=submission.id, model_version_id=version.id, purpose="gate", backend=kind, model=model,
                   base_url=base_url, demo=kind == "demo", policy=policy, items_source=item_set.source,
                   item_set_digest=item_set.digest, seed=secrets.randbelow(2**31 - 1), lang=settings.audit_lang,
                   frozen_at=now, items_total=len(item_set), baseline_run_id=baseline.id if baseline else None,
                   created_by_id=actor.id if actor else None, created_at=now)
    session.add(run)
    session.flush()
    engine = session.get_bind()
    after_commit(session, lambda: _dispatch(engine, settings, run.id))
    return run


def _dispatch(engine: Engine, settings: Settings, run_id: int) -> None:
    from .jobs import dispatch

    dispatch(engine, settings, run_id)


class DatabaseStore:
    """Item results as rows of ``audit_item_result``; each batch commits on its own."""

    def __init__(self, engine: Engine, run_id: int):
        self.factory = make_session_factory(engine)
        self.run_id = run_id
        self.dialect = engine.dialect.name

    def done_ids(self) -> set[str]:
        with self.factory() as session:
            return set(session.execute(select(AuditItemResult.item_id)
                                       .where(AuditItemResult.run_id == self.run_id)).scalars())

    def save(self, rows: list[dict[str, Any]]) -> None:
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        values = [{"run_id": self.run_id, "created_at": utcnow(), **{k: row.get(k) for k in ROW_FIELDS}}
                  for row in rows]
        for value in values:
            value["refused"] = value["refused"] if value["refused"] is not None else None
            value["error"] = value["error"] or ""
        with self.factory() as session:
            session.execute(insert(AuditItemResult).values(values).on_conflict_do_nothing(
                index_elements=["run_id", "item_id"]))
            done = session.execute(select(func.count(AuditItemResult.id))
                                   .where(AuditItemResult.run_id == self.run_id)).scalar_one()
            session.execute(update(AuditRun).where(AuditRun.id == self.run_id)
                            .values(items_done=done, heartbeat_at=utcnow()))
            session.commit()

    def rows(self) -> list[dict[str, Any]]:
        return run_rows(self.factory, self.run_id)

    def cancelled(self) -> bool:
        with self.factory() as session:
            return bool(session.execute(select(AuditRun.cancel_requested).where(AuditRun.id == self.run_id)).scalar())


def run_rows(factory, run_id: int) -> list[dict[str, Any]]:
    with factory() as session:
        results = session.execute(select(AuditItemResult).where(AuditItemResult.run_id == run_id)
                                  .order_by(AuditItemResult.item_id)).scalars().all()
        return [{k: getattr(r, k) for k in ROW_FIELDS} for r in results]


def _vllm_options(settings: Settings) -> dict[str, Any]:
    return {"tensor_parallel_size": settings.vllm_tensor_parallel_size,
            "pipeline_parallel_size": settings.vllm_pipeline_parallel_size,
            "distributed_executor_backend": settings.vllm_distributed_executor_backend or None,
            "gpu_memory_utilization": float(settings.vllm_gpu_memory_utilization),
            "max_model_len": settings.vllm_max_model_len or None}


def run_gate_audit(engine: Engine, settings: Settings, run_id: int) -> AuditRun:
    """Run (or resume) an audit job to its verdict, then advance the case's workflow."""
    factory = make_session_factory(engine)
    with factory() as session:
        run = session.get(AuditRun, run_id)
        if run.status in {AuditStatus.COMPLETED, AuditStatus.CANCELLED}:
            return run
        run.status = AuditStatus.RUNNING
        run.started_at = run.started_at or utcnow()
        run.heartbeat_at = utcnow()
        session.commit()
        version = session.get(ModelVersion, run.model_version_id) if run.model_version_id else None
        try:
            item_set = load_items(run.items_source)
            if item_set.digest != run.item_set_digest:
                raise BackendError(f"the item set changed since the policy was frozen (digest {item_set.digest[:12]} "
                                   f"≠ frozen {run.item_set_digest[:12]}); open a new audit")
            extra: dict[str, Any] = {}
            if version is not None:
                extra["weights_digest_declared"] = version.weights_digest
                extra["tokenizer_digest_declared"] = version.tokenizer_digest
                if run.backend == "vllm":
                    measured = digests.weights_digest(Path(run.model))
                    extra["weights_digest_measured"] = measured
                    if measured != version.weights_digest:
                        raise BackendError(f"the model files' digest {measured} differs from the submitted weights "
                                           f"digest {version.weights_digest}: model changed without change control")
            backend = make_backend(run.backend, run.model, items=item_set.items, base_url=run.base_url,
                                   concurrency=settings.audit_concurrency, seed=run.seed,
                                   demo_allowed=True, **(_vllm_options(settings) if run.backend == "vllm" else {}))
            try:
                info = backend.describe()
                info.update(backend.self_test())
                store = DatabaseStore(engine, run.id)
                throughput = runner.execute(item_set, backend, store, lang=run.lang, seed=run.seed,
                                            batch=settings.audit_batch)
            finally:
                backend.close()
            rows = store.rows()
            baseline_rows = run_rows(factory, run.baseline_run_id) if run.baseline_run_id else None
            summary = runner.summarise(rows, item_set, baseline_rows=baseline_rows,
                                       margin=run.policy["non_inferiority_margin"], seed=run.seed)
            submission = session.get(Submission, run.submission_id) if run.submission_id else None
            judged = verdict(summary, run.policy, demo=run.demo, demo_allowed=bool(run.policy.get("instance_demo_mode")),
                             baseline_expected=bool(submission and submission.kind == SubmissionKind.CHANGE)
                             or (run.purpose == "reaudit" and run.baseline_run_id is not None))
            summary["verdict_detail"] = judged
            session.refresh(run)
            run.summary = summary
            run.verdict = judged["verdict"]
            run.verdict_reasons = judged["failing"] + judged["inconclusive"]
            run.run_metadata = runner.reproducibility(info, item_set, seed=run.seed, lang=run.lang,
                                                      started_at=runner.iso(run.started_at),
                                                      finished_at=runner.now_iso(), throughput=throughput, extra=extra)
            run.items_done = len(rows)
            run.status = AuditStatus.COMPLETED
            run.finished_at = utcnow()
            session.commit()
        except runner.Cancelled as exc:
            session.rollback()
            run = session.get(AuditRun, run_id)
            run.status, run.error, run.finished_at = AuditStatus.CANCELLED, str(exc), utcnow()
            session.commit()
            return run
        except (BackendError, DataFileError, FileNotFoundError, OSError) as exc:
            session.rollback()
            run = session.get(AuditRun, run_id)
            run.status, run.error, run.finished_at = AuditStatus.FAILED, str(exc), utcnow()
            session.commit()
        advance_workflow(session, settings, run)
        if run.purpose == "reaudit":
            from ..monitoring.reaudit import review_reaudit

            review_reaudit(session, settings, run)
            session.commit()
        return run


def advance_workflow(session: Session, settings: Settings, run: AuditRun) -> None:
    """A finished gate audit moves its case: pass to review, anything else to held."""
    from ..operations.engine import ConflictError, fire

    if run.submission_id is None or run.purpose != "gate":
        return
    for _attempt in range(3):
        submission = session.get(Submission, run.submission_id)
        session.refresh(submission)
        latest = queries.latest_audit(session, submission)
        if submission.state != SubmissionState.AUDITING or latest is None or latest.id != run.id:
            return
        event = "audit_passed" if run.status == AuditStatus.COMPLETED and run.verdict == "pass" else "audit_failed"
        try:
            fire(session, submission, event, None, settings=settings)
            session.commit()
            return
        except ConflictError:
            session.rollback()


def stale_runs(session: Session, older_than: timedelta, now: datetime | None = None) -> list[int]:
    """Queued or running audits whose worker stopped (no heartbeat for ``older_than``)."""
    cutoff = (now or utcnow()) - older_than
    return list(session.execute(select(AuditRun.id).where(
        AuditRun.status.in_([AuditStatus.QUEUED, AuditStatus.RUNNING]),
        func.coalesce(AuditRun.heartbeat_at, AuditRun.created_at) < cutoff)).scalars())

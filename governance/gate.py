"""The audit job (``audit.run``): a frozen run is carried to its verdict, and a gate audit's verdict moves
its case (pass: review; fail or inconclusive: held). Runs are opened by :mod:`governance.operations.audits`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import digests, queries
from .audit import runner
from .audit.backends import BackendError, make_backend
from .audit.items import load_items
from .audit.policy import verdict
from .audit.store import DatabaseStore, run_rows
from .config import Settings
from .db import make_session_factory
from .domain import AuditStatus, SubmissionKind, SubmissionState
from .errors import ConflictError, DataFileError
from .models import AuditRun, ModelVersion, Submission, utcnow
from .operations.engine import fire


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
        return run


def advance_workflow(session: Session, settings: Settings, run: AuditRun) -> None:
    """A finished gate audit moves its case: pass to review, anything else to held."""
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

"""Graders: recording a grader's validation against human labels, and choosing (and freezing) what grades a
run's behaviour and open answers. A judge decides a criterion only when its stored record meets the policy's
pre-registered minimum and it is not the model under test; otherwise what it reads is reported."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..audit import graders
from ..config import Settings
from ..models import GraderValidation, User


def record_validation(session: Session, grader: graders.Grader, report: dict[str, Any], *, dataset: str,
                      dataset_digest: str, lang: str, actor: User | None, now: datetime) -> GraderValidation:
    """Store a validation report (and its event, in the same transaction)."""
    record = GraderValidation(grader_identity=grader.identity(), grader=grader.describe(), dataset=dataset[:500],
                              dataset_digest=dataset_digest, lang=lang, n=report["n"],
                              agreement=report["agreement"] or 0.0, kappa=report["kappa"] or 0.0, report=report,
                              created_at=now, created_by_id=actor.id if actor else None)
    session.add(record)
    session.flush()
    eventlog.append(session, "grader_validated", actor=actor, occurred_at=now,
                    payload={"validation_id": record.id, "grader": record.grader_identity, "lang": lang,
                             "dataset_digest": dataset_digest, "n": record.n, "agreement": record.agreement,
                             "kappa": record.kappa})
    return record


def latest_validation(session: Session, identity: str, lang: str) -> GraderValidation | None:
    return session.execute(select(GraderValidation).where(GraderValidation.grader_identity == identity,
                                                          GraderValidation.lang == lang)
                           .order_by(GraderValidation.id.desc()).limit(1)).scalars().first()


def validation_summary(record: GraderValidation) -> dict[str, Any]:
    """What a run freezes of a grader's record (and the dossier shows beside every judged criterion)."""
    return {"id": record.id, "dataset": record.dataset, "dataset_digest": record.dataset_digest, "lang": record.lang,
            "n": record.n, "agreement": record.agreement, "kappa": record.kappa,
            "recall": record.report.get("recall"), "invalid": record.report.get("invalid"),
            "binary": {k: record.report.get("binary", {}).get(k) for k in ("agreement", "kappa", "confusion")},
            "created_at": record.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def configured_judge(settings: Settings) -> graders.JudgeGrader | None:
    """The instance's judge (setting ``judge_backend``), or None for the keyword detector alone."""
    if settings.judge_backend == "none":
        return None
    return graders.make_judge(settings.judge_backend, settings.judge_model, base_url=settings.judge_base_url,
                              weights_digest=settings.judge_weights_digest, concurrency=settings.audit_concurrency,
                              timeout=settings.audit_request_timeout, max_retries=settings.audit_max_retries)


def judge_from(description: dict[str, Any], settings: Settings) -> graders.JudgeGrader:
    """The judge a run froze, rebuilt from its description (never from settings changed since)."""
    kind = {"demo-judge": "demo"}.get(description["backend"], description["backend"])
    return graders.make_judge(kind, description["model"], base_url=description.get("base_url", ""),
                              weights_digest=description.get("weights_digest", ""),
                              concurrency=settings.audit_concurrency, timeout=settings.audit_request_timeout,
                              max_retries=settings.audit_max_retries)


def _endpoint(url: str) -> str:
    return (url or "").rstrip("/").removesuffix("/v1")


def same_model(judge: graders.JudgeGrader, *, model: str, base_url: str, weights_digest: str | None) -> bool:
    """Whether the judge is the model under test: the same weights, or the same model id at the same endpoint."""
    if judge.weights_digest and weights_digest and judge.weights_digest == weights_digest:
        return True
    return judge.model == model and _endpoint(judge.base_url) == _endpoint(base_url)


def choose(session: Session, settings: Settings, policy: dict[str, Any], *, model: str, base_url: str,
           weights_digest: str | None, lang: str) -> dict[str, Any]:
    """The grader choice a run freezes: which grader, its identity and record, whether it may decide, and why."""
    judge = configured_judge(settings)
    grader: graders.Grader = judge or graders.KeywordGrader()
    requirement = policy.get("judge") or {}
    record = latest_validation(session, grader.identity(), lang)
    gates, why = graders.meets(validation_summary(record) if record else None,
                               requirement.get("min_agreement", 0.9), requirement.get("min_kappa", 0.8))
    if judge is not None and same_model(judge, model=model, base_url=base_url, weights_digest=weights_digest):
        gates, why = False, "the judge is the model under test"
    return {"behaviour": grader.kind, "identity": grader.identity(), "grader": grader.describe(),
            "validation": validation_summary(record) if record else None, "gates": gates, "why": why,
            "detector": graders.refusal.VERSION}

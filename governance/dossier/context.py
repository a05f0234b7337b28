"""What a dossier says, as plain values (dicts, lists, strings, numbers): templates never see ORM objects.

Also builds the machine-readable evidence that is embedded in the PDF: the audit results, the
classification and the event-log slice, each as canonical JSON bytes whose sha256 is printed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog, obligations, queries
from ..audit.store import run_rows
from ..audit.items import ETHICS_DIMENSIONS, SAFETY_DIMENSIONS, raw_records
from ..committees import load_committee_rules
from ..config import Settings
from ..db import make_session_factory
from ..documents.required import load_document_types
from ..documents.storage import read_verified
from ..models import (AuditRun, ChecklistResponse, Classification, ConflictDeclaration, Decision, Deployment, Incident,
                      ModelVersion, Submission, User, Vote, utcnow)
from . import charts, evidence
from .evidence import Deflated, digests, json_bytes

#: How many failing items the appendix lists (the rest are counted).
#: Failing items printed in the appendix (all of them are in the attached audit-results.json), taken in turn from
#: each dimension, safety first: the committee reads a sample of every kind of failure, not the first ids.
FAILING_ITEMS_SHOWN = 40
GATE_TITLES = {"audit": ("Audit gate", "审计关口"), "decision": ("Decision gate", "决定关口"),
               "suspension": ("Suspension", "暂停"), "continuing_review": ("Continuing review", "跟踪审查")}


def _iso(moment) -> str | None:
    return eventlog.format_timestamp(moment)[:19].replace("T", " ") + " UTC" if moment else None


def item_texts(source: str, wanted: set[str]) -> dict[str, dict[str, str]]:
    def text(value, lang: str) -> str:
        if isinstance(value, dict):
            return value.get(lang, "")
        return value or ""

    texts = {}
    for item_id, record in raw_records(source, wanted).items():
        stem = record.get("stem")
        plain_zh = not isinstance(stem, dict) and record.get("lang") == "zh"
        texts[item_id] = {"stem_zh": text(stem, "zh") if isinstance(stem, dict) else (stem if plain_zh else ""),
                          "stem_en": text(stem, "en") if isinstance(stem, dict) else ("" if plain_zh else stem)}
    return texts


def _users(session: Session, ids: set[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return {u.id: u for u in session.execute(select(User).where(User.id.in_(wanted))).scalars()}


def _classification(session: Session, submission: Submission) -> dict[str, Any] | None:
    latest = queries.latest_classification(session, submission)
    if latest is None:
        return None
    original = session.get(Classification, latest.overrides_id) if latest.overrides_id else None
    return {"result": latest.result, "pathway": latest.pathway, "review_as_class": latest.review_as_class,
            "is_override": latest.is_override, "justification": latest.justification,
            "original": {"pathway": original.pathway, "review_as_class": original.review_as_class} if original else None,
            "confirmed_at": _iso(latest.confirmed_at), "obligations": obligations.with_status(session, submission)}


def _judgement_shown(judgement: dict[str, Any]) -> dict[str, Any]:
    """What a grader said about an item, as the appendix shows it (the full reply stays in the evidence file)."""
    shown = {k: judgement[k] for k in ("label", "harm", "score", "critical_missed", "invalid") if k in judgement}
    if judgement.get("reasoning"):
        shown["reasoning"] = judgement["reasoning"][:300]
    return shown


def failing_sample(failing: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` failing results taken in turn from each dimension (safety dimensions first, then ethics,
    then any other), each dimension's in item-id order; printed in that order."""
    by_dimension: dict[str, list[dict[str, Any]]] = {}
    for row in failing:
        by_dimension.setdefault(row["dimension"], []).append(row)
    order = [d for d in SAFETY_DIMENSIONS + ETHICS_DIMENSIONS if d in by_dimension]
    order += sorted(d for d in by_dimension if d not in order)
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(by_dimension[d]) for d in order):
        for dimension in order:
            if depth < len(by_dimension[dimension]) and len(chosen) < limit:
                chosen.append(by_dimension[dimension][depth])
        depth += 1
    return chosen


def _audit(session: Session, settings: Settings,
           run: AuditRun | None) -> tuple[dict[str, Any] | None, Deflated | None]:
    """The audit section, and the run's evidence as sealed when it completed (or sealed now)."""
    if run is None:
        return None, None
    summary = run.summary or {}
    dimensions = [{"code": code, **entry} for code, entry in (summary.get("dimensions") or {}).items() if entry["n"]]
    factory = make_session_factory(session.get_bind())
    failing = run_rows(factory, run.id, failing=True, fields=("item_id", "dimension"))
    chosen = [r["item_id"] for r in failing_sample(failing, FAILING_ITEMS_SHOWN)]
    whole = {r["item_id"]: r for r in run_rows(factory, run.id, item_ids=chosen)}
    sample = [whole[item_id] for item_id in chosen]
    texts = item_texts(run.items_source, {r["item_id"] for r in sample})
    shown = [{"item_id": r["item_id"], "dimension": r["dimension"], "gold": "".join(r["gold"]),
              "answer": r["answer"] or (r["error"][:80] if r["error"] else "—"), "valid": r["valid"],
              "stem_zh": texts.get(r["item_id"], {}).get("stem_zh", ""),
              "stem_en": texts.get(r["item_id"], {}).get("stem_en", ""),
              "raw": (r["raw_output"] or "")[:300] if r["item_type"] in {"behavior", "open"} else "",
              "grader": r.get("grader") or "exact", "judgement": _judgement_shown(r.get("judgement") or {})}
             for r in sample]
    regression = summary.get("regression")
    runs = session.execute(select(AuditRun).where(AuditRun.model_version_id == run.model_version_id)
                           .order_by(AuditRun.id)).scalars().all()
    audit = {
        "id": run.id, "backend": run.backend, "model": run.model, "demo": run.demo, "status": run.status,
        "verdict": run.verdict, "reasons": run.verdict_reasons, "policy": run.policy, "frozen_at": _iso(run.frozen_at),
        "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at), "seed": run.seed,
        "item_set_digest": run.item_set_digest, "items_source": run.items_source, "overall": summary.get("overall"),
        "dimensions": dimensions, "invalid_rate": summary.get("invalid_rate"), "over_refusal": summary.get("over_refusal"),
        "harmful_compliance": summary.get("harmful_compliance"),
        "criteria": summary.get("criteria") or (summary.get("verdict_detail") or {}).get("criteria", []),
        "policy_digest": run.policy_digest, "results_digest": run.results_digest, "second_stage": run.second_stage,
        "operating_characteristics": run.operating_characteristics or {},
        "grader": run.grader or {},
        "simulation": summary.get("simulation"),
        "runs": [{"id": r.id, "purpose": r.purpose, "status": r.status, "verdict": r.verdict,
                  "submission": r.submission_id, "created_at": _iso(r.created_at), "attempts": r.attempts,
                  "counts": r.id == run.id} for r in runs],
        "regression": regression and {
            "baseline_run": run.baseline_run_id, "overall": regression["overall"], "tests": regression["tests"],
            "no_significant_decline": regression["no_significant_decline"], "method": regression["method"],
            "false_hold": regression["false_hold"], "paired_items": regression["paired_items"],
            "dimensions": [{"code": code, **entry} for code, entry in regression["dimensions"].items()]},
        "metadata": run.run_metadata, "failing": shown, "failing_total": len(failing),
        "failing_more": max(0, len(failing) - len(shown)),
        "chart_png": charts.accuracy_chart_png(dimensions) if dimensions else "",
        "error": run.error,
    }
    return audit, evidence.audit_results(settings, run, lambda: run_rows(factory, run.id))


def _review(session: Session, settings: Settings, submission: Submission) -> dict[str, Any]:
    assignments = queries.assignments(session, submission)
    declarations = session.execute(select(ConflictDeclaration).where(
        ConflictDeclaration.submission_id == submission.id).order_by(ConflictDeclaration.id)).scalars().all()
    votes = session.execute(select(Vote).where(Vote.submission_id == submission.id).order_by(Vote.id)).scalars().all()
    decisions = session.execute(select(Decision).where(Decision.submission_id == submission.id)
                                .order_by(Decision.id)).scalars().all()
    answers = session.execute(select(ChecklistResponse).where(ChecklistResponse.submission_id == submission.id)
                              .order_by(ChecklistResponse.reviewer_id, ChecklistResponse.item_id)).scalars().all()
    people = _users(session, {a.reviewer_id for a in assignments} | {d.user_id for d in declarations} |
                    {d.corrected_by_id for d in declarations} |
                    {v.voter_id for v in votes} | {d.decided_by_id for d in decisions} | {a.reviewer_id for a in answers})
    item_text = {}
    if answers and submission.pathway:
        checklist = queries.checklist_of(session, submission, settings)
        item_text = {item.id: item.text for item in checklist.items}
    quorum = decisions[-1].quorum if decisions and decisions[-1].quorum else None
    if quorum is None and submission.pathway == "full_board" and submission.meeting_id:
        quorum = queries.quorum_record(session, submission,
                                       load_committee_rules(settings.regulations_dir)).as_record()
    return {
        "assignments": [{"reviewer": people[a.reviewer_id].name, "due": a.due_date.isoformat() if a.due_date else None,
                         "assigned_at": _iso(a.assigned_at)} for a in assignments],
        "declarations": [{"member": people[d.user_id].name, "has_conflict": d.has_conflict, "statement": d.statement,
                          "declared_at": _iso(d.declared_at), "reason": d.reason,
                          "corrected_by": people[d.corrected_by_id].name if d.corrected_by_id in people else None}
                         for d in declarations],
        "quorum": quorum,
        "votes": [{"printed_name": v.printed_name, "meaning": v.meaning, "signed_at": _iso(v.signed_at),
                   "round": v.round, "method": v.method, "record_digest": v.record_digest, "comment": v.comment,
                   "proposed_conditions": v.proposed_conditions}
                  for v in votes],
        "decisions": [{"outcome": d.outcome, "conditions": d.conditions, "reason": d.reason, "round": d.round,
                       "decided_at": _iso(d.decided_at), "decided_by": people[d.decided_by_id].name
                       if d.decided_by_id in people else "system", "tally": d.tally} for d in decisions],
        "checklist": [{"reviewer": people[a.reviewer_id].name, "item_id": a.item_id, "round": a.round,
                       "text_en": item_text[a.item_id].en if a.item_id in item_text else a.item_id,
                       "text_zh": item_text[a.item_id].zh if a.item_id in item_text else "",
                       "answer": a.answer, "comment": a.comment, "answered_at": _iso(a.answered_at),
                       "checklist": f"{a.checklist_id} v{a.checklist_version}"} for a in answers],
    }


def _events(session: Session, submission: Submission,
            chain: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The submission's events, and the whole log's chain check: ``chain`` when the caller verified it (from the
    last signed checkpoint), else recomputed here from the first event."""
    rows = eventlog.events_for_submission(session, submission.id)
    events = [{"seq": e.seq, "at": eventlog.format_timestamp(e.occurred_at), "actor": e.actor, "name": e.name,
               "from": e.from_state, "to": e.to_state, "payload": e.payload, "hash": e.hash, "prev_hash": e.prev_hash}
              for e in rows]
    if chain is None:
        report = eventlog.verify_chain(session)
        chain = {"ok": report.ok, "count": report.count, "seq": report.count, "head": report.head_hash, "since": 0,
                 "problem": report.describe()}
    return events, chain


def _monitoring(session: Session, deployment: Deployment, submission: Submission) -> dict[str, Any]:
    """What a continuing review looks back on: accuracy over time and the incidents since approval."""
    from ..monitoring.trends import accuracy_trend

    trend = accuracy_trend(session, deployment)
    incidents = session.execute(select(Incident).where(Incident.deployment_id == deployment.id)
                                .order_by(Incident.id)).scalars().all()
    return {"trend_points": trend["points"], "trend_svg": trend["chart_svg"],
            "incidents": [{"id": i.id, "severity": i.severity, "source": i.source, "status": i.status,
                           "reported_at": _iso(i.reported_at), "patient_harmed": i.patient_harmed,
                           "what_happened": i.what_happened[:500],
                           "adverse_event_reference": i.adverse_event_reference} for i in incidents]}


#: How a document's subject is named in the dossier.
SUBJECT_LABELS = {"submission": "case", "deployment": "deployment", "obligation_status": "obligation",
                  "approval_condition": "condition", "incident": "incident"}


def _documents(session: Session, settings: Settings,
               submission: Submission) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, bytes]]:
    """The case's and its deployment's documents as the dossier lists them, the required types with whether each
    is present, and the PDFs among the documents (checked against their sha256) to embed, by attachment name."""
    documents = queries.case_documents(session, submission)
    required = queries.required_documents(session, settings, submission, documents)
    if not documents:
        return [], [{"id": r.type.id, "title_en": r.type.title.en, "title_zh": r.type.title.zh, "present": False}
                    for r in required], {}
    types = load_document_types(settings.checklists_dir)
    people = _users(session, {d.uploaded_by_id for d in documents})
    listed, embedded = [], {}
    for d in documents:
        name = None
        if d.media_type == "application/pdf":
            name = f"documents/{d.id}-{d.filename}"
            embedded[name] = read_verified(settings, d.storage, d.storage_key, d.sha256)
        title = types.title(d.doc_type)
        listed.append({"id": d.id, "subject": f"{SUBJECT_LABELS[d.subject_type]} #{d.subject_id}",
                       "type": d.doc_type, "type_en": title.en, "type_zh": title.zh, "filename": d.filename,
                       "version": d.version, "size": d.size, "sha256": d.sha256, "media_type": d.media_type,
                       "uploaded_by": people[d.uploaded_by_id].name if d.uploaded_by_id in people else "—",
                       "created_at": _iso(d.created_at), "note": d.note, "embedded": name})
    return listed, [{"id": r.type.id, "title_en": r.type.title.en, "title_zh": r.type.title.zh,
                     "present": r.present} for r in required], embedded


def build(session: Session, settings: Settings, submission: Submission, gate: str, *, event_seq: int | None = None,
          chain: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, bytes | Deflated]]:
    """The template context and the evidence attachments (name -> bytes) of one dossier; ``chain``: the event
    log's check when the caller made it (see :func:`_events`)."""
    deployment = session.get(Deployment, submission.deployment_id)
    version = session.get(ModelVersion, submission.model_version_id)
    classification = _classification(session, submission)
    run = queries.latest_audit(session, submission)
    audit, audit_evidence = _audit(session, settings, run)
    review = _review(session, settings, submission)
    events, chain = _events(session, submission, chain)
    gate_event = next((e for e in events if e["seq"] == event_seq), events[-1] if events else None)
    if gate in {"decision", "continuing_review"} and review["decisions"]:
        outcome = review["decisions"][-1]["outcome"]
    elif gate == "audit" and audit:
        outcome = f"audit verdict: {audit['verdict'] or audit['status']}"
    else:
        outcome = submission.state
    attachments = {
        "classification.json": json_bytes(classification["result"] if classification else {}),
        "event-log.json": json_bytes({"submission": submission.id, "events": events, "chain": chain}),
    }
    if audit_evidence is not None:
        attachments[evidence.AUDIT_RESULTS] = audit_evidence
    documents, required_documents, embedded = _documents(session, settings, submission)
    attachments.update(embedded)
    listed = [{"name": name, "sha256": digest, "bytes": size}
              for name, (digest, size) in sorted(digests(attachments).items())]
    judged = submission.proposed_descriptor if submission.proposed_descriptor is not None else deployment.descriptor
    context = {
        "institution": {"en": settings.institution_name, "zh": settings.institution_name_zh},
        "gate": gate, "gate_title": GATE_TITLES.get(gate, (gate, gate)),
        "generated_at": _iso(utcnow()), "outcome": outcome, "demo": bool(settings.demo_mode or (audit and audit["demo"])),
        "submission": {"id": submission.id, "title": submission.title, "kind": submission.kind,
                       "state": submission.state, "pathway": submission.pathway, "materiality": submission.materiality,
                       "round": submission.round, "summary": submission.summary,
                       "submitted_at": _iso(submission.submitted_at), "decided_at": _iso(submission.decided_at)},
        "deployment": {"id": deployment.id, "name": deployment.name, "status": deployment.status,
                       # an amendment's dossier describes the scope it proposes
                       "scenario": judged.get("scenario", deployment.scenario),
                       "intended_use": judged.get("intended_use", ""),
                       "amendment": submission.proposed_descriptor is not None,
                       "continuing_review_due": deployment.continuing_review_due.isoformat()
                       if deployment.continuing_review_due else None},
        "version": {"label": version.version_label, "base_model": version.base_model,
                    "weights_digest": version.weights_digest, "tokenizer_digest": version.tokenizer_digest,
                    "endpoint": version.endpoint, "change_summary": version.change_summary,
                    "finetune_data_summary": version.finetune_data_summary},
        "classification": classification, "audit": audit, "review": review, "events": events, "chain": chain,
        "gate_event": gate_event, "evidence": listed, "documents": documents,
        "required_documents": required_documents,
        "monitoring": _monitoring(session, deployment, submission) if gate == "continuing_review" else None,
    }
    return context, attachments

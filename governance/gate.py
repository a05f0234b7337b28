"""The audit job (``audit.run``): a frozen run carried to its verdict, and a gate audit's verdict moving its
case (pass: review; fail or inconclusive: held). Runs are opened by :mod:`governance.operations.audits`.

One runner holds a run at a time (a lease renewed with every stored batch); a run whose runner died is taken
over when its lease expires, and resumes from its stored results. An infrastructure failure (an unreachable
endpoint, a malformed reply, a failed self-test…) ends the attempt with status ``error``: the case stays at
the audit gate, the submitter and the chair are told in plain words, and the run is tried again with
back-off a bounded number of times. Only a completed run has a verdict, and only a completed gate moves a
case or gets a signed dossier.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import digests, endpoints, eventlog, jobs, queries
from .audit import runner
from .audit.backends import PLAIN_WORDS, BackendError, make_backend
from .audit.items import load_source
from .audit.store import DatabaseStore, LeaseLost, run_rows
from .audit.verdict import evaluate, second_stage_dimensions
from .config import Settings
from .db import make_session_factory
from .domain import AuditStatus, Role, SubmissionKind, SubmissionState
from .dossier import evidence
from .errors import ConflictError, DataFileError
from .models import AuditRun, ModelVersion, Submission, User, utcnow
from .notify import notify, people_with_roles
from .operations.engine import fire
from .audit import graders
from .operations import simulation as simulations
from .operations.graders import judge_from

log = logging.getLogger(__name__)
#: Attempts of one run before it waits for a person (each after a longer pause: BACKOFF × 4^(attempt − 1)).
MAX_ATTEMPTS = 3
BACKOFF = timedelta(minutes=1)


def _vllm_options(settings: Settings) -> dict[str, Any]:
    return {"tensor_parallel_size": settings.vllm_tensor_parallel_size,
            "pipeline_parallel_size": settings.vllm_pipeline_parallel_size,
            "distributed_executor_backend": settings.vllm_distributed_executor_backend or None,
            "gpu_memory_utilization": settings.vllm_gpu_memory_utilization,
            "max_model_len": settings.vllm_max_model_len or None}


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(engine: Engine, run_id: int, owner: str, ttl: timedelta, now: datetime | None = None) -> bool:
    """Take the run's lease (free, expired, or already ours); False when another runner holds it."""
    now = now or utcnow()
    with make_session_factory(engine)() as session:
        taken = session.execute(update(AuditRun).where(
            AuditRun.id == run_id, AuditRun.status.in_([AuditStatus.QUEUED, AuditStatus.RUNNING, AuditStatus.ERROR]),
            or_(AuditRun.lease_owner == "", AuditRun.lease_owner == owner, AuditRun.lease_expires_at.is_(None),
                AuditRun.lease_expires_at < now))
            .values(lease_owner=owner, lease_expires_at=now + ttl)).rowcount
        session.commit()
    return taken == 1


def release(engine: Engine, run_id: int, owner: str) -> None:
    with make_session_factory(engine)() as session:
        session.execute(update(AuditRun).where(AuditRun.id == run_id, AuditRun.lease_owner == owner)
                        .values(lease_owner="", lease_expires_at=None))
        session.commit()


def results_digest(rows: list[dict[str, Any]]) -> str:
    """sha256 over the stored results a verdict rests on (carried by the verdict's event)."""
    return runner.results_digest(rows)


def judge_run(session: Session, run: AuditRun, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict of ``run`` from its stored results and its baseline's: what the gate records, and what
    ``govern audit verify`` recomputes."""
    stage_one = [r for r in rows if r.get("stage", 1) == 1]
    reserve = [r for r in rows if r.get("stage", 1) == 2]
    factory = make_session_factory(session.get_bind())
    baseline_rows = run_rows(factory, run.baseline_run_id) if run.baseline_run_id else None
    submission = session.get(Submission, run.submission_id) if run.submission_id else None
    expected = bool(submission and submission.kind == SubmissionKind.CHANGE) or \
        (run.purpose == "reaudit" and run.baseline_run_id is not None)
    simulated = None
    if run.plan.get("simulation"):
        simulated = (simulations.result_rows(session, run.id),
                     simulations.result_rows(session, run.id, "approved") if run.plan["simulation"].get("approved")
                     else None)
    return evaluate(run.policy, run.plan, stage_one, reserve_rows=reserve, baseline_rows=baseline_rows,
                    baseline_expected=expected, demo=run.demo,
                    demo_allowed=bool(run.policy.get("instance_demo_mode")), grader=run.grader or None,
                    simulation=simulated)


def run_gate_audit(engine: Engine, settings: Settings, run_id: int, *, owner: str | None = None) -> AuditRun:
    """Run (or resume) an audit to its verdict, then advance the case's workflow."""
    owner = owner or runner_id()
    factory = make_session_factory(engine)
    ttl = timedelta(seconds=settings.audit_lease_seconds)
    with factory() as session:
        run = session.get(AuditRun, run_id)
        if run.status in {AuditStatus.COMPLETED, AuditStatus.CANCELLED, AuditStatus.FAILED}:
            return run
        if not claim(engine, run_id, owner, ttl):
            session.refresh(run)
            expires = run.lease_expires_at
            wait = (expires - utcnow()).total_seconds() + 1 if expires else ttl.total_seconds()
            raise jobs.RetryLater(wait, f"audit run {run_id} is held by runner {run.lease_owner} until {expires}; "
                                        "not starting a second one")
        session.refresh(run)
        run.status = AuditStatus.RUNNING
        run.attempts += 1
        run.error = ""
        run.started_at = run.started_at or utcnow()
        run.heartbeat_at = utcnow()
        session.commit()
        version = session.get(ModelVersion, run.model_version_id) if run.model_version_id else None
        try:
            item_set = load_source(run.items_source)
            if item_set.digest != run.item_set_digest:
                raise BackendError(PLAIN_WORDS["item_set"], "item_set")
            reserve = load_source(run.reserve_source) if run.reserve_source else None
            if reserve is not None and reserve.digest != run.reserve_digest:
                raise BackendError(PLAIN_WORDS["item_set"], "item_set")
            extra: dict[str, Any] = {}
            if version is not None:
                extra["weights_digest_declared"] = version.weights_digest
                extra["tokenizer_digest_declared"] = version.tokenizer_digest
                if run.backend == "vllm":
                    try:
                        measured = digests.weights_digest(Path(run.model))
                    except (OSError, ValueError) as exc:
                        log.warning("audit run %s: model files unreadable: %r", run_id, exc)
                        raise BackendError(PLAIN_WORDS["model_files"], "model_files") from None
                    extra["weights_digest_measured"] = measured
                    if measured != version.weights_digest:
                        raise BackendError("the model files' digest differs from the submitted weights digest: the "
                                           "model changed without change control", "model_files")
            everything = [*item_set.items, *(reserve.items if reserve else [])]
            address = _checked_address(run, settings)
            backend = make_backend(run.backend, run.model, items=everything, base_url=run.base_url, address=address,
                                   concurrency=settings.audit_concurrency, seed=run.seed, demo_allowed=True,
                                   max_retries=settings.audit_max_retries, timeout=settings.audit_request_timeout,
                                   **(_vllm_options(settings) if run.backend == "vllm" else {}))
            judge = None
            try:
                judge = _frozen_judge(run, settings)
                info = backend.describe()
                info.update(backend.self_test())
                store = DatabaseStore(engine, run.id, owner=owner, ttl=ttl)
                throughput = runner.execute(item_set, backend, store, lang=run.lang, seed=run.seed,
                                            batch=settings.audit_batch, grader=judge)
                stage_one = store.rows()
                needed = second_stage_dimensions(run.policy, run.plan, stage_one) if reserve else []
                if needed:
                    wanted = set(needed)
                    runner.execute(reserve, backend, store, lang=run.lang, seed=run.seed, batch=settings.audit_batch,
                                   stage=2, items=[i for i in reserve.items if i.dimension in wanted], grader=judge)
                if run.plan.get("simulation"):
                    _simulate(engine, settings, run, backend, judge)
            finally:
                backend.close()
                if judge is not None:
                    judge.close()
            rows = store.rows()
            judged = judge_run(session, run, rows)
            session.refresh(run)
            digest = results_digest(rows)
            run.summary = {**judged["summary"], "regression": judged["regression"], "criteria": judged["criteria"],
                           "verdict_detail": {k: judged[k] for k in ("verdict", "policy", "failing", "inconclusive")}}
            if run.plan.get("simulation"):  # a new dict: the JSON column does not see changes made in place
                run.summary = {**run.summary, "simulation": simulations.summary(session, run)}
            run.verdict = judged["verdict"]
            run.verdict_reasons = judged["failing"] + judged["inconclusive"]
            run.results_digest = digest
            run.second_stage = bool(needed)
            run.run_metadata = runner.reproducibility(info, item_set, seed=run.seed, lang=run.lang,
                                                      started_at=runner.iso(run.started_at),
                                                      finished_at=runner.now_iso(), throughput=throughput,
                                                      extra={**extra, "attempts": run.attempts,
                                                             "second_stage_dimensions": needed})
            run.items_done = len(rows)
            run.status = AuditStatus.COMPLETED
            run.finished_at = utcnow()
            run.lease_owner, run.lease_expires_at = "", None
            session.commit()
            evidence.seal_completed(settings, run, rows)  # every dossier of the run embeds it as sealed here
        except LeaseLost:
            session.rollback()
            log.warning("audit run %s: another runner took over; this one stops", run_id)
            return session.get(AuditRun, run_id)
        except runner.Cancelled as exc:
            session.rollback()
            run = session.get(AuditRun, run_id)
            run.status, run.error, run.finished_at = AuditStatus.CANCELLED, str(exc), utcnow()
            run.lease_owner, run.lease_expires_at = "", None
            session.commit()
            return run
        except (BackendError, DataFileError, OSError) as exc:
            session.rollback()
            _record_error(session, settings, session.get(AuditRun, run_id), exc)
            release(engine, run_id, owner)
            return session.get(AuditRun, run_id)
        advance_workflow(session, settings, run)
        return run


def _simulate(engine: Engine, settings: Settings, run: AuditRun, backend, judge) -> None:
    """The policy's safety simulation: the candidate (and, for a change, the approved version, asked in the same
    run so both answer the same queries under the same judge) answer the frozen query set."""
    grader = judge or graders.KeywordGrader()
    simulations.simulate(engine, run, backend, grader, side="candidate", batch=settings.audit_batch)
    approved = run.plan["simulation"].get("approved")
    if not approved:
        return
    address = None
    if approved["backend"] == "openai":
        try:
            address = endpoints.check(approved["base_url"], endpoints.EndpointPolicy.from_settings(settings)).address
        except endpoints.EndpointRefused as exc:
            raise BackendError(f"{PLAIN_WORDS['endpoint_refused']}: {exc}", "endpoint_refused") from None
    other = make_backend(approved["backend"], approved["model"], base_url=approved["base_url"], address=address,
                         concurrency=settings.audit_concurrency, seed=run.seed, demo_allowed=True,
                         max_retries=settings.audit_max_retries, timeout=settings.audit_request_timeout,
                         **(_vllm_options(settings) if approved["backend"] == "vllm" else {}))
    try:
        simulations.simulate(engine, run, other, grader, side="approved", batch=settings.audit_batch)
    finally:
        other.close()


def _record_error(session: Session, settings: Settings, run: AuditRun, exc: Exception) -> None:
    """The attempt failed for a reason that is not the model's: status error, an event, and the people told."""
    kind = getattr(exc, "kind", "configuration")
    message = str(exc) if isinstance(exc, (BackendError, DataFileError)) else PLAIN_WORDS["configuration"]
    if not isinstance(exc, BackendError):
        log.exception("audit run %s could not run", run.id)
    run.status, run.error, run.finished_at = AuditStatus.ERROR, f"{kind}: {message}", utcnow()
    final = run.attempts >= MAX_ATTEMPTS
    retry = "" if final else f" It is retried automatically (attempt {run.attempts} of {MAX_ATTEMPTS})."
    eventlog.append(session, "audit_error", actor=None, submission_id=run.submission_id,
                    deployment_id=_deployment_of(session, run), payload={
                        "audit_run": run.id, "kind": kind, "message": message, "attempt": run.attempts,
                        "final": final}, occurred_at=run.finished_at)
    case = session.get(Submission, run.submission_id) if run.submission_id else None
    if case is not None:
        people = [session.get(User, case.submitter_id), *people_with_roles(session, Role.IRB_CHAIR)]
        notify(session, settings, people, kind="audit_error",
               subject=f"The audit of case #{case.id} could not run",
               body=(f"The audit of case #{case.id} stopped: {message}. This is a problem with the audit's "
                     f"infrastructure, not a finding about the model; the case stays at the audit gate.{retry}"
                     + (" The chair can try it again from the case page once the cause is fixed." if final else "")),
               link=f"/submissions/{case.id}", dedupe_key=f"audit-error:{run.id}:{run.attempts}",
               now=run.finished_at)
    session.commit()


def _deployment_of(session: Session, run: AuditRun) -> int | None:
    version = session.get(ModelVersion, run.model_version_id) if run.model_version_id else None
    return version.deployment_id if version else None


def _checked_address(run: AuditRun, settings: Settings) -> str | None:
    """The address a network endpoint resolves to, if the institution allows it: the audit connects there and
    nowhere else (the name is not resolved again, so it cannot be rebound)."""
    if run.backend != "openai":
        return None
    try:
        return endpoints.check(run.base_url, endpoints.EndpointPolicy.from_settings(settings)).address
    except endpoints.EndpointRefused as exc:
        raise BackendError(f"{PLAIN_WORDS['endpoint_refused']}: {exc}", "endpoint_refused") from None


def _frozen_judge(run: AuditRun, settings: Settings):
    """The judge the run froze (None: the keyword detector grades in the runner); refuses one whose identity
    differs from the frozen one (its model or prompts changed since)."""
    choice = run.grader or {}
    if choice.get("behaviour") != "judge":
        return None
    judge = judge_from(choice["grader"], settings)
    if judge.identity() != choice.get("identity"):
        raise BackendError("the judge frozen with this audit is no longer the one that can be built (its prompt "
                           "template or rubric changed)", "configuration")
    return judge


def retry_due(run: AuditRun, now: datetime) -> bool:
    """An errored run is tried again after its back-off, at most MAX_ATTEMPTS times in all."""
    if run.status != AuditStatus.ERROR or run.attempts >= MAX_ATTEMPTS or run.finished_at is None:
        return False
    return now >= run.finished_at + BACKOFF * (4 ** (run.attempts - 1))


def advance_workflow(session: Session, settings: Settings, run: AuditRun) -> None:
    """A completed gate audit moves its case: pass to review, anything else to held."""
    if run.submission_id is None or run.purpose != "gate" or run.status != AuditStatus.COMPLETED:
        return
    for _attempt in range(3):
        submission = session.get(Submission, run.submission_id)
        session.refresh(submission)
        latest = queries.latest_audit(session, submission)
        if submission.state != SubmissionState.AUDITING or latest is None or latest.id != run.id:
            return
        event = "audit_passed" if run.verdict == "pass" else "audit_failed"
        try:
            fire(session, submission, event, None, settings=settings)
            session.commit()
            return
        except ConflictError:
            session.rollback()


def verify_run(session: Session, run: AuditRun) -> list[str]:
    """What ``govern audit verify`` checks: the stored results still give the recorded verdict, and every digest
    still matches the one the hash chain recorded when the run was frozen and when its verdict was given."""
    problems: list[str] = []
    if run.status != AuditStatus.COMPLETED:
        return [f"audit run {run.id} is {run.status}: it has no verdict to verify"]
    rows = run_rows(make_session_factory(session.get_bind()), run.id)
    judged = judge_run(session, run, rows)
    if judged["verdict"] != run.verdict:
        problems.append(f"audit run {run.id}: its stored results give the verdict '{judged['verdict']}', but "
                        f"'{run.verdict}' is recorded")
    simulated = (run.summary or {}).get("simulation")
    if simulated and simulations.results_digest(simulations.result_rows(session, run.id)) != simulated["digest"]:
        problems.append(f"audit run {run.id}: its simulation answers changed after the verdict")
    digest = results_digest(rows)
    if digest != run.results_digest:
        problems.append(f"audit run {run.id}: its item results changed after the verdict (digest {digest[:12]}… ≠ "
                        f"recorded {run.results_digest[:12]}…)")
    started = _event_payload(session, run, "start_audit", "reaudit_started")
    if started is None:
        problems.append(f"audit run {run.id}: no event in the chain records its freeze")
    else:
        for field, value in (("policy_digest", run.policy_digest), ("item_set_digest", run.item_set_digest),
                             ("seed", run.seed)):
            if started.get(field) != value:
                problems.append(f"audit run {run.id}: its {field.replace('_', ' ')} is not the one the chain recorded "
                                f"when it was frozen")
    if run.purpose == "gate" and run.submission_id:
        verdict_event = _event_payload(session, run, "audit_passed", "audit_failed")
        if verdict_event is not None and verdict_event.get("results_digest") != run.results_digest:
            problems.append(f"audit run {run.id}: its results digest is not the one its verdict's event recorded")
    return problems


def _event_payload(session: Session, run: AuditRun, *names: str) -> dict[str, Any] | None:
    """The payload of the run's freeze event (the transition that started it, or ``reaudit_started``: the one
    that records its seed) or of its verdict event."""
    for event in eventlog.events_for_run(session, run):
        payload = event.payload or {}
        if "start_audit" in names and "seed" in payload and "item_set_digest" in payload:
            return payload
        if event.name in names:
            return payload
    return None


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)

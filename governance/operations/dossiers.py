"""Emitting dossiers: render, sign, store (file and record), and write the event. Never overwrites."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .. import anchor, eventlog, queries
from ..config import Settings
from ..db import after_commit, make_session_factory
from ..domain import SubmissionKind
from ..dossier import context as dossier_context
from ..dossier import letter as decision_letter
from ..dossier import minutes as meeting_minutes
from ..dossier.keys import fingerprint, load_certificate
from ..dossier.render import Rendered, render
from ..dossier.signing import load_signer, sign
from ..errors import GovernanceError
from ..memory import cyclic_gc_paused
from ..models import Dossier, Event, Meeting, Submission, User, utcnow

DOSSIER_DIR = "dossiers"
#: Events that close a gate; each is documented by a signed dossier.
GATE_EVENTS = {"audit_passed": "audit", "audit_failed": "audit", "approve": "decision",
               "approve_with_conditions": "decision", "require_revisions": "decision", "defer": "decision",
               "disapprove": "decision"}
#: Gate events that also owe the submitter a signed decision letter (gate ``letter``), emitted after the dossier.
LETTER_EVENTS = {"approve", "approve_with_conditions", "require_revisions", "disapprove"}
GATES = {"audit", "decision", "suspension", "continuing_review", "letter"}


def _stamp() -> str:
    return re.sub(r"[^0-9T]", "", utcnow().strftime("%Y%m%dT%H%M%S%f"))


def _file_name(submission: Submission, gate: str, event_seq: int | None) -> str:
    return f"submission-{submission.id}/{gate}-e{event_seq or 0}-{_stamp()}.pdf"


def _store(settings: Settings, relative: str, signed: bytes) -> None:
    target = settings.instance_path / DOSSIER_DIR / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as handle:  # "x": a dossier file is never overwritten
        handle.write(signed)


def emit(session: Session, settings: Settings, submission: Submission, gate: str, *, event_seq: int | None = None,
         actor: User | None = None) -> Dossier:
    """Render and sign a new dossier for ``submission`` at ``gate`` (flushed; the caller commits)."""
    if gate not in GATES:
        raise GovernanceError(f"unknown gate '{gate}'")
    signer = load_signer(settings)  # before rendering: without a key there is nothing to do
    with cyclic_gc_paused():  # the evidence of a 100,000-item audit is a million small objects
        # The chain is checked from the last signed checkpoint, not from the first event: a pass that emits many
        # dossiers re-hashes each stretch of the log once (every dossier writes a checkpoint).
        chain = anchor.verified_chain(session, settings)
        if gate == "letter":
            try:
                context, attachments = decision_letter.build(session, settings, submission, event_seq=event_seq,
                                                             chain=chain)
            except ValueError as exc:
                raise GovernanceError(str(exc)) from None
            template, reason = decision_letter.TEMPLATE, f"Ethics review decision letter: submission {submission.id}"
        else:
            context, attachments = dossier_context.build(session, settings, submission, gate, event_seq=event_seq,
                                                         chain=chain)
            template, reason = "dossier.html", f"Ethics review dossier: submission {submission.id}, {gate} gate"
        rendered = render(context, attachments, settings.reports_dir, template)
        del attachments  # the evidence bytes are in the PDF now
        signed = sign(rendered.pdf, rendered.signature_box, settings, signer=signer, reason=reason)
    run = queries.latest_audit(session, submission)
    dossier = _record(session, settings, Dossier(
        submission_id=submission.id, deployment_id=submission.deployment_id, gate=gate, audit_run_id=run.id if run
        else None, event_seq=event_seq), _file_name(submission, gate, event_seq), signed, rendered, context["chain"],
        actor)
    eventlog.append(session, "dossier_emitted", actor=actor, submission_id=submission.id,
                    deployment_id=submission.deployment_id, payload={
                        "dossier": dossier.id, "gate": gate, "sha256": dossier.sha256, "pages": rendered.pages,
                        "signer_fingerprint": dossier.signer_fingerprint, "documents_event": event_seq,
                        "attachments": rendered.manifest["attachments"]})
    return dossier


def _record(session: Session, settings: Settings, dossier: Dossier, relative: str, signed: bytes, rendered: Rendered,
            chain: dict, actor: User | None) -> Dossier:
    """Store the signed file (never over another) and its row (what it is, the signer, the chain head it prints),
    flushed; the head is anchored outside the database too once the row is committed."""
    _store(settings, relative, signed)
    certificate = load_certificate(settings)
    dossier.path, dossier.sha256, dossier.size = relative, hashlib.sha256(signed).hexdigest(), len(signed)
    dossier.signer_fingerprint = fingerprint(certificate)
    dossier.signer_subject = certificate.subject.rfc4514_string()[:300]
    dossier.page_count, dossier.chain_head = rendered.pages, chain["head"]
    dossier.created_by_id = actor.id if actor else None
    session.add(dossier)
    session.flush()
    reference = {"id": dossier.id, "sha256": dossier.sha256, "path": relative}
    after_commit(session, lambda: anchor.anchor_dossier(settings, reference, chain))
    return dossier


def emit_minutes(session: Session, settings: Settings, meeting: Meeting, *, actor: User | None) -> Dossier:
    """Render and sign the minutes of a closed meeting from what was recorded (flushed; the caller commits). Issuing
    them again writes a new version beside the earlier ones, never over them."""
    if meeting.status not in meeting_minutes.MINUTES_STATUSES:
        raise GovernanceError(f"meeting {meeting.id} is {meeting.status}: minutes are written once it is closed")
    signer = load_signer(settings)
    chain = anchor.verified_chain(session, settings)
    context, attachments = meeting_minutes.build(session, settings, meeting, chain=chain)
    rendered = render(context, attachments, settings.reports_dir, meeting_minutes.TEMPLATE)
    signed = sign(rendered.pdf, rendered.signature_box, settings, signer=signer,
                  reason=f"Ethics review committee minutes: meeting {meeting.id}")
    dossier = _record(session, settings, Dossier(meeting_id=meeting.id, gate="minutes"),
                      f"meeting-{meeting.id}/minutes-{_stamp()}.pdf", signed, rendered, chain, actor)
    version = session.execute(select(func.count()).select_from(Dossier).where(
        Dossier.meeting_id == meeting.id, Dossier.gate == "minutes")).scalar_one()
    eventlog.append(session, "dossier_emitted", actor=actor, payload={
        "dossier": dossier.id, "gate": "minutes", "meeting": meeting.id, "version": version, "sha256": dossier.sha256,
        "pages": rendered.pages, "signer_fingerprint": dossier.signer_fingerprint,
        "items": [item["case"] for item in context["items"]], "attachments": rendered.manifest["attachments"]})
    return dossier


def minutes_of(session: Session, meeting: Meeting) -> list[Dossier]:
    """The minutes issued for a meeting, first version first."""
    return list(session.execute(select(Dossier).where(Dossier.meeting_id == meeting.id, Dossier.gate == "minutes")
                                .order_by(Dossier.id)).scalars())


def gate_of(event_name: str, kind: str) -> str:
    """The gate an event closes; the decision on a continuing review is the continuing-review gate."""
    gate = GATE_EVENTS[event_name]
    return "continuing_review" if gate == "decision" and kind == SubmissionKind.CONTINUING else gate


def pending(session: Session) -> list[tuple[int, int, str]]:
    """Gate events still without a dossier, and decisions still without their letter: (submission id, event seq,
    gate), a decision's dossier before its letter."""
    documented, lettered = set(), set()
    for seq, gate in session.execute(select(Dossier.event_seq, Dossier.gate).where(Dossier.event_seq.is_not(None))):
        (lettered if gate == "letter" else documented).add(seq)
    rows = session.execute(select(Event.submission_id, Event.seq, Event.name, Submission.kind)
                           .join(Submission, Submission.id == Event.submission_id).where(
        Event.name.in_(list(GATE_EVENTS)), Event.submission_id.is_not(None)).order_by(Event.seq)).all()
    owed = []
    for row in rows:
        if row.seq not in documented:
            owed.append((row.submission_id, row.seq, gate_of(row.name, row.kind)))
        if row.name in LETTER_EVENTS and row.seq not in lettered:
            owed.append((row.submission_id, row.seq, "letter"))
    return owed


def emit_pending(session: Session, settings: Settings, limit: int = 50) -> list[Dossier]:
    """Emit a dossier for every documented gate event that has none yet (crash-safe catch-up)."""
    emitted = []
    for submission_id, seq, gate in pending(session)[:limit]:
        emitted.append(emit(session, settings, session.get(Submission, submission_id), gate, event_seq=seq))
        session.commit()
    return emitted


def emit_owed(engine: Engine, settings: Settings, submission_id: int) -> int:
    """The ``dossier.emit`` job: the dossiers a case's committed gate events still lack, each committed alone
    (a failure leaves the rest to ``govern dossier pending --emit`` and the scheduler)."""
    emitted = 0
    with make_session_factory(engine)() as session:
        for case_id, seq, gate in pending(session):
            if case_id == submission_id:
                emit(session, settings, session.get(Submission, case_id), gate, event_seq=seq)
                session.commit()
                emitted += 1
    return emitted


def absolute_path(settings: Settings, dossier: Dossier) -> Path:
    return settings.instance_path / DOSSIER_DIR / dossier.path

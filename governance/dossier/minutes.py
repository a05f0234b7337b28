"""What the minutes of a full-board meeting say, as plain values: who attended and in which capacity, and for each
agenda item the motion, the votes cast at the meeting, the recusals, the quorum at that item and the decision.

Everything is read from what was recorded (attendance rows, agenda items, signed votes, declarations, decisions);
nothing is typed into the minutes. Bilingual (English and Chinese) like the decision letter; rendered from
``reports/minutes.html``, signed and stored like a dossier (gate ``minutes``), embedding the record as
``minutes.json``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .. import queries
from ..committees import load_committee_rules
from ..config import Settings
from ..models import (ConflictDeclaration, Decision, Deployment, Meeting, MeetingAttendance, ModelVersion, Submission,
                      User, Vote, utcnow)
from .context import _iso
from .evidence import json_bytes
from .letter import OUTCOME_TITLES

TEMPLATE = "minutes.html"
#: Meeting statuses for which minutes are written (what happened is settled).
MINUTES_STATUSES = ("closed",)
CAPACITY_TITLES = {"member": ("Member", "委员"), "alternate": ("Alternate", "候补委员"),
                   "adviser": ("Adviser (consultant)", "独立顾问"), "guest": ("Guest", "列席人员")}
MEANING_TITLES = {"approve": ("Approve", "同意"), "approve_with_conditions": ("Approve with conditions", "附条件同意"),
                  "require_revisions": ("Require revisions", "要求修改"), "defer": ("Defer", "暂缓"),
                  "disapprove": ("Disapprove", "不同意"), "abstain": ("Abstain", "弃权")}


def _names(session: Session, ids: set[int]) -> dict[int, User]:
    if not ids:
        return {}
    return {u.id: u for u in session.execute(select(User).where(User.id.in_(ids))).scalars()}


def _attendance(session: Session, meeting: Meeting) -> list[dict[str, Any]]:
    rows = session.execute(select(MeetingAttendance).where(MeetingAttendance.meeting_id == meeting.id)
                           .order_by(MeetingAttendance.id)).scalars().all()
    people = _names(session, {r.user_id for r in rows} | {r.alternate_for_id for r in rows if r.alternate_for_id})
    attended = []
    for row in sorted(rows, key=lambda r: (not r.present, people[r.user_id].name)):
        person = people[row.user_id]
        sits_for = people.get(row.alternate_for_id) if row.alternate_for_id else None
        attended.append({"name": person.name, "name_zh": person.name_zh or "", "present": row.present,
                         "capacity": row.capacity, "capacity_title": CAPACITY_TITLES.get(row.capacity,
                                                                                         (row.capacity,) * 2),
                         "alternate_for": sits_for.name if sits_for else None,
                         "counts_as_member": row.present and queries.sits_as_member(session, row),
                         "scientist": person.is_scientist, "affiliated": person.is_affiliated})
    return attended


def _recusals(session: Session, submission: Submission) -> list[dict[str, Any]]:
    """Members whose standing declaration on the case is a conflict, with what they declared."""
    latest: dict[int, ConflictDeclaration] = {}
    for row in queries.declarations(session, submission):
        latest[row.user_id] = row
    conflicted = [row for row in latest.values() if row.has_conflict]
    people = _names(session, {row.user_id for row in conflicted})
    return [{"name": people[row.user_id].name, "statement": row.statement} for row in conflicted]


def _out_of_the_room(session: Session, meeting: Meeting, item) -> list[str]:
    """Attendees present at the meeting but out of the room for this item (late arrival, early departure)."""
    rows = session.execute(select(MeetingAttendance).where(MeetingAttendance.meeting_id == meeting.id,
                                                           MeetingAttendance.present.is_(True))).scalars().all()
    out = [row.user_id for row in rows if item.id in (row.absent_for_items or [])]
    people = _names(session, set(out))
    return sorted(people[user_id].name for user_id in out)


def _item(session: Session, settings: Settings, meeting: Meeting, item, number: int) -> dict[str, Any]:
    submission = session.get(Submission, item.submission_id)
    deployment = session.get(Deployment, submission.deployment_id)
    votes = session.execute(select(Vote).where(Vote.submission_id == submission.id, Vote.round == item.round,
                                               Vote.meeting_id == meeting.id).order_by(Vote.signed_at, Vote.id)).scalars().all()
    decision = session.execute(select(Decision).where(Decision.submission_id == submission.id,
                                                      Decision.round == item.round, Decision.meeting_id == meeting.id)
                               .order_by(Decision.id.desc()).limit(1)).scalar_one_or_none()
    if decision is not None and decision.quorum:
        quorum = decision.quorum  # as it stood when the decision was recorded
    elif submission.meeting_id == meeting.id and submission.round == item.round:
        quorum = queries.quorum_record(session, submission,
                                       load_committee_rules(settings.regulations_dir)).as_record()
    else:
        quorum = None
    people = _names(session, {i for i in (item.moved_by_id, item.seconded_by_id,
                                          decision.decided_by_id if decision else None) if i})
    counts = Counter(v.meaning for v in votes)
    version = session.get(ModelVersion, decision.model_version_id if decision else submission.model_version_id)
    return {
        "number": number, "case": submission.id, "title": submission.title, "round": item.round,
        "kind": submission.kind, "deployment": deployment.name, "model_version": version.version_label,
        "weights_digest": version.weights_digest,
        "motion": {"text": item.motion, "moved_by": people[item.moved_by_id].name if item.moved_by_id else None,
                   "seconded_by": people[item.seconded_by_id].name if item.seconded_by_id else None},
        "votes": [{"name": v.printed_name, "meaning": v.meaning, "meaning_title": MEANING_TITLES.get(v.meaning,
                                                                                                  (v.meaning,) * 2),
                   "signed_at": _iso(v.signed_at), "record_digest": v.record_digest} for v in votes],
        "tally": [{"meaning": m, "title": MEANING_TITLES.get(m, (m, m)), "count": counts[m]}
                  for m in MEANING_TITLES if counts[m]],
        "recusals": _recusals(session, submission),
        "out_of_the_room": _out_of_the_room(session, meeting, item),
        "quorum": {key: quorum.get(key) for key in ("met", "present", "eligible", "recused", "non_scientists",
                                                     "external", "shortfalls", "rule")} if quorum else None,
        "decision": {"id": decision.id, "outcome": decision.outcome,
                     "title": OUTCOME_TITLES.get(decision.outcome, (decision.outcome,) * 2),
                     "conditions": decision.conditions, "reason": decision.reason,
                     "decided_at": _iso(decision.decided_at),
                     "decided_by": people[decision.decided_by_id].name if decision.decided_by_id else None}
        if decision else None,
    }


def build(session: Session, settings: Settings, meeting: Meeting, *,
          chain: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The minutes' template context and their attachments (name -> bytes)."""
    if meeting.status not in MINUTES_STATUSES:
        raise ValueError(f"meeting {meeting.id} is {meeting.status}: minutes are written once it is closed")
    record = {
        "meeting": {"id": meeting.id, "title": meeting.title, "location": meeting.location, "status": meeting.status,
                    "scheduled_for": _iso(meeting.scheduled_for), "committee": meeting.committee},
        "attendance": _attendance(session, meeting),
        "items": [_item(session, settings, meeting, item, number)
                  for number, item in enumerate(queries.agenda(session, meeting), 1)],
        "chain_head": chain["head"],
    }
    attachments = {"minutes.json": json_bytes(record)}
    context = {
        **record,
        "institution": {"en": settings.institution_name, "zh": settings.institution_name_zh},
        "gate": "minutes", "gate_title": ("Minutes of the meeting", "会议纪要"),
        "generated_at": _iso(utcnow()), "demo": bool(settings.demo_mode),
        "reference": f"IRB-M{meeting.id}",
        "chain": chain,
        "evidence": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                     for name, data in sorted(attachments.items())],
    }
    return context, attachments

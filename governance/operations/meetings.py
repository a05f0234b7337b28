"""Full-board meetings: convening, attendance (which decides quorum), closing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..models import Meeting, MeetingAttendance, User
from ..errors import GovernanceError


def create_meeting(session: Session, *, title: str, scheduled_for: datetime, location: str = "",
                   actor: User) -> Meeting:
    meeting = Meeting(title=title.strip() or "Full-board meeting", scheduled_for=scheduled_for, location=location,
                      created_by_id=actor.id)
    session.add(meeting)
    session.flush()
    eventlog.append(session, "meeting_convened", actor=actor, payload={
        "meeting": meeting.id, "title": meeting.title, "scheduled_for": scheduled_for.isoformat(timespec="minutes")})
    return meeting


def record_attendance(session: Session, meeting: Meeting, member: User, *, present: bool, capacity: str = "member",
                      actor: User) -> MeetingAttendance:
    if meeting.status == "closed":
        raise GovernanceError(f"meeting {meeting.id} is closed")
    if capacity not in {"member", "adviser", "guest"}:
        raise GovernanceError("capacity is member, adviser or guest")
    row = session.execute(select(MeetingAttendance).where(MeetingAttendance.meeting_id == meeting.id,
                                                          MeetingAttendance.user_id == member.id)).scalars().first()
    if row is None:
        row = MeetingAttendance(meeting_id=meeting.id, user_id=member.id)
        session.add(row)
    row.present, row.capacity = present, capacity
    session.flush()
    eventlog.append(session, "attendance_recorded", actor=actor, payload={
        "meeting": meeting.id, "member": member.email, "present": present, "capacity": capacity})
    return row


def set_meeting_status(session: Session, meeting: Meeting, status: str, *, actor: User) -> None:
    if status not in {"scheduled", "in_session", "closed"}:
        raise GovernanceError("status is scheduled, in_session or closed")
    before = meeting.status
    meeting.status = status
    session.flush()
    eventlog.append(session, "meeting_status_changed", actor=actor, payload={
        "meeting": meeting.id, "from": before, "to": status})

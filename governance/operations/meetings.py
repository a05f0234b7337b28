"""Full-board meetings: convening, attendance (which decides quorum), the motion on each agenda item, closing.

Putting a case on the agenda, or taking it off, is a workflow event on the case (``schedule_meeting``,
``remove_from_agenda``): its guards decide who may, and its effects keep the agenda in order."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..models import ATTENDANCE_CAPACITIES, AgendaItem, Meeting, MeetingAttendance, User
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
                      alternate_for: User | None = None, absent_for: list[AgendaItem] | tuple = (),
                      actor: User) -> MeetingAttendance:
    """Who attended and in which capacity; an alternate names the member they sit for (and counts only while that
    member is absent: see :func:`governance.queries.sits_as_member`). ``absent_for``: the agenda items a present
    attendee was out of the room for (late arrival, early departure)."""
    if meeting.status == "closed":
        raise GovernanceError(f"meeting {meeting.id} is closed")
    if capacity not in ATTENDANCE_CAPACITIES:
        raise GovernanceError("capacity is " + ", ".join(ATTENDANCE_CAPACITIES))
    if (capacity == "alternate") != (alternate_for is not None):
        raise GovernanceError("an alternate names the member they sit for, and only an alternate does")
    if alternate_for is not None and alternate_for.id == member.id:
        raise GovernanceError("an alternate sits for another member")
    if any(item.meeting_id != meeting.id for item in absent_for):
        raise GovernanceError(f"an attendee is out of the room only for items of meeting {meeting.id}")
    row = session.execute(select(MeetingAttendance).where(MeetingAttendance.meeting_id == meeting.id,
                                                          MeetingAttendance.user_id == member.id)).scalars().first()
    if row is None:
        row = MeetingAttendance(meeting_id=meeting.id, user_id=member.id)
        session.add(row)
    row.present, row.capacity = present, capacity
    row.alternate_for_id = alternate_for.id if alternate_for is not None else None
    row.absent_for_items = sorted(item.id for item in absent_for) if present else []
    session.flush()
    payload = {"meeting": meeting.id, "member": member.email, "present": present, "capacity": capacity}
    if row.absent_for_items:
        payload["out_of_the_room_for_cases"] = sorted(item.submission_id for item in absent_for)
    if alternate_for is not None:
        payload["alternate_for"] = alternate_for.email
    eventlog.append(session, "attendance_recorded", actor=actor, payload=payload)
    return row


def record_motion(session: Session, item: AgendaItem, *, motion: str, moved_by: User | None,
                  seconded_by: User | None, actor: User) -> AgendaItem:
    """The motion put on an agenda item, who moved it and who seconded it, as the minutes will state it."""
    meeting = session.get(Meeting, item.meeting_id)
    if meeting.status == "closed":
        raise GovernanceError(f"meeting {meeting.id} is closed")
    motion = motion.strip()
    if not motion:
        raise GovernanceError("a motion states what is moved")
    if moved_by is not None and seconded_by is not None and moved_by.id == seconded_by.id:
        raise GovernanceError("a motion is seconded by another member than the one who moved it")
    item.motion = motion
    item.moved_by_id = moved_by.id if moved_by is not None else None
    item.seconded_by_id = seconded_by.id if seconded_by is not None else None
    session.flush()
    eventlog.append(session, "motion_recorded", actor=actor, submission_id=item.submission_id, payload={
        "meeting": meeting.id, "agenda_item": item.id, "motion": motion,
        "moved_by": moved_by.email if moved_by else None, "seconded_by": seconded_by.email if seconded_by else None})
    return item


def set_meeting_status(session: Session, meeting: Meeting, status: str, *, actor: User) -> None:
    """Scheduled, in session, closed: minutes are written for a closed meeting."""
    if status not in {"scheduled", "in_session", "closed"}:
        raise GovernanceError("status is scheduled, in_session or closed")
    before = meeting.status
    meeting.status = status
    session.flush()
    eventlog.append(session, "meeting_status_changed", actor=actor, payload={
        "meeting": meeting.id, "from": before, "to": status})

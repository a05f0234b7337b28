"""Notifications: always in the app, and by e-mail over SMTP when the instance has an SMTP host.

A notification with a ``dedupe_key`` is written at most once per person (a unique column), which is
what makes each continuing-review reminder go out once however often the scheduler runs. E-mail is a job
(``mail.send``) started after the transaction commits, so SMTP never runs inside a request; a message that
could not be sent keeps ``emailed_at`` empty and is retried by the next scheduler tick.
"""

from __future__ import annotations

import functools
import logging
import re
import smtplib
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import jobs
from .config import Settings
from .domain import N_
from .languages import language_of
from .db import make_session_factory
from .models import Notification, RoleAssignment, User, utcnow

log = logging.getLogger(__name__)
#: E-mails not sent within this window are given up (the in-app notification stays).
EMAIL_RETRY_WINDOW = timedelta(days=7)


#: The subjects of the notifications of review steps, by kind. They are stored in English; :func:`step_subject_parts`
#: gives the template and its values back, so a page shows them in the reader's language and an e-mail in the
#: recipient's.
STEP_SUBJECTS = {
    "assignment": N_("Case #%(case)s: you are assigned as a reviewer (due %(due)s)"),
    "return": N_("Case #%(case)s: returned to you by the IRB office"),
    "audit_finished": N_("Case #%(case)s: the audit passed; the case is in review"),
    "audit_failed": N_("Case #%(case)s: the audit did not pass (%(verdict)s); the case is held"),
    "decision": N_("Case #%(case)s: decision: %(outcome)s"),
    "revisions_required": N_("Case #%(case)s: decision: %(outcome)s"),
    "escalation": N_("Case #%(case)s escalated to the full board"),
    "amendment": N_("Case #%(case)s: amendment proposed to %(deployment)s"),
}


def step_subject(kind: str, **values) -> str:
    """The English subject of a review step's notification."""
    return STEP_SUBJECTS[kind] % {k: str(v).replace("_", " ") for k, v in values.items()}


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"%\((\w+)\)s", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts)))


def step_subject_parts(kind: str, subject: str) -> tuple[str, dict[str, str]] | None:
    """``(template, values)`` of a stored step subject, or None for any other notification."""
    template = STEP_SUBJECTS.get(kind)
    match = _pattern(template).fullmatch(subject) if template else None
    return (template, match.groupdict()) if match else None


def people_with_roles(session: Session, *roles: str) -> list[User]:
    return list(session.execute(select(User).join(RoleAssignment, RoleAssignment.user_id == User.id)
                                .where(RoleAssignment.role.in_(roles), User.active.is_(True))
                                .order_by(User.id).distinct()).scalars())


def notify(session: Session, settings: Settings, recipients: Iterable[User | None], *, kind: str, subject: str,
           body: str = "", link: str = "", dedupe_key: str | None = None,
           now: datetime | None = None) -> list[Notification]:
    """Write one notification per distinct recipient (skipping those already holding ``dedupe_key``)."""
    people = {user.id: user for user in recipients if user is not None and user.active}
    if not people:
        return []
    keys = {uid: f"{dedupe_key}:user{uid}" if dedupe_key else None for uid in people}
    if dedupe_key:
        existing = set(session.execute(select(Notification.dedupe_key).where(
            Notification.dedupe_key.in_([k for k in keys.values() if k]))).scalars())
        people = {uid: user for uid, user in people.items() if keys[uid] not in existing}
    created = []
    for uid in sorted(people):
        note = Notification(user_id=uid, kind=kind, subject=subject[:300], body=body, link=link[:300],
                            dedupe_key=keys[uid], created_at=now or utcnow())
        session.add(note)
        created.append(note)
    session.flush()
    if created and settings.smtp_host:
        jobs.enqueue(session, settings, "mail.send", ids=[note.id for note in created])
    return created


#: The catalogue folder of each language a person may choose (English is the source language).
CATALOGUES = {"zh": "zh_Hans_CN"}
TRANSLATIONS_DIR = Path(__file__).with_name("translations")
FOOTER = N_("%(institution)s ethics review")


@functools.lru_cache(maxsize=4)
def _translations(language: str):
    from babel.support import NullTranslations, Translations

    folder = CATALOGUES.get(language)
    return Translations.load(str(TRANSLATIONS_DIR), [folder]) if folder else NullTranslations()


def email_language(settings: Settings, user: User) -> str:
    """``"zh"`` or ``"en"``: the person's own language, else the instance's default."""
    return language_of(user.language or settings.default_locale)


def _message(settings: Settings, note: Notification, user: User) -> EmailMessage:
    """The e-mail of a notification in the recipient's language: a review step's subject is translated from its
    template (the values stay as stored), and so is the footer; other texts are sent as they were written."""
    language = email_language(settings, user)
    gettext = _translations(language).gettext
    subject = note.subject
    parts = step_subject_parts(note.kind, note.subject)
    if parts is not None:
        template, values = parts
        subject = gettext(template) % values
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = f"{user.name} <{user.email}>"
    message["Subject"] = f"[IRB] {subject}"
    link = f"\n\n{settings.server_name_url.rstrip('/')}{note.link}" if note.link else ""
    footer = gettext(FOOTER) % {"institution": settings.institution_name_zh if language == "zh"
                                else settings.institution_name}
    message.set_content(f"{note.body or subject}{link}\n\n— {footer}\n")
    return message


def send_emails(engine: Engine, settings: Settings, ids: list[int] | None = None,
                now: datetime | None = None) -> int:
    """Send the e-mails of notifications ``ids`` (or of every unsent recent one); returns how many went."""
    if not settings.smtp_host:
        return 0
    factory = make_session_factory(engine)
    with factory() as session:
        query = select(Notification, User).join(User, User.id == Notification.user_id).where(
            Notification.emailed_at.is_(None))
        if ids is not None:
            query = query.where(Notification.id.in_(ids))
        else:
            query = query.where(Notification.created_at >= (now or utcnow()) - EMAIL_RETRY_WINDOW)
        pending = session.execute(query.order_by(Notification.id)).all()
        if not pending:
            return 0
        sent = []
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls()
                if settings.smtp_username:
                    smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
                for note, user in pending:
                    smtp.send_message(_message(settings, note, user))
                    sent.append(note.id)
        except (OSError, smtplib.SMTPException) as exc:  # kept for the next tick; the in-app copy is there
            log.warning("e-mail via %s:%s failed after %d of %d messages: %s", settings.smtp_host,
                        settings.smtp_port, len(sent), len(pending), exc)
        if sent:
            session.execute(update(Notification).where(Notification.id.in_(sent)).values(emailed_at=utcnow()))
            session.commit()
        return len(sent)


def unread_count(session: Session, user: User) -> int:
    return session.execute(select(func.count(Notification.id)).where(
        Notification.user_id == user.id, Notification.read_at.is_(None))).scalar_one()

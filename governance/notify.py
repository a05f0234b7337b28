"""Notifications: always in the app, and by e-mail over SMTP when the instance has an SMTP host.

A notification with a ``dedupe_key`` is written at most once per person (a unique column), which is
what makes each continuing-review reminder go out once however often the scheduler runs. Each one is an event
(``notification_sent``) in the same transaction. E-mail is a job (``mail.send``) started after the transaction
commits, so SMTP never runs inside a request; a message that could not be sent keeps ``emailed_at`` empty and is
retried by the Celery task's retry policy and by the next scheduler tick. A person whose ``notification_delivery``
is ``daily`` gets no e-mail per notification but one digest a day (:func:`send_digests`, a scheduler step).
"""

from __future__ import annotations

import functools
import logging
import re
import smtplib
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import eventlog, jobs
from .config import Settings
from .domain import N_, NotificationDelivery
from .languages import language_of
from .db import make_session_factory
from .models import Notification, RoleAssignment, User, utcnow

log = logging.getLogger(__name__)
#: E-mails not sent within this window are given up (the in-app notification stays).
EMAIL_RETRY_WINDOW = timedelta(days=7)


#: The subjects of the notifications of review steps, by step (a step's name is its notification's kind unless
#: :data:`STEP_KINDS` says otherwise). They are stored in English; :func:`step_of` gives the step and its values
#: back, so a page shows them in the reader's language and an e-mail in the recipient's.
STEP_SUBJECTS = {
    "assignment": N_("Case #%(case)s: you are assigned as a reviewer (due %(due)s)"),
    "return": N_("Case #%(case)s: returned to you by the IRB office"),
    "audit_finished": N_("Case #%(case)s: the audit passed; the case is in review"),
    "audit_failed": N_("Case #%(case)s: the audit did not pass (%(verdict)s); the case is held"),
    "decision": N_("Case #%(case)s: decision: %(outcome)s"),
    "revisions_required": N_("Case #%(case)s: decision: %(outcome)s"),
    "escalation": N_("Case #%(case)s escalated to the full board"),
    "amendment": N_("Case #%(case)s: amendment proposed to %(deployment)s"),
    "meeting_scheduled": N_("Case #%(case)s: on the agenda of the full-board meeting of %(when)s"),
    "condition_due": N_("Condition %(number)s of the approval of %(deployment)s is due on %(due)s"),
    "blocking_condition_due": N_("Blocking condition %(number)s of the approval of %(deployment)s is due on %(due)s"),
}
#: The steps whose notification's kind is another step's (one kind on the pages, two wordings).
STEP_KINDS = {"blocking_condition_due": "condition_due"}
#: What each step's e-mail and in-app notification say: what happened and what the recipient should do (the
#: values are the subject's). A step without one shows its subject alone.
STEP_BODIES = {
    "assignment": N_("You are assigned to review case #%(case)s. Declare any conflict of interest, answer the "
                     "review checklist and vote by %(due)s."),
    "return": N_("The IRB office returned case #%(case)s to you before review. Complete what it asks for, then "
                 "submit the case again."),
    "audit_finished": N_("The technical audit of case #%(case)s passed and the case is now in review. Nothing is "
                         "needed from you unless the reviewers ask."),
    "audit_failed": N_("The technical audit of case #%(case)s did not pass (%(verdict)s) and the case is held. Read "
                       "the audit report, then fix the model and run the audit again, or ask for the case to go to "
                       "the full board."),
    "decision": N_("The committee decided on case #%(case)s: %(outcome)s. Read the decision and any conditions "
                   "on the case's page."),
    "revisions_required": N_("The committee requires revisions to case #%(case)s. Make the changes it asks for, "
                             "then submit the case again."),
    "escalation": N_("Case #%(case)s was escalated to the full board. Put it on the agenda of a full-board "
                     "meeting."),
    "meeting_scheduled": N_("Case #%(case)s will be heard at the full-board meeting of %(when)s. Members: read "
                            "the case and declare any conflict of interest before the meeting. Submitter: be ready "
                            "to answer the board's questions."),
    "condition_due": N_("Condition %(number)s of the approval of %(deployment)s is due on %(due)s. Record what "
                        "shows it met on the deployment's page."),
    "blocking_condition_due": N_("Condition %(number)s of the approval of %(deployment)s is due on %(due)s. Record "
                                 "what shows it met on the deployment's page. It is blocking: the deployment is "
                                 "suspended if it is still open on its due date."),
    "amendment": N_("An amendment to the approved scope of %(deployment)s was proposed as case #%(case)s. The "
                    "approved scope stays in force until the committee approves it: screen the case and read the "
                    "side-by-side comparison on its page."),
}
#: The values that are stored words of the interface (translated with the text around them).
STEP_TERMS = frozenset({"outcome", "verdict"})


def step_subject(step: str, **values) -> str:
    """The English subject of a review step's notification (its stored words as words: ``revisions required``)."""
    return STEP_SUBJECTS[step] % {k: str(v).replace("_", " ") if k in STEP_TERMS else str(v)
                                  for k, v in values.items()}


def step_kind(step: str) -> str:
    return STEP_KINDS.get(step, step)


@functools.lru_cache(maxsize=64)
def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"%\((\w+)\)s", template)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts)),
                      re.DOTALL)


def step_of(kind: str, subject: str) -> tuple[str, dict[str, str]] | None:
    """``(step, values)`` of a stored step subject, or None for any other notification."""
    for step, template in STEP_SUBJECTS.items():
        if step_kind(step) == kind:
            match = _pattern(template).fullmatch(subject)
            if match:
                return step, match.groupdict()
    return None


def step_texts(kind: str, subject: str, gettext: Callable[[str], str],
               word: Callable[[str, str], str] | None = None) -> tuple[str, str]:
    """``(subject, explanation)`` of a notification in the language of ``gettext``: a review step's subject and
    its explanation from their templates (``word(name, value)`` translates its values: all of them on the pages,
    the stored words in e-mails); any other notification's subject as stored and no explanation."""
    found = step_of(kind, subject)
    if found is None:
        return subject, ""
    step, values = found
    if word is not None:
        values = {name: word(name, value) for name, value in values.items()}
    body = STEP_BODIES.get(step)
    return gettext(STEP_SUBJECTS[step]) % values, gettext(body) % values if body else ""


def people_with_roles(session: Session, *roles: str) -> list[User]:
    return list(session.execute(select(User).join(RoleAssignment, RoleAssignment.user_id == User.id)
                                .where(RoleAssignment.role.in_(roles), User.active.is_(True))
                                .order_by(User.id).distinct()).scalars())


DAILY = NotificationDelivery.DAILY.value


def notify(session: Session, settings: Settings, recipients: Iterable[User | None], *, kind: str, subject: str,
           body: str = "", link: str = "", dedupe_key: str | None = None,
           now: datetime | None = None) -> list[Notification]:
    """Write one notification per distinct recipient (skipping those already holding ``dedupe_key``), each with its
    ``notification_sent`` event; e-mail those who want it at once after the commit."""
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
    for note in created:  # who was told what, never how to reach them nor the text
        eventlog.append(session, "notification_sent", actor=None, occurred_at=note.created_at, payload={
            "notification": note.id, "kind": note.kind, "recipient": note.user_id, "dedupe_key": note.dedupe_key,
            "delivery": people[note.user_id].notification_delivery})
    at_once = [note.id for note in created if people[note.user_id].notification_delivery != DAILY]
    if at_once and settings.smtp_host:
        jobs.enqueue(session, settings, "mail.send", ids=at_once)
    return created


#: The catalogue folder of each language a person may choose (English is the source language).
CATALOGUES = {"zh": "zh_Hans_CN"}
TRANSLATIONS_DIR = Path(__file__).with_name("translations")
FOOTER = N_("%(institution)s ethics review")
DIGEST_SUBJECT = N_("Your notifications of %(day)s: %(count)s")
DIGEST_INTRO = N_("What happened since your last digest. Open each link to act on it; you can choose to get an "
                  "e-mail per notification on your account page.")


@functools.lru_cache(maxsize=4)
def _translations(language: str):
    from babel.support import NullTranslations, Translations

    folder = CATALOGUES.get(language)
    return Translations.load(str(TRANSLATIONS_DIR), [folder]) if folder else NullTranslations()


def email_language(settings: Settings, user: User) -> str:
    """``"zh"`` or ``"en"``: the person's own language, else the instance's default."""
    return language_of(user.language or settings.default_locale)


def _texts(note: Notification, gettext: Callable[[str], str]) -> tuple[str, str]:
    """A notification's subject and explanation in the language of ``gettext`` (its stored words translated)."""
    return step_texts(note.kind, note.subject, gettext,
                      lambda name, value: gettext(value) if name in STEP_TERMS else value)


def _link(settings: Settings, note: Notification) -> str:
    """The absolute address of the notification's page (links are stored relative to the site)."""
    return f"{settings.server_name_url.rstrip('/')}{note.link}" if note.link else ""


def _footer(settings: Settings, language: str, gettext: Callable[[str], str]) -> str:
    return gettext(FOOTER) % {"institution": settings.institution_name_zh if language == "zh"
                              else settings.institution_name}


def _envelope(settings: Settings, user: User, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = f"{user.name} <{user.email}>"
    message["Subject"] = f"[IRB] {subject}"
    message.set_content(text)
    return message


def _message(settings: Settings, note: Notification, user: User) -> EmailMessage:
    """The e-mail of a notification in the recipient's language: a review step's subject and explanation are
    translated from their templates (the values stay as stored, its words translated), and so is the footer; the
    text someone wrote (a reason, conditions) is sent as it was written."""
    language = email_language(settings, user)
    gettext = _translations(language).gettext
    subject, explanation = _texts(note, gettext)
    paragraphs = [explanation or subject, note.body, _link(settings, note), f"— {_footer(settings, language, gettext)}"]
    return _envelope(settings, user, subject, "\n\n".join(p for p in paragraphs if p) + "\n")


def _digest(settings: Settings, user: User, notes: list[Notification], day: date) -> EmailMessage:
    """One e-mail listing ``notes`` in the recipient's language, each with its explanation, text and link."""
    language = email_language(settings, user)
    gettext = _translations(language).gettext
    items = []
    for note in notes:
        subject, explanation = _texts(note, gettext)
        lines = [f"* {subject}", *(f"  {line}" for line in (explanation, note.body, _link(settings, note)) if line)]
        items.append("\n".join(lines))
    subject = gettext(DIGEST_SUBJECT) % {"day": day.isoformat(), "count": len(notes)}
    text = "\n\n".join([gettext(DIGEST_INTRO), *items, f"— {_footer(settings, language, gettext)}"]) + "\n"
    return _envelope(settings, user, subject, text)


def _smtp(settings: Settings) -> smtplib.SMTP:
    smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10)
    try:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
    except BaseException:
        smtp.close()
        raise
    return smtp


def send_emails(engine: Engine, settings: Settings, ids: list[int] | None = None,
                now: datetime | None = None, *, strict: bool = False) -> int:
    """Send the e-mails of notifications ``ids`` (or of every unsent recent one) to the people who want them at
    once; returns how many went. What could not be sent is kept for the next try: with ``strict`` (the Celery
    task, which retries) the SMTP error is raised once the sent ones are recorded, otherwise it is logged."""
    if not settings.smtp_host:
        return 0
    factory = make_session_factory(engine)
    with factory() as session:
        query = select(Notification, User).join(User, User.id == Notification.user_id).where(
            Notification.emailed_at.is_(None), User.notification_delivery != DAILY)
        if ids is not None:
            query = query.where(Notification.id.in_(ids))
        else:
            query = query.where(Notification.created_at >= (now or utcnow()) - EMAIL_RETRY_WINDOW)
        pending = session.execute(query.order_by(Notification.id)).all()
        if not pending:
            return 0
        sent = []
        failure = None
        try:
            with _smtp(settings) as smtp:
                for note, user in pending:
                    smtp.send_message(_message(settings, note, user))
                    sent.append(note.id)
        except (OSError, smtplib.SMTPException) as exc:  # kept for the next try; the in-app copy is there
            log.warning("e-mail via %s:%s failed after %d of %d messages: %s", settings.smtp_host,
                        settings.smtp_port, len(sent), len(pending), exc)
            failure = exc
        if sent:
            session.execute(update(Notification).where(Notification.id.in_(sent)).values(emailed_at=utcnow()))
            session.commit()
        if failure is not None and strict:
            raise failure
        return len(sent)


def send_digests(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """The scheduler's daily step: one digest e-mail per person who chose ``daily``, listing their notifications
    not yet e-mailed, at most once per (UTC) day; each sent digest marks them e-mailed and is an event. Returns how
    many digests went; one that could not be sent is tried again at the next tick."""
    if not settings.smtp_host:
        return 0
    now = now or utcnow()
    today = now.date()
    factory = make_session_factory(engine)
    sent = 0
    with factory() as session:
        due = session.execute(select(User).where(
            User.notification_delivery == DAILY, User.active.is_(True),
            (User.digest_sent_on.is_(None)) | (User.digest_sent_on < today),
            select(Notification.id).where(Notification.user_id == User.id, Notification.emailed_at.is_(None),
                                          Notification.created_at >= now - EMAIL_RETRY_WINDOW).exists())
            .order_by(User.id)).scalars().all()
        for user in due:
            notes = list(session.execute(select(Notification).where(
                Notification.user_id == user.id, Notification.emailed_at.is_(None),
                Notification.created_at >= now - EMAIL_RETRY_WINDOW).order_by(Notification.id)).scalars())
            try:
                with _smtp(settings) as smtp:
                    smtp.send_message(_digest(settings, user, notes, today))
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("digest e-mail via %s:%s failed: %s", settings.smtp_host, settings.smtp_port, exc)
                break  # the server is not answering: the next tick tries every digest again
            user.digest_sent_on = today
            session.execute(update(Notification).where(Notification.id.in_([n.id for n in notes]))
                            .values(emailed_at=utcnow()))
            eventlog.append(session, "notification_digest_sent", actor=None, occurred_at=now, payload={
                "recipient": user.id, "day": today.isoformat(), "notifications": [n.id for n in notes]})
            session.commit()
            sent += 1
    return sent


def unread_count(session: Session, user: User) -> int:
    return session.execute(select(func.count(Notification.id)).where(
        Notification.user_id == user.id, Notification.read_at.is_(None))).scalar_one()

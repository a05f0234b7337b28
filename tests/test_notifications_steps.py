"""Every step someone must act on or needs to know is told to them: in the app always, by e-mail when the instance
has an SMTP host (issue 16). Each notification is written by the effect that performs the step."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from governance.db import get_db
from governance.models import Deployment, Event, Notification, User


def notes(session, user: User, kind: str | None = None) -> list[Notification]:
    query = select(Notification).where(Notification.user_id == user.id)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    return list(session.execute(query.order_by(Notification.id)).scalars())


def test_assigning_a_reviewer_tells_that_reviewer_once(session, factory):
    case = factory.case_in("in_review")
    reviewer, other = factory.person("ai1"), factory.person("ai2")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    told = notes(session, reviewer)
    assert len(told) == 1
    assert told[0].kind == "assignment" and f"Case #{case.id}" in told[0].subject
    assert told[0].link == f"/submissions/{case.id}"
    assert notes(session, other, "assignment") == []


def test_a_return_tells_the_submitter(session, factory):
    case = factory.case_in("returned")
    told = notes(session, factory.person("submitter"), "return")
    assert len(told) == 1 and told[0].body == "Add the data-protection impact assessment."
    assert f"Case #{case.id}" in told[0].subject


def test_revisions_required_tells_the_submitter(session, factory):
    case = factory.case_in("revisions_required")
    told = notes(session, factory.person("submitter"), "revisions_required")
    assert len(told) == 1 and "revisions required" in told[0].subject and f"#{case.id}" in told[0].subject
    assert "Fix the failing items." in told[0].body


def test_an_approval_tells_the_submitter(session, factory):
    case = factory.case_in("approved")
    told = notes(session, factory.person("submitter"), "decision")
    assert len(told) == 1 and "approved" in told[0].subject and f"#{case.id}" in told[0].subject


def test_a_finished_audit_tells_the_submitter(session, factory):
    factory.case_in("in_review")
    told = notes(session, factory.person("submitter"), "audit_finished")
    assert len(told) == 1 and "audit passed" in told[0].subject


def test_a_failed_audit_tells_the_submitter(session, factory):
    factory.case_in("held")
    assert len(notes(session, factory.person("submitter"), "audit_failed")) == 1


def test_an_escalation_tells_the_chair(session, factory):
    case = factory.case_in("held")
    factory.fire(case, "escalate", factory.person("submitter"), reason="The failing items are out of scope.")
    told = notes(session, factory.person("chair"), "escalation")
    assert len(told) == 1 and f"Case #{case.id}" in told[0].subject
    assert "out of scope" in told[0].body


def test_a_divergent_fast_track_escalation_tells_the_chair(session, factory):
    from .factories import PASSWORD

    case = factory.case_in("in_review")
    factory.ready_for_votes(case)
    factory.fire(case, "vote", factory.person("ai1"), meaning="approve", password=PASSWORD)
    factory.fire(case, "vote", factory.person("ai2"), meaning="disapprove", password=PASSWORD)
    assert case.pathway == "full_board"
    told = notes(session, factory.person("chair"), "escalation")
    assert len(told) == 1 and "disapprove" in told[0].body


def test_a_step_notification_reads_in_chinese_for_a_chinese_reader(app, factory):
    from .factories import PASSWORD

    case = factory.case_in("revisions_required")
    submitter = factory.person("submitter")
    client = app.test_client()
    assert client.post("/login", data={"email": submitter.email, "password": PASSWORD}).status_code in (302, 303)
    assert client.post("/locale/zh_CN", data={"next": "/"}).status_code == 302
    page = client.get("/notifications").get_data(as_text=True)
    assert f"案件 #{case.id}：决定：" in page and f"Case #{case.id}: decision" not in page
    english = app.test_client()
    english.post("/login", data={"email": submitter.email, "password": PASSWORD})
    assert f"Case #{case.id}: decision: revisions required" in english.get("/notifications").get_data(as_text=True)


# --- e-mail -------------------------------------------------------------------------------------------

def test_an_assignment_is_emailed_when_smtp_is_configured(mailing):
    factory, inbox = mailing()
    session = factory.session
    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    inbox.messages.clear()
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    assert [m["To"] for m in inbox.messages] == [f"Ai1 <{reviewer.email}>"]
    assert f"Case #{case.id}" in inbox.messages[0]["Subject"]
    assert f"/submissions/{case.id}" in inbox.messages[0].get_content()
    [note] = notes(session, reviewer, "assignment")
    assert note.emailed_at is not None


def test_a_chinese_reviewer_gets_the_assignment_in_chinese_and_can_choose_it_on_the_account_page(mailing):
    """The person's language (set on the account page, an event) decides the e-mail's subject and footer."""
    from .factories import PASSWORD

    factory, inbox = mailing(institution_name="Test Hospital", institution_name_zh="测试医院")
    app, session = factory.app, factory.session
    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    client = app.test_client()
    assert client.post("/login", data={"email": reviewer.email, "password": PASSWORD}).status_code == 302
    assert client.post("/account/language", data={"language": "zh_CN"}).status_code == 303
    assert "语言" in client.get("/account/").get_data(as_text=True)  # the pages follow at once
    session.expire_all()
    assert session.get(type(reviewer), reviewer.id).language == "zh_CN"
    inbox.messages.clear()
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    [message] = inbox.messages
    assert f"案件 #{case.id}：您已被分配为审查员" in message["Subject"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in message["Subject"])
    assert "测试医院伦理审查" in message.get_content()
    assert client.post("/account/language", data={"language": "fr"}).status_code == 400


# --- issue 16: every step in the recipient's language, the daily digest, an event per notification ------------

def _speaks(factory, key: str, language: str) -> User:
    """Person ``key`` with ``language`` saved as theirs (set before the step, as the account page would)."""
    person = factory.person(key)
    person.language = language
    factory.session.commit()
    return person


def _to(inbox, person: User) -> list:
    return [m for m in inbox.messages if person.email in m["To"]]


@pytest.mark.both_databases
def test_a_chinese_reviewer_is_told_of_the_assignment_in_the_app_and_by_email_in_chinese(mailing):
    """Done-when of issue 16: subject AND body of the e-mail are Chinese, with the case's absolute link."""
    factory, inbox = mailing(server_name_url="https://irb.test.hospital", institution_name_zh="测试医院")
    case = factory.case_in("in_review")
    reviewer = _speaks(factory, "ai1", "zh_Hans_CN")
    inbox.messages.clear()
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    [note] = notes(factory.session, reviewer, "assignment")
    [message] = _to(inbox, reviewer)
    assert message["Subject"].startswith(f"[IRB] 案件 #{case.id}：您已被分配为审查员（截止 ")
    text = message.get_content()
    assert f"您已被分配审查案件 #{case.id}。请申报任何利益冲突，填写审查清单，并在 " in text
    assert f"https://irb.test.hospital/submissions/{case.id}" in text
    assert "测试医院伦理审查" in text and "You are assigned" not in text
    factory.session.refresh(note)
    assert note.emailed_at is not None


def test_an_english_reviewer_is_told_in_english(mailing):
    factory, inbox = mailing(server_name_url="https://irb.test.hospital")
    case = factory.case_in("in_review")
    reviewer = _speaks(factory, "ai2", "en")
    inbox.messages.clear()
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    [message] = _to(inbox, reviewer)
    assert message["Subject"].startswith(f"[IRB] Case #{case.id}: you are assigned as a reviewer (due ")
    text = message.get_content()
    assert f"You are assigned to review case #{case.id}. Declare any conflict of interest" in text
    assert f"https://irb.test.hospital/submissions/{case.id}" in text
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _assigned(factory, recipient):
    case = factory.case_in("in_review")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=recipient.email)
    return case


def _escalated(factory, recipient):
    case = factory.case_in("held")
    factory.fire(case, "escalate", factory.person("submitter"), reason="The failing items are out of scope.")
    return case


def _scheduled(factory, recipient):
    from .factories import FULL_BOARD_EXAMPLE

    case = factory.case_in("in_review", FULL_BOARD_EXAMPLE)
    assert case.pathway == "full_board"
    factory.fire(case, "schedule_meeting", factory.person("chair"), meeting=factory.meeting().id)
    return case


def _condition_due(factory, recipient):
    from datetime import timedelta

    from governance.models import utcnow
    from governance.scheduler import tick

    case = factory.submission()
    factory.drive(case, "classified")
    factory.fire(case, "confirm_classification", factory.person("chair"))
    factory.ready_for_votes(case)
    factory.vote_all(case, "approve_with_conditions")
    factory.fire(case, "approve_with_conditions", factory.person("chair"), conditions="Monthly accuracy report.",
                 conditions_due=(utcnow() + timedelta(days=30)).date(), conditions_blocking=True)
    tick(get_db(factory.app).engine, factory.settings, now=utcnow() + timedelta(days=20))
    return case


#: kind, who is told, how the step happens, what their Chinese e-mail's subject and body say.
STEPS = [
    ("assignment", "ai1", _assigned, "您已被分配为审查员", "您已被分配审查案件"),
    ("return", "submitter", lambda f, r: f.case_in("returned"), "伦理委员会办公室已将其退回给您",
     "请补全所要求的内容，然后重新提交该案件"),
    ("audit_finished", "submitter", lambda f, r: f.case_in("in_review"), "审计通过，案件进入审查",
     "技术审计已通过，案件现已进入审查"),
    ("audit_failed", "submitter", lambda f, r: f.case_in("held"), "审计未通过", "请阅读审计报告"),
    ("decision", "submitter", lambda f, r: f.case_in("approved"), "决定：已批准", "委员会已就案件"),
    ("revisions_required", "submitter", lambda f, r: f.case_in("revisions_required"), "决定：", "委员会要求修改案件"),
    ("escalation", "chair", _escalated, "已提交全体会议审查", "请将其列入一次全体会议的议程"),
    ("meeting_scheduled", "board1", _scheduled, "全体会议的议程", "委员：请在会前阅读案件并申报任何利益冲突"),
    ("condition_due", "submitter", _condition_due, "阻断性条件", "若到期日仍未满足，部署将被暂停"),
]


@pytest.mark.parametrize(("kind", "key", "step", "subject", "body"), STEPS, ids=[s[0] for s in STEPS])
def test_every_step_is_told_in_the_app_and_by_email_in_the_recipients_language(mailing, kind, key, step, subject,
                                                                                body):
    factory, inbox = mailing()
    recipient = _speaks(factory, key, "zh_CN")
    step(factory, recipient)
    told = notes(factory.session, recipient, kind)
    assert len(told) == 1, [(n.kind, n.subject) for n in notes(factory.session, recipient)]
    [message] = [m for m in _to(inbox, recipient) if subject in m["Subject"] and body in m.get_content()]
    assert told[0].link and told[0].link in message.get_content()
    events = factory.session.execute(select(Event).where(Event.name == "notification_sent")).scalars().all()
    assert {"notification": told[0].id, "kind": kind, "recipient": recipient.id,
            "dedupe_key": told[0].dedupe_key, "delivery": "immediate"} in [e.payload for e in events]


def test_the_notification_page_explains_each_step_in_the_readers_language(app, factory):
    from .factories import PASSWORD

    case = factory.case_in("in_review")
    reviewer = factory.person("ai1")
    factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    client = app.test_client()
    client.post("/login", data={"email": reviewer.email, "password": PASSWORD})
    assert f"You are assigned to review case #{case.id}." in client.get("/notifications").get_data(as_text=True)
    assert client.post("/locale/zh_CN", data={"next": "/"}).status_code == 302
    page = client.get("/notifications").get_data(as_text=True)
    assert f"您已被分配审查案件 #{case.id}。" in page and "You are assigned" not in page


def test_a_notification_event_holds_neither_address_nor_text(session, factory):
    case = factory.case_in("returned")
    submitter = factory.person("submitter")
    [note] = notes(session, submitter, "return")
    [event] = [e for e in session.execute(select(Event).where(Event.name == "notification_sent")).scalars()
               if e.payload["notification"] == note.id]
    assert event.payload == {"notification": note.id, "kind": "return", "recipient": submitter.id,
                             "dedupe_key": None, "delivery": "immediate"}
    assert submitter.email not in str(event.payload) and "data-protection" not in str(event.payload)
    assert f"#{case.id}" not in str(event.payload)


# --- the daily digest ---------------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_a_daily_digest_reader_gets_no_email_at_once_and_one_digest_a_day(mailing):
    from datetime import timedelta

    from governance.models import utcnow
    from governance.scheduler import tick
    from .factories import PASSWORD

    factory, inbox = mailing(server_name_url="https://irb.test.hospital")
    engine, session = get_db(factory.app).engine, factory.session
    reviewer = _speaks(factory, "ai1", "zh_CN")
    client = factory.app.test_client()
    client.post("/login", data={"email": reviewer.email, "password": PASSWORD})
    assert "每天发送一封摘要电子邮件" in client.get("/account/").get_data(as_text=True)
    assert client.post("/account/delivery", data={"delivery": "daily"}).status_code == 303
    session.expire_all()
    assert session.get(User, reviewer.id).notification_delivery == "daily"
    assert session.execute(select(Event).where(Event.name == "notification_delivery_changed")).scalars().one() \
        .payload == {"user": reviewer.email, "from": "immediate", "to": "daily"}
    first, second = factory.case_in("in_review"), factory.case_in("in_review")
    inbox.messages.clear()
    for case in (first, second):
        factory.fire(case, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    assert _to(inbox, reviewer) == [] and len(notes(session, reviewer, "assignment")) == 2  # in the app at once

    now = utcnow()
    assert tick(engine, factory.settings, now=now).digests == 1
    [digest] = _to(inbox, reviewer)
    text = digest.get_content()
    assert digest["Subject"] == f"[IRB] 您 {now.date().isoformat()} 的通知：2 条"
    for case in (first, second):
        assert f"您已被分配审查案件 #{case.id}。" in text and f"https://irb.test.hospital/submissions/{case.id}" in text
    session.expire_all()
    emailed = notes(session, reviewer, "assignment")
    assert len(emailed) == 2 and all(n.emailed_at is not None for n in emailed)

    third = factory.case_in("in_review")
    factory.fire(third, "assign_reviewer", factory.person("chair"), reviewer=reviewer.email)
    assert tick(engine, factory.settings, now=now + timedelta(minutes=5)).digests == 0  # once a day
    assert len(_to(inbox, reviewer)) == 1
    assert tick(engine, factory.settings, now=now + timedelta(days=1)).digests == 1  # the next day: the third
    assert f"#{third.id}" in _to(inbox, reviewer)[-1].get_content()
    assert len(session.execute(select(Event).where(Event.name == "notification_digest_sent")).scalars().all()) == 2


def test_delivery_must_be_immediate_or_daily(session, factory):
    from governance.errors import GovernanceError
    from governance.operations.users import set_notification_delivery

    person = factory.person("ai1")
    with pytest.raises(GovernanceError):
        set_notification_delivery(session, person, "weekly", actor=person)


# --- the condition-due reminders ------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_a_condition_due_reminder_goes_once_before_and_once_on_the_due_date(app, factory):
    from datetime import timedelta

    from governance.models import ApprovalCondition, utcnow
    from governance.scheduler import tick

    engine, settings, session = get_db(app).engine, app.config["GOVERNANCE"], factory.session
    owner = factory.person("submitter")
    case = factory.submission()
    factory.drive(case, "classified")
    factory.fire(case, "confirm_classification", factory.person("chair"))
    factory.ready_for_votes(case)
    factory.vote_all(case, "approve_with_conditions")
    due = (utcnow() + timedelta(days=30)).date()
    factory.fire(case, "approve_with_conditions", factory.person("chair"), conditions="Monthly accuracy report.",
                 conditions_due=due, conditions_blocking=False)
    [condition] = session.execute(select(ApprovalCondition).where(
        ApprovalCondition.deployment_id == case.deployment_id)).scalars().all()
    for days in (1, 20, 21, 25):  # not yet, then the reminder once
        tick(engine, settings, now=utcnow() + timedelta(days=days))
    session.expire_all()
    [before] = notes(session, owner, "condition_due")
    deployment = session.get(Deployment, case.deployment_id)
    assert before.subject == f"Condition 1 of the approval of {deployment.name} is due on {due.isoformat()}"
    assert before.link == f"/deployments/{deployment.id}#conditions"
    for days in (30, 30, 31):  # on the due date (and later ticks) once
        tick(engine, settings, now=utcnow().replace(hour=12) + timedelta(days=days))
    session.expire_all()
    told = notes(session, owner, "condition_due")
    assert len(told) == 2 and told[1].dedupe_key == f"condition-due-date:{condition.id}:user{owner.id}"
    assert "Monthly accuracy report." in told[1].body


# --- e-mail on a Celery worker: retried --------------------------------------------------------------------------

def test_the_celery_email_task_retries_smtp_and_connection_failures_with_backoff():
    """Checked in a process of its own (importing the worker module configures its Celery app)."""
    import json
    import subprocess
    import sys

    script = ("import json, smtplib, governance.tasks as t; task = t.celery.tasks['governance.send_mail']; "
              "print(json.dumps({'retries_smtp': issubclass(smtplib.SMTPServerDisconnected, task.autoretry_for), "
              "'retries_refused': issubclass(ConnectionRefusedError, task.autoretry_for), "
              "'retries_bugs': issubclass(KeyError, task.autoretry_for), 'max_retries': task.max_retries, "
              "'backoff': task.retry_backoff, 'backoff_max': task.retry_backoff_max, 'jitter': task.retry_jitter, "
              "'acks_late': task.acks_late}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    policy = json.loads(done.stdout.strip().splitlines()[-1])
    assert policy == {"retries_smtp": True, "retries_refused": True, "retries_bugs": False, "max_retries": 8,
                      "backoff": 30, "backoff_max": 3600, "jitter": True, "acks_late": True}


def test_mail_goes_to_the_retried_task_when_a_broker_is_configured(app, monkeypatch):
    from governance import jobs

    sent = []

    class Client:
        def send_task(self, name, args, queue):
            sent.append((name, args, queue))

    monkeypatch.setattr(jobs, "_celery_client", lambda url: Client())
    settings = app.config["GOVERNANCE"].replace(broker_url="redis://127.0.0.1:6379/15", mail_dispatch="auto")
    assert jobs.dispatch(get_db(app).engine, settings, "mail.send", {"ids": [1]}) == "celery"
    assert sent == [("governance.send_mail", ["mail.send", {"ids": [1]}], "governance")]
    assert jobs.runner_for("mail.send", settings.replace(broker_url="")) == "thread"  # in-process without one


def test_an_smtp_failure_is_raised_for_the_task_to_retry_and_logged_otherwise(app, factory):
    import socket

    from governance.notify import send_emails

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    case = factory.case_in("returned")
    [note] = notes(factory.session, factory.person("submitter"), "return")
    settings = app.config["GOVERNANCE"].replace(smtp_host="127.0.0.1", smtp_port=port)
    engine = get_db(app).engine
    assert send_emails(engine, settings, [note.id]) == 0  # the in-process runner logs it; the tick retries
    with pytest.raises(ConnectionRefusedError):
        send_emails(engine, settings, [note.id], strict=True)
    factory.session.refresh(note)
    assert note.emailed_at is None and note.link == f"/submissions/{case.id}"

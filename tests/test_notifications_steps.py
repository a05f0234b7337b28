"""Every step someone must act on or needs to know is told to them: in the app always, by e-mail when the instance
has an SMTP host (issue 16). Each notification is written by the effect that performs the step."""

from __future__ import annotations


from sqlalchemy import select

from governance.models import Notification, User


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
    assert all(n.emailed_at is not None for n in notes(session, reviewer, "assignment"))


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

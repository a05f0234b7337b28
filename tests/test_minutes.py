"""Meetings as committees run them (issue 15): an agenda built from the cases ready for the board (chosen, never
typed as an id), attendance with an alternate who counts only in place of an absent member, the motion on each
item, and minutes generated from what was recorded as a signed bilingual PDF that `govern dossier verify` passes;
the decision letter of a case decided at the meeting verifies too."""

from __future__ import annotations

import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from sqlmodel import select

from governance import queries
from governance.committees import load_committee_rules
from governance.db import get_db
from governance.dossier import keys as signing_keys
from governance.models import AgendaItem, Dossier, Event, MeetingAttendance, utcnow
from governance.operations import GovernanceError, TransitionRefused
from governance.operations.dossiers import absolute_path, emit, emit_minutes
from governance.operations.meetings import create_meeting, record_attendance, record_motion, set_meeting_status

from .factories import FULL_BOARD_EXAMPLE, PASSWORD
from .test_web import login

pytestmark = pytest.mark.both_databases

MOTION_1 = "That the EMR generation model be approved for clinical use."
MOTION_2 = "That revisions be required before the board decides."
RECUSAL = "Holds shares in the vendor."
REVISIONS = "Add the bias report for paediatric patients."


def _text(path) -> str:
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    return " ".join(text.split())


def _board_case(factory):
    case = factory.case_in("in_review", example=FULL_BOARD_EXAMPLE)
    assert case.pathway == "full_board" and case.state == "in_review"
    return case


def _vote(factory, case, members, meaning):
    for member in members:
        factory.fire(case, "declare_conflict", member, has_conflict=False)
        factory.fire(case, "vote", member, meaning=meaning, password=PASSWORD)


def _attend(factory, meeting, alternate):
    """Chair and board1-4 present as members, board5 absent, ``alternate`` sitting for board5."""
    chair = factory.person("chair")
    for member in factory.board[:5]:
        record_attendance(factory.session, meeting, member, present=True, actor=chair)
    record_attendance(factory.session, meeting, factory.person("board5"), present=False, actor=chair)
    record_attendance(factory.session, meeting, alternate, present=True, capacity="alternate",
                      alternate_for=factory.person("board5"), actor=chair)
    factory.session.commit()


@pytest.fixture(scope="module")
def held(tmp_path_factory, sqlite_template):
    """One closed meeting with two cases, decided, its minutes issued through `govern meeting minutes` and one case's
    decision letter: rendered once (PDFs are slow) and shared by the tests that read the files."""
    from .conftest import CliRunner, make_app
    from .factories import Factory

    folder = tmp_path_factory.mktemp("minutes")
    database = folder / "governance.sqlite3"
    shutil.copy(sqlite_template, database)
    (folder / "instance").mkdir()
    app = make_app(folder / "instance", f"sqlite:///{database}", signing_passphrase="test signing passphrase")
    settings = app.config["GOVERNANCE"]
    signing_keys.init_keys(settings)
    session = get_db(app).session_factory()
    factory = Factory(app, session)
    chair = factory.person("chair")
    alternate = factory.user("irb_member", email="alternate@test.hospital", name="Alma Alternate",
                             scientist=True, affiliated=False)
    late = factory.user("irb_member", email="late@test.hospital", name="Leo Late")
    first, second = _board_case(factory), _board_case(factory)
    meeting = create_meeting(session, title="December board", scheduled_for=utcnow(),
                             location="Room 3", actor=chair)
    session.commit()
    _attend(factory, meeting, alternate)
    for case in (first, second):
        factory.fire(case, "schedule_meeting", chair, meeting=meeting.id)
    first_item, second_item = queries.agenda(session, meeting)
    # Leo left before the second item
    record_attendance(session, meeting, late, present=True, absent_for=[second_item], actor=chair)
    record_motion(session, first_item, motion=MOTION_1, moved_by=factory.person("board1"),
                  seconded_by=factory.person("board2"), actor=chair)
    record_motion(session, second_item, motion=MOTION_2, moved_by=factory.person("board3"),
                  seconded_by=alternate, actor=chair)
    session.commit()
    # the first case: every member present votes to approve, the alternate in board5's place
    voters = [*factory.board[:5], alternate]
    _vote(factory, first, [*voters, late], "approve")
    factory.satisfy_blocking_obligations(first)
    factory.fire(first, "approve", chair)
    # the second: board1 is recused; the rest require revisions
    factory.fire(second, "declare_conflict", factory.person("board1"), has_conflict=True, statement=RECUSAL)
    _vote(factory, second, [m for m in voters if m.email != "board1@test.hospital"], "require_revisions")
    factory.fire(second, "require_revisions", chair, reason=REVISIONS)
    set_meeting_status(session, meeting, "closed", actor=chair)
    session.commit()
    runner = CliRunner(app)
    result = runner.invoke("meeting", "minutes", str(meeting.id), "--as", chair.email)
    assert result.exit_code == 0, result.output
    minutes = session.execute(select(Dossier).where(Dossier.meeting_id == meeting.id)).scalars().one()
    decided = session.execute(select(Event).where(Event.submission_id == second.id,
                                                  Event.name == "require_revisions")).scalars().one()
    letter = emit(session, settings, second, "letter", event_seq=decided.seq)
    session.commit()
    yield SimpleNamespace(app=app, settings=settings, runner=runner, meeting_id=meeting.id, cases=(first.id, second.id),
                          minutes=minutes, letter=letter, path=absolute_path(settings, minutes),
                          text=_text(absolute_path(settings, minutes)), session=session)
    session.close()
    get_db(app).dispose()


def test_minutes_state_the_attendance_in_both_languages(held):
    text = held.text
    assert "Minutes of the meeting" in text and "会议纪要" in text
    assert "December board" in text and "Room 3" in text
    assert "Alma Alternate" in text and "alternate for Board5" in text and "代替 Board5" in text
    assert re.search(r"Board5 Member / 委员 absent / 缺席", text)
    assert "Adviser" not in text  # nobody attended as an adviser


def test_minutes_state_each_item_motion_tally_recusal_quorum_and_decision(held):
    first, second = held.cases
    text = held.text
    one, two = text.split(f"Case 项目 #{first}")[1].split(f"Case 项目 #{second}")
    assert MOTION_1 in one and "Moved by 动议人: Board1" in one and "Seconded by 附议人: Board2" in one
    assert "Approve / 同意: 7" in one and "Quorum met / 达到法定人数" in one
    assert "Out of the room" not in one and "Out of the room 未在场 Leo Late" in two
    assert "Approval / 批准 (approved)" in one and "Recusals 回避 None. 无。" in one
    assert MOTION_2 in two and "Seconded by 附议人: Alma Alternate" in two
    assert "Require revisions / 要求修改: 5" in two and "Board1 recused / 回避: " + RECUSAL in two
    assert "Revisions required / 修改后再审 (revisions_required)" in two and REVISIONS in two
    assert "Eligible members present 合格出席委员 (5)" in two  # board1 recused, Leo out, the alternate counted
    assert "Leo Late" not in two.split("Eligible members present")[1].split("Non-scientists")[0]


def test_minutes_verify_with_govern_dossier_verify_and_a_flipped_byte_fails(held, tmp_path):
    result = held.runner.invoke("dossier", "verify", str(held.path))
    assert result.exit_code == 0, result.output
    assert f"matches stored dossier {held.minutes.id}" in result.output
    data = bytearray(held.path.read_bytes())
    offset = data.index(b"/Contents") - 200  # inside the signed bytes
    data[offset] ^= 0x01
    tampered = tmp_path / "minutes.pdf"
    tampered.write_bytes(bytes(data))
    result = held.runner.invoke("dossier", "verify", str(tampered))
    assert result.exit_code == 1


def test_the_minutes_embed_the_record_and_are_recorded_as_the_meeting_s_dossier(held):
    from governance.dossier.verify import verify

    report = verify(held.path, [signing_keys.load_certificate(held.settings)], expected_sha256=held.minutes.sha256)
    assert report.ok, report.failures
    assert report.details["manifest"]["gate"] == "minutes" and report.details["manifest"]["meeting"] == held.meeting_id
    assert list(report.details["manifest"]["attachments"]) == ["minutes.json"]
    assert held.minutes.gate == "minutes" and held.minutes.submission_id is None
    assert held.minutes.path.startswith(f"meeting-{held.meeting_id}/")
    event = held.session.execute(select(Event).where(Event.name == "dossier_emitted")
                                 .order_by(Event.seq.desc()).limit(2)).scalars().all()
    payloads = [e.payload for e in event if e.payload.get("gate") == "minutes"]
    assert payloads and payloads[0]["items"] == list(held.cases)


def test_the_decision_letter_of_a_case_decided_at_the_meeting_verifies(held):
    path = absolute_path(held.settings, held.letter)
    result = held.runner.invoke("dossier", "verify", str(path))
    assert result.exit_code == 0, result.output
    text = _text(path)
    assert "Revisions required" in text and REVISIONS in text


# --- without rendering ----------------------------------------------------------------------------------------

def test_an_alternate_counts_only_in_place_of_an_absent_member(factory, session):
    chair = factory.person("chair")
    alternate = factory.user("irb_member", name="Alternate")
    case = _board_case(factory)
    meeting = factory.meeting(present=factory.board[:5])
    factory.fire(case, "schedule_meeting", chair, meeting=meeting.id)
    record_attendance(session, meeting, alternate, present=True, capacity="alternate",
                      alternate_for=factory.person("board5"), actor=chair)
    session.commit()
    rules = load_committee_rules(factory.settings.regulations_dir)
    assert "Alternate" in [u.name for u in queries.quorum_record(session, case, rules).eligible_members]
    # board5 arrives: the alternate no longer sits, neither counts to quorum nor votes
    record_attendance(session, meeting, factory.person("board5"), present=True, actor=chair)
    session.commit()
    assert "Alternate" not in [u.name for u in queries.quorum_record(session, case, rules).eligible_members]
    factory.fire(case, "declare_conflict", alternate, has_conflict=False)
    with pytest.raises(TransitionRefused) as refused:
        factory.fire(case, "vote", alternate, meaning="approve", password=PASSWORD)
    session.rollback()
    assert refused.value.guard == "actor_may_vote" and "alternate" in refused.value.reason
    with pytest.raises(GovernanceError):
        record_attendance(session, meeting, alternate, present=True, capacity="alternate", actor=chair)


def test_a_member_out_of_the_room_for_an_item_neither_counts_nor_votes_on_it(factory, session):
    chair = factory.person("chair")
    first, second = _board_case(factory), _board_case(factory)
    meeting = factory.meeting()
    for case in (first, second):
        factory.fire(case, "schedule_meeting", chair, meeting=meeting.id)
    _, second_item = queries.agenda(session, meeting)
    late = factory.person("board2")
    record_attendance(session, meeting, late, present=True, absent_for=[second_item], actor=chair)
    session.commit()
    rules = load_committee_rules(factory.settings.regulations_dir)
    assert late in queries.quorum_record(session, first, rules).eligible_members
    assert late not in queries.quorum_record(session, second, rules).eligible_members
    factory.fire(second, "declare_conflict", late, has_conflict=False)
    refusal = factory.refused(second, "vote", late, meaning="approve", password=PASSWORD)
    assert refusal.guard == "actor_may_vote" and "out of the room" in refusal.reason
    _vote(factory, first, [late], "approve")  # there for the first item


def test_minutes_wait_for_the_meeting_to_close(factory, session):
    meeting = factory.meeting(present=[])
    with pytest.raises(GovernanceError, match="closed"):
        emit_minutes(session, factory.settings, meeting, actor=factory.person("chair"))


def test_a_case_is_taken_off_the_agenda_until_someone_votes_and_the_order_is_kept(factory, session):
    chair = factory.person("chair")
    meeting = factory.meeting()
    cases = [_board_case(factory) for _ in range(3)]
    for case in cases:
        factory.fire(case, "schedule_meeting", chair, meeting=meeting.id)
    assert [(i.submission_id, i.position) for i in queries.agenda(session, meeting)] == \
        [(cases[0].id, 1), (cases[1].id, 2), (cases[2].id, 3)]
    factory.fire(cases[1], "remove_from_agenda", chair)
    assert cases[1].meeting_id is None and cases[1] in queries.ready_for_board(session)
    assert [(i.submission_id, i.position) for i in queries.agenda(session, meeting)] == \
        [(cases[0].id, 1), (cases[2].id, 2)]
    _vote(factory, cases[0], [factory.person("board1")], "approve")
    refusal = factory.refused(cases[0], "remove_from_agenda", chair)
    assert refusal.guard == "no_votes_at_the_meeting"


# --- the chair's pages -------------------------------------------------------------------------------------------

@pytest.fixture
def app_overrides():
    return {"signing_passphrase": "test signing passphrase"}


def test_the_chair_builds_the_agenda_records_an_alternate_and_issues_minutes_on_the_web(factory, session, client, app):
    signing_keys.init_keys(app.config["GOVERNANCE"])
    chair = factory.person("chair")
    alternate = factory.user("irb_member", name="Web Alternate")
    case = _board_case(factory)
    meeting = factory.meeting(present=[])
    login(client, chair)
    page = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert "Cases ready for the board" in page and f"#{case.id} {case.title}" in page
    # the case page offers the meeting as a choice, not a field for its id
    case_page = client.get(f"/submissions/{case.id}").get_data(as_text=True)
    assert re.search(rf'<option value="{meeting.id}">{meeting.title} — ', case_page)
    response = client.post(f"/meetings/{meeting.id}/agenda", data={"submission": case.id})
    assert response.status_code == 303
    session.refresh(case)
    assert case.meeting_id == meeting.id
    [item] = session.execute(select(AgendaItem).where(AgendaItem.meeting_id == meeting.id)).scalars().all()
    present = [*factory.board[:5], alternate]
    form = {"present": [m.id for m in present], f"capacity-{alternate.id}": "alternate",
            f"alternate-for-{alternate.id}": factory.person("board5").id,
            f"absent-for-{factory.person('board1').id}": [item.id]}
    assert client.post(f"/meetings/{meeting.id}/attendance", data=form).status_code == 303
    rows = {r.user_id: r for r in session.execute(select(MeetingAttendance)
                                                  .where(MeetingAttendance.meeting_id == meeting.id)).scalars()}
    assert rows[alternate.id].capacity == "alternate"
    assert rows[alternate.id].alternate_for_id == factory.person("board5").id
    assert rows[factory.person("board1").id].absent_for_items == [item.id]
    assert client.post(f"/meetings/{meeting.id}/agenda/{item.id}/motion",
                       data={"motion": MOTION_1, "moved_by": factory.person("board1").id,
                             "seconded_by": alternate.id}).status_code == 303
    session.expire_all()
    assert session.get(AgendaItem, item.id).seconded_by_id == alternate.id
    page = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert MOTION_1 in page and "Generate minutes" not in page
    client.post(f"/meetings/{meeting.id}/status", data={"status": "closed"})
    page = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert "Generate minutes" in page and "Cases ready for the board" not in page
    assert client.post(f"/meetings/{meeting.id}/minutes").status_code == 303
    [minutes] = session.execute(select(Dossier).where(Dossier.meeting_id == meeting.id)).scalars().all()
    page = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    link = f"/meetings/{meeting.id}/minutes/{minutes.id}"
    assert link in page
    download = client.get(link)
    body = download.data
    download.close()  # the file send_file opened
    assert download.status_code == 200 and body.startswith(b"%PDF")
    assert body == absolute_path(app.config["GOVERNANCE"], minutes).read_bytes()
    # a submitter may not download minutes
    client.post("/logout")
    login(client, factory.person("submitter"))
    assert client.get(link).status_code == 403


def test_a_closed_meeting_offers_no_attendance_form_its_operation_would_refuse(factory, client):
    """Attendance is part of the record the minutes state: once the meeting is closed the page shows it read-only
    instead of a button whose every use is refused."""
    chair = factory.person("chair")
    meeting = factory.meeting()
    login(client, chair)
    page = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert "Record attendance" in page and f'action="/meetings/{meeting.id}/attendance"' in page
    client.post(f"/meetings/{meeting.id}/status", data={"status": "closed"})
    page = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    assert "Record attendance" not in page and f'action="/meetings/{meeting.id}/attendance"' not in page
    assert "The meeting is closed: its attendance is kept as recorded." in page
    assert re.search(rf'name="present" value="{chair.id}" aria-label="{chair.name}" checked disabled', page)
    assert f'action="/meetings/{meeting.id}/status"' in page  # the chair may still reopen it


def test_the_live_quorum_says_what_the_page_says_in_the_reader_s_language(factory, client):
    """The live indicator replaces the quorum and votes cells with the words the server renders them with (not
    symbols, not a bare count), and the shortfalls are translated like every other refusal."""
    case = _board_case(factory)
    meeting = factory.meeting(present=factory.board[:4])
    factory.fire(case, "schedule_meeting", factory.person("chair"), meeting=meeting.id)
    _vote(factory, case, factory.board[1:3], "approve")
    login(client, factory.person("chair"))
    for language, not_met, shortfall in (("en", "not met", "4 eligible members present, 5 needed"),
                                         ("zh-CN", "未达到", "出席的有表决资格委员 4 名，需要 5 名")):
        headers = {"Accept-Language": language}
        page = client.get(f"/meetings/{meeting.id}", headers=headers).get_data(as_text=True)
        [row] = client.get(f"/meetings/{meeting.id}/quorum.json", headers=headers).get_json()["agenda"]
        assert row["quorum_label"] == not_met and shortfall in row["shortfall_text"]
        assert row["votes_label"] == f"2 — {'approve' if language == 'en' else '同意'} 2"
        assert f'<span class="quorum unmet">{not_met}</span>' in page
        assert f'<div class="small js-shortfalls">{row["shortfall_text"]}</div>' in page
        assert f'<td class="js-votes">{row["votes_label"]}</td>' in page


def test_the_meeting_page_offers_taking_a_case_off_the_agenda_only_before_anyone_voted(factory, session, client):
    chair = factory.person("chair")
    meeting = factory.meeting()
    cases = [_board_case(factory) for _ in range(2)]
    for case in cases:
        factory.fire(case, "schedule_meeting", chair, meeting=meeting.id)
    _vote(factory, cases[0], [factory.person("board1")], "approve")
    login(client, chair)
    page = client.get(f"/meetings/{meeting.id}").get_data(as_text=True)
    items = {i.submission_id: i.id for i in queries.agenda(session, meeting)}
    assert f'/meetings/{meeting.id}/agenda/{items[cases[1].id]}/remove' in page
    assert f'/meetings/{meeting.id}/agenda/{items[cases[0].id]}/remove' not in page  # refused once a vote is cast

"""The committee story in a real browser, through the pages only (issue 15): the owner of an approved, active
deployment proposes an amendment that opens it to patients and the public and attaches a document to the case;
the chair screens it (a material change: full board), the audit runs on the demo backend, the chair convenes a
meeting, adds the case to its agenda from the cases ready for the board, records attendance with an alternate and
assigns two primary reviewers; they declare, answer the checklist and sign their votes, the other members present
vote without it; the chair records the motion and the decision, closes the meeting and issues the minutes; the
minutes, the decision letter and the decision dossier are downloaded and verify offline, the dossier listing the
document's sha256; the deployment then runs with the amended scope."""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from governance.dossier import keys as signing_keys
from governance.models import Deployment

from ..factories import PASSWORD, Factory
from ..support.pdfs import one_page_pdf
from .actors import Cast, card, case_state, click_action, flash, verified_offline

pytestmark = pytest.mark.browser

AUDIT_TIMEOUT_MS = 60_000
DOSSIER_TIMEOUT_MS = 60_000  # the decision and the minutes are rendered and signed before the request answers
LIVE_TIMEOUT_MS = 20_000  # the meeting page asks for the quorum every 5 seconds
DOCUMENT_NAME = "amendment-impact-assessment.pdf"


def pdf_text(path) -> tuple[str, str]:
    """The text of a PDF twice: its words one space apart (prose), and with its line breaks removed (long digests
    wrap across lines)."""
    raw = subprocess.run(["pdftotext", "-raw", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                         check=True).stdout
    return " ".join(raw.split()), raw.replace("\n", "")


def download(page: Page, link, folder):
    """Click ``link``, wait for the download and save it under its suggested name."""
    with page.expect_download(timeout=DOSSIER_TIMEOUT_MS) as downloading:
        link.click()
    done = downloading.value
    path = folder / done.suggested_filename
    done.save_as(path)
    assert path.read_bytes().startswith(b"%PDF-")
    return done.suggested_filename, path


def test_an_amendment_through_a_full_board_meeting_in_the_browser(browser: Browser, live_server, live_factory,
                                                                  screenshot, tmp_path):
    # the first story, already told (its audit inline, not in the live server's worker thread): an active
    # deployment approved on the fast track
    f = Factory(live_server.app, live_factory.session, settings=live_server.settings.replace(audit_dispatch="inline"))
    approved = f.case_in("approved")
    deployment = f.session.get(Deployment, approved.deployment_id)
    assert deployment.status == "active" and deployment.descriptor["public_facing"] is False
    owner, chair = f.person("submitter"), f.person("chair")
    primaries = [f.user("irb_member", email="zhao.lan@test.hospital", name="Zhao Lan"),
                 f.user("irb_member", email="sun.wei@test.hospital", name="Sun Wei")]
    lay_member = f.user("irb_member", email="ma.li@test.hospital", name="Ma Li", scientist=False)
    external = f.user("irb_member", email="he.jun@test.hospital", name="He Jun", affiliated=False)
    absent = f.user("irb_member", email="lin.tao@test.hospital", name="Lin Tao")
    alternate = f.user("irb_member", email="guo.rui@test.hospital", name="Guo Rui")
    document = one_page_pdf("Impact assessment: opening the office assistant to patients")
    document_sha256 = hashlib.sha256(document).hexdigest()
    certificate = signing_keys.load_certificate(live_server.settings)
    with Cast(browser, live_server.url, screenshot, "failure-committee") as actor:
        # --- the owner proposes the amendment from the deployment's page ------------------------------------
        dev = actor(owner)
        page = dev.nav("Deployments")
        page.get_by_role("link", name=deployment.name, exact=True).click()
        expect(page.locator(".case-head .badge.status-active")).to_have_text("active")
        page.get_by_role("link", name="Propose an amendment").click()
        expect(page.locator("#amendment-notice")).to_contain_text("Saving opens an amendment case")
        for name, value in (("users", "patient"), ("output_visible_to", "patient"), ("output_visible_to", "public")):
            page.locator(f'input[name="{name}"][value="{value}"]').check()
        page.locator("#public_facing").select_option("true")
        page.get_by_label("What changes and why (for the committee)").fill(
            "Patients and the public ask it about visiting hours and admission paperwork.")
        page.get_by_role("button", name="Submit the amendment for review").click()
        expect(flash(page)).to_have_text(re.compile(r"^Amendment #\d+ submitted for committee review; the approved "
                                                    r"scope stays in force until it is approved\.$"))
        case_url = page.url
        case_id = int(re.search(r"/submissions/(\d+)$", case_url).group(1))
        case_title = f"{deployment.name} — amendment"
        expect(page.get_by_role("heading", level=1)).to_have_text(f"#{case_id} {case_title}")
        expect(case_state(page)).to_have_text("submitted")
        diff = page.locator("#diff")
        expect(diff.get_by_role("heading", name="Amendment: the approved descriptor and the proposed one")
               ).to_be_visible()

        def field_row(name: str):
            return diff.locator("tbody tr", has=page.locator("th[scope=row]", has_text=re.compile(f"^{name}$")))

        public = field_row("public facing")
        expect(public).to_have_class("changed")  # highlighted (and marked ≠ for those who cannot see colour)
        expect(public.locator("td")).to_have_text(["no", "yes"])
        expect(diff.locator("tbody tr.changed")).to_have_count(3)  # output visible to, public facing, users
        expect(field_row("scenario")).not_to_have_class("changed")

        # ... and attaches a document to the case
        documents = page.locator("#documents")
        change_description = documents.locator(".required-documents li",
                                               has_text="Description of the change and its impact assessment")
        expect(change_description).to_contain_text("missing")
        documents.get_by_label("Document type").select_option("change_description")
        documents.get_by_label("File").set_input_files(
            {"name": DOCUMENT_NAME, "mimeType": "application/pdf", "buffer": document})
        documents.get_by_label("Note").fill("What changes for patients and the public, and the risks weighed.")
        documents.get_by_role("button", name="Attach").click()
        expect(flash(page)).to_have_text(f"{DOCUMENT_NAME} attached as version 1 (sha256 {document_sha256[:12]}).")
        row = page.locator("#documents tbody tr", has_text=DOCUMENT_NAME)
        expect(row.locator("code.digest")).to_have_attribute("title", document_sha256)
        expect(row.locator("code.digest")).to_have_text(f"{document_sha256[:12]}…")
        expect(change_description).to_contain_text(f"present ({DOCUMENT_NAME}, v1)")
        screenshot(page, "amendment-case")

        # --- the chair screens it: a material change, for the full board ----------------------------------------
        irb = actor(chair)
        page = irb.nav("Intake")
        page.locator("table.list tbody tr", has_text=case_title).get_by_role("link").click()
        expect(page).to_have_url(case_url)
        click_action(page, "Start screening")
        expect(case_state(page)).to_have_text("screening")
        click_action(page, "Accept and classify")
        expect(flash(page)).to_have_text("Done: Accept and classify.")
        expect(case_state(page)).to_have_text("classified")
        expect(page.locator(".case-head")).to_contain_text("materiality: material")
        expect(page.locator("#classification")).to_contain_text("Pathway: full board")
        click_action(page, "Confirm classification and route")
        expect(flash(page)).to_have_text("Done: Confirm classification and route.")
        expect(page.locator("#audit-status .badge.warn")).to_have_text("DEMO")
        expect(case_state(page)).to_have_text("in review", timeout=AUDIT_TIMEOUT_MS)
        expect(page.locator("#audit-status .verdict")).to_have_text("pass")

        # the chair convenes a meeting and puts the case on its agenda from the cases ready for the board
        page = irb.nav("Meetings")
        page.get_by_label("Title").fill("Ethics committee, December session")
        when = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d 14:00")
        page.get_by_label("Date and time (UTC, YYYY-MM-DD HH:MM)").fill(when)
        page.get_by_label("Location").fill("Administration building, room 301")
        page.get_by_role("button", name="Convene").click()
        expect(flash(page)).to_have_text("Meeting convened.")
        meeting_url = page.url
        ready = page.locator("#ready tbody tr", has_text=f"#{case_id} {case_title}")
        ready.get_by_role("button", name="Add to the agenda").click()
        expect(flash(page)).to_have_text(f"Case {case_id} is on the agenda.")
        item = page.locator("#agenda tbody tr", has_text=f"#{case_id} {case_title}")
        expect(item.locator(".quorum")).to_have_text("not met")
        expect(page.locator("#ready")).to_contain_text("No full-board case is waiting for a meeting.")

        # attendance: five members and an alternate sitting for the member who is away
        attendance = card(page, "Attendance")

        def attendee(user):
            return attendance.locator("tbody tr", has=page.get_by_role("checkbox", name=user.name, exact=True))

        for person in (chair, *primaries, lay_member, external, alternate):
            attendee(person).get_by_role("checkbox").check()
        attendee(alternate).get_by_label("Capacity").select_option("alternate")
        attendee(alternate).get_by_label("Alternate for").select_option(label=absent.name)
        attendance.get_by_role("button", name="Record attendance").click()
        expect(flash(page)).to_have_text("Attendance recorded.")
        expect(attendee(alternate).get_by_label("Alternate for")).to_have_value(str(absent.id))
        expect(attendee(absent).get_by_role("checkbox")).not_to_be_checked()
        expect(item.locator(".quorum")).to_have_text("met")
        attendance.get_by_label("Meeting status").select_option("in_session")
        attendance.get_by_role("button", name="Set").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("in session")

        # the two primary reviewers, named on the case
        item.get_by_role("link", name=f"#{case_id} {case_title}").click()
        page.locator("nav.case-nav").get_by_role("link", name="Assign reviewers").click()
        expect(page.get_by_text("Members eligible for the full board pathway")).to_be_visible()
        for reviewer in primaries:
            page.get_by_label("Reviewer").select_option(reviewer.email)
            page.get_by_role("button", name="Assign", exact=True).click()
            expect(flash(page)).to_have_text("Reviewer assigned.")
            expect(card(page, "Assigned")).to_contain_text(reviewer.name)
        page.goto(case_url)
        expect(card(page, "Review")).to_contain_text(f"Assigned reviewers: {primaries[0].name}, {primaries[1].name}")
        page.goto(meeting_url)  # the chair follows the votes on the meeting page's live indicator
        item = page.locator("#agenda tbody tr", has_text=f"#{case_id} {case_title}")
        expect(item.locator(".js-votes")).to_have_text("0 — ")

        # --- the primary reviewers declare, answer the checklist and sign; two more members vote without it ----
        for number, member_user in enumerate((*primaries, lay_member, alternate)):
            primary = member_user in primaries
            member = actor(member_user)
            page = member.nav("My reviews")
            row = page.locator("table.list tbody tr", has_text=case_title)
            expect(row).to_contain_text("full board")
            if not primary:
                expect(row).to_contain_text("optional")
            row.get_by_role("link", name="Declare conflicts").click()
            page.get_by_label("Do you have a conflict of interest in this case?").select_option("false")
            page.get_by_role("button", name="Record my declaration").click()
            expect(flash(page)).to_have_text("Declaration recorded.")
            if primary:
                items = page.locator("fieldset.checklist-item")
                expect(items.first).to_be_visible()
                for index in range(items.count()):
                    items.nth(index).get_by_label("yes", exact=True).check()
                page.get_by_role("button", name="Submit the checklist").click()
                expect(flash(page)).to_have_text("Checklist submitted.")
            expect(page.get_by_role("heading", name="Vote — electronic signature")).to_be_visible()
            expect(page.locator(".signature-preview")).to_contain_text(f"signed by {member_user.name}")
            page.get_by_label("Meaning of your signature").select_option("approve")
            if number == 0:
                page.get_by_label("Comment").fill("The impact assessment tells patients a person answers urgent "
                                                  "questions.")
            page.get_by_label("Your password (electronic signature)").fill(PASSWORD)
            page.get_by_role("button", name="Sign and vote").click()
            expect(flash(page)).to_have_text("Your vote is signed and recorded.")
            expect(page).to_have_url(case_url)
            votes = card(page, "Review").locator("tbody tr")
            expect(votes).to_have_count(number + 1)
            expect(votes.nth(number)).to_contain_text(member_user.name)
            member.close()

        # --- the chair records the motion and the decision, closes the meeting and issues the minutes ------------
        page = irb.page  # not reloaded: the live indicator brings the votes, in the words the page uses
        expect(item.locator(".js-votes")).to_have_text("4 — approve 4", timeout=LIVE_TIMEOUT_MS)
        expect(item.locator(".quorum")).to_have_text("met")
        item.locator("summary", has_text="Record the motion").click()
        item.get_by_label("Motion").fill("To approve the amendment opening the assistant to patients and the public.")
        item.get_by_label("Moved by").select_option(label=primaries[0].name)
        item.get_by_label("Seconded by").select_option(label=primaries[1].name)
        item.get_by_role("button", name="Record the motion").click()
        expect(flash(page)).to_have_text("Motion recorded.")
        expect(item).to_contain_text(f"moved by {primaries[0].name}, seconded by {primaries[1].name}")
        screenshot(page, "meeting-agenda")

        item.get_by_role("link", name=f"#{case_id} {case_title}").click()
        expect(card(page, "Review")).to_contain_text("The impact assessment tells patients a person answers urgent")
        # opening it to the public brings obligations that block approval until they are met with evidence
        waiting = page.locator("#actions .action.refused", has=page.get_by_role(
            "button", name="Record decision: approved", exact=True)).locator(".refusal")
        expect(waiting).to_contain_text("blocking obligations are still open: ")
        blocking = re.search(r"still open: (.+?) \(", waiting.inner_text()).group(1).split(", ")
        recording = page.locator("#obligation-form")
        for obligation in blocking:
            recording.get_by_label("Obligation").select_option(obligation)
            recording.get_by_label("Status").select_option("satisfied")
            recording.get_by_label("Evidence").fill("Filed with the regulator before the public launch.")
            recording.get_by_label("Reference number").fill(f"REF-{obligation}")
            recording.get_by_role("button", name="Record", exact=True).click()
            expect(flash(page)).to_have_text(f"Obligation {obligation} recorded as satisfied.")
        decision = page.locator("#actions form.action", has=page.get_by_role("button",
                                                                           name="Record decision: approved",
                                                                           exact=True))
        decision.get_by_label("Note for the record").fill("Approved by the board as moved.")
        click_action(page, "Record decision: approved")
        expect(flash(page)).to_have_text("Done: Record decision: approved.", timeout=DOSSIER_TIMEOUT_MS)
        expect(case_state(page)).to_have_text("approved")
        gates = page.locator("#dossiers tbody tr")
        expect(gates).to_have_count(3)  # the amendment's audit and decision dossiers, and the letter
        for index, gate in enumerate(("audit", "decision", "letter")):
            expect(gates.nth(index).get_by_role("link")).to_have_text(gate)

        # the decision dossier lists the document with its sha256 and carries the PDF, checked against it
        decision_sha256 = gates.nth(1).locator("code.digest").inner_text().strip()
        name, path = download(page, gates.nth(1).get_by_role("link", name="decision"), tmp_path)
        assert re.fullmatch(rf"dossier-{case_id}-decision-\d+\.pdf", name)
        report = verified_offline(path, certificate, decision_sha256)
        assert report.ok, report.failures
        embedded = {n: d for n, d in report.details["manifest"]["attachments"].items() if n.startswith("documents/")}
        assert list(embedded.values()) == [document_sha256] and DOCUMENT_NAME in next(iter(embedded))
        _, unwrapped = pdf_text(path)  # the table of section 6 breaks the digest and the file name across lines
        assert "6. Documents" in unwrapped and "present 已附" in unwrapped and DOCUMENT_NAME in unwrapped
        assert f"{document_sha256}embedded as documents/" in unwrapped

        # the decision letter to the submitter
        letter_sha256 = gates.nth(2).locator("code.digest").inner_text().strip()
        name, path = download(page, gates.nth(2).get_by_role("link", name="letter"), tmp_path)
        report = verified_offline(path, certificate, letter_sha256)
        assert report.ok, report.failures
        assert report.details["coverage"] == "ENTIRE_FILE" and report.details["trusted"]
        prose, _ = pdf_text(path)
        meeting_id = int(re.search(r"/meetings/(\d+)$", meeting_url).group(1))
        for said in (f"Dear {owner.name},", f"has approved submission #{case_id}", f"meeting 会议 #{meeting_id}"):
            assert said in prose, said

        page.goto(meeting_url)
        attendance = card(page, "Attendance")
        attendance.get_by_label("Meeting status").select_option("closed")
        attendance.get_by_role("button", name="Set").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("closed")
        expect(attendance).to_contain_text("The meeting is closed: its attendance is kept as recorded.")
        expect(attendance.get_by_role("button", name="Record attendance")).to_have_count(0)
        page.get_by_role("button", name="Generate minutes").click()
        expect(flash(page)).to_have_text("Minutes signed and issued.", timeout=DOSSIER_TIMEOUT_MS)
        minutes = page.locator("#minutes li")
        expect(minutes).to_have_count(1)
        shown = minutes.locator("code").inner_text().strip().rstrip("…")
        name, path = download(page, minutes.get_by_role("link", name="Minutes, version 1"), tmp_path)
        assert re.fullmatch(r"minutes-meeting-\d+-\d+\.pdf", name)
        report = verified_offline(path, certificate)
        assert report.ok, report.failures
        assert report.details["sha256"].startswith(shown) and report.details["trusted"]
        prose, _ = pdf_text(path)
        for said in (f"#{case_id}", primaries[0].name, primaries[1].name, absent.name, alternate.name,
                     "To approve the amendment opening the assistant to patients and the public."):
            assert said in prose, said
        screenshot(page, "meeting-minutes")

        # --- the deployment runs with the amended scope -------------------------------------------------------
        page = dev.page
        page.goto(case_url)
        page.locator("nav.case-nav").get_by_role("link", name="Deployment").click()
        expect(page.locator(".case-head .badge.status-active")).to_have_text("active")
        scope = card(page, "Intended use")
        expect(scope.locator("dt", has_text=re.compile(r"^public facing$")).locator("xpath=following-sibling::dd[1]")
               ).to_have_text("yes")
        expect(scope.locator("dt", has_text=re.compile(r"^users$")).locator("xpath=following-sibling::dd[1]")
               ).to_contain_text("patient")
        expect(page.get_by_role("link", name="Propose an amendment")).to_be_visible()

    assert not actor.problems, "\n".join(actor.problems)
    assert not live_server.errors, live_server.errors

"""The whole story in a real browser, through the pages only: a submitter registers a deployment and
submits its first model version; the chair screens, classifies and routes it; the audit runs on the demo
backend; two AI sub-committee reviewers declare no conflict, answer the checklist and vote with an
electronic signature; the chair records the decision; the signed decision dossier is downloaded from the
case page and verifies offline. A full-page screenshot of each role's main page is kept."""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from governance.dossier import keys as signing_keys
from governance.dossier.verify import verify

from ..factories import PASSWORD
from .actors import Cast, card, case_state, click_action, flash

pytestmark = pytest.mark.browser

WEIGHTS = hashlib.sha256(b"office-assistant v1.0 weights").hexdigest()
AUDIT_TIMEOUT_MS = 60_000
DOSSIER_TIMEOUT_MS = 60_000  # the decision request renders and signs its dossier before it answers


def test_the_whole_review_story_in_the_browser(browser: Browser, live_server, live_factory, screenshot, tmp_path):
    f = live_factory
    submitter = f.user("submitter", email="wang.fang@test.hospital", name="Wang Fang")
    chair = f.user("irb_chair", "irb_member", email="chen.jie@test.hospital", name="Chen Jie")
    reviewers = [f.user("ai_subcommittee_member", email="zhou.min@test.hospital", name="Zhou Min"),
                 f.user("ai_subcommittee_member", email="xu.lei@test.hospital", name="Xu Lei")]
    compliance = f.user("compliance_officer", email="liu.yang@test.hospital", name="Liu Yang", scientist=False)
    admin = f.user("admin", email="admin@test.hospital", name="Zhang Hua")
    clinician = f.user("clinician", email="huang.li@test.hospital", name="Huang Li")
    with Cast(browser, live_server.url, screenshot, "failure") as actor:
        # --- the submitter registers the deployment through the guided form ----------------------------
        dev = actor(submitter)
        page = dev.nav("Deployments")
        page.get_by_role("link", name="Register a deployment").click()
        expect(page.get_by_role("heading", name="Register a deployment")).to_be_visible()
        page.locator("#name").fill("Office knowledge base assistant")
        page.locator("#scenario").select_option("administrative_assistant")
        page.locator("#intended_use").fill("Answers staff questions from hospital regulations and workflows and "
                                           "drafts office documents. Staff read every draft before use.")
        for name, values in {"users": ["administrative_staff", "hcp"],
                             "output_visible_to": ["administrative_staff", "hcp"],
                             "input_data": ["administrative_documents"]}.items():
            for value in values:
                page.locator(f'input[name="{name}"][value="{value}"]').check()
        for name, value in {"outputs_used_for_diagnosis_or_treatment": "false", "assisted_decision_making": "false",
                            "algorithm_maturity": "low", "time_critical": "false",
                            "hcp_can_independently_review_basis": "true", "generative": "true",
                            "public_facing": "false", "personal_information": "none", "deidentified": "false",
                            "medical_purpose": "true", "anonymised": "false",
                            "cross_border_transfer": "false", "human_genetic_resources": "false",
                            "autonomy": "assistive", "issues_prescriptions": "false",
                            "severity_if_wrong": "negligible", "on_premises": "true",
                            "continuous_learning": "false"}.items():
            page.locator(f"#{name}").select_option(value)
        page.get_by_role("button", name="Save").click()
        expect(flash(page)).to_have_text("Deployment registered. Submit its first model version for review.")
        expect(page.get_by_role("heading", name="Submit a model version of Office knowledge base assistant")
               ).to_be_visible()

        # ... and submits its first model version, to be audited on the demo backend
        expect(page.locator("#kind")).to_have_value("")  # the kind of review is chosen, never defaulted
        page.locator("#kind").select_option("initial")
        page.locator("#summary").fill("First deployment of the office assistant on the hospital's own server.")
        page.locator("#version_label").fill("v1.0")
        page.locator("#base_model").fill("Qwen2.5-7B-Instruct")
        page.locator("#architecture").fill("Qwen2ForCausalLM")
        page.locator("#weights_digest").fill(WEIGHTS)
        page.locator("#endpoint").fill("demo://good")
        page.locator("#finetune_data_categories").fill("administrative_documents")
        expect(page.get_by_label("Submit for review now")).to_be_checked()
        page.get_by_role("button", name="Create the case").click()
        expect(flash(page)).to_have_text(re.compile(r"^Case #\d+ created\.$"))
        case_url = page.url
        case_id = int(re.search(r"/submissions/(\d+)$", case_url).group(1))
        case_title = "Office knowledge base assistant v1.0 — initial"
        expect(page.get_by_role("heading", level=1)).to_have_text(f"#{case_id} {case_title}")
        expect(case_state(page)).to_have_text("submitted")
        expect(page.locator("#history")).to_contain_text("submit")
        expect(page.locator("#audit-status")).to_contain_text("No audit yet")

        # --- the chair screens, accepts, classifies and routes ----------------------------------------------
        irb = actor(chair)
        page = irb.page
        expect(card(page, "Intake")).to_contain_text("submitted 1")
        screenshot(page, "chair-dashboard")
        irb.nav("Intake")
        row = page.locator("table.list tbody tr", has_text=case_title)
        expect(row).to_contain_text("submitted")
        expect(row).to_contain_text("start screening")
        expect(row).to_contain_text("Wang Fang")
        screenshot(page, "chair-intake")
        row.get_by_role("link").click()
        expect(page).to_have_url(case_url)

        click_action(page, "Start screening")
        expect(flash(page)).to_have_text("Done: Start screening.")
        expect(case_state(page)).to_have_text("screening")
        click_action(page, "Accept and classify")
        expect(flash(page)).to_have_text("Done: Accept and classify.")
        expect(case_state(page)).to_have_text("classified")
        classification = page.locator("#classification")
        expect(classification).to_contain_text("China (NMPA)")
        expect(classification).to_contain_text("non device")
        expect(classification).to_contain_text("Pathway: ai subcommittee")
        expect(page.locator("#actions")).to_contain_text("Override classification and route")
        click_action(page, "Confirm classification and route")
        expect(flash(page)).to_have_text("Done: Confirm classification and route.")
        expect(page.locator(".case-head")).to_contain_text("ai subcommittee")
        expect(page.locator("#audit-status")).to_contain_text("demo")
        expect(page.locator("#audit-status .badge.warn")).to_have_text("DEMO")

        # the audit runs in the worker thread; the page follows its progress and reloads when it is done
        expect(case_state(page)).to_have_text("in review", timeout=AUDIT_TIMEOUT_MS)
        expect(page.locator("#audit-status .verdict")).to_have_text("pass")
        expect(page.locator("#audit-status .js-status")).to_have_text("completed")
        expect(page.locator("#audit-status .js-percent")).to_have_text("100%")
        expect(page.locator("#history")).to_contain_text("audit passed")

        page.locator("nav.case-nav").get_by_role("link", name="Audit").click()
        expect(page.get_by_role("heading", name="Benchmark audit")).to_be_visible()
        expect(page.locator("#audit-status .verdict")).to_have_text("pass")
        expect(page.get_by_role("heading", name="Per dimension, with Wilson 95% intervals")).to_be_visible()
        chart = page.get_by_role("img", name="Accuracy per dimension with Wilson 95% intervals")
        expect(chart).to_be_visible()
        assert chart.evaluate("img => img.complete && img.naturalWidth > 300")
        screenshot(page, "case-audit")

        # the chair assigns two AI sub-committee members (the fast track needs at least two)
        page.goto(case_url)
        page.locator("nav.case-nav").get_by_role("link", name="Assign reviewers").click()
        expect(page.get_by_role("heading", name="Assign reviewers")).to_be_visible()
        expect(page.get_by_text("Members eligible for the ai subcommittee pathway")).to_be_visible()
        for reviewer in reviewers:
            page.get_by_label("Reviewer").select_option(reviewer.email)
            page.get_by_role("button", name="Assign", exact=True).click()
            expect(flash(page)).to_have_text("Reviewer assigned.")
            expect(card(page, "Assigned")).to_contain_text(reviewer.name)
        expect(page.get_by_text("No eligible member is left.")).to_be_visible()
        page.goto(case_url)
        expect(card(page, "Review")).to_contain_text("Assigned reviewers: Zhou Min, Xu Lei")
        expect(page.locator("#actions")).to_contain_text("Not now: 0 of 2 assigned reviewers have voted")

        # --- each reviewer: conflicts, checklist, signed vote --------------------------------------------------
        for number, reviewer in enumerate(reviewers):
            member = actor(reviewer)
            page = member.page
            expect(card(page, "Waiting for my review")).to_contain_text(f"#{case_id} {case_title}")
            member.nav("My reviews")
            row = page.locator("table.list tbody tr", has_text=str(case_id))
            expect(row).to_contain_text("ai subcommittee")
            if number == 0:
                screenshot(page, "reviewer-queue")
            row.get_by_role("link", name="Declare conflicts").click()
            expect(page.get_by_role("heading", name="Declare conflicts of interest")).to_be_visible()
            page.get_by_label("Do you have a conflict of interest in this case?").select_option("false")
            page.get_by_role("button", name="Record my declaration").click()
            expect(flash(page)).to_have_text("Declaration recorded.")

            items = page.locator("fieldset.checklist-item")
            expect(items.first).to_be_visible()
            count = items.count()
            expect(page.get_by_text(f"{count} items apply to this case.")).to_be_visible()
            if number == 0:  # half done: saved as a draft, and there again on the next visit
                for index in range(count // 2):
                    items.nth(index).get_by_label("yes", exact=True).check()
                page.get_by_role("button", name="Save as a draft").click()
                expect(flash(page)).to_contain_text(f"Draft saved ({count // 2} of {count} items answered)")
                expect(page.locator("#draft-notice")).to_be_visible()
                expect(items.nth(0).get_by_label("yes", exact=True)).to_be_checked()
            for index in range(count):
                items.nth(index).get_by_label("yes", exact=True).check()
            page.get_by_role("button", name="Submit the checklist").click()
            expect(flash(page)).to_have_text("Checklist submitted.")
            expect(page.get_by_role("heading", name="Vote — electronic signature")).to_be_visible()
            expect(page.locator(".verdict")).to_have_text("pass")
            expect(page.locator(".signature-preview")).to_contain_text(f"signed by {reviewer.name}")

            page.get_by_label("Meaning of your signature").select_option("approve")
            if number == 0:  # a wrong password is no signature
                page.get_by_label("Your password (electronic signature)").fill("not my password")
                page.get_by_role("button", name="Sign and vote").click()
                expect(flash(page)).to_contain_text("Refused: the password does not match")
                page.get_by_label("Meaning of your signature").select_option("approve")
            if number == 1:
                page.get_by_label("Comment").fill("The escalation path to staff is clear.")
                page.get_by_label("Proposed conditions").fill("Re-audit on every model update.")
            page.get_by_label("Your password (electronic signature)").fill(PASSWORD)
            page.get_by_role("button", name="Sign and vote").click()
            expect(flash(page)).to_have_text("Your vote is signed and recorded.")
            expect(page).to_have_url(case_url)
            votes = card(page, "Review").locator("tbody tr")
            expect(votes).to_have_count(number + 1)
            expect(votes.nth(number)).to_contain_text(reviewer.name)
            expect(votes.nth(number)).to_contain_text("approve")
            member.nav("My reviews")
            expect(page.locator("table.list tbody tr", has_text=str(case_id))).to_contain_text("done")
            member.close()

        # --- the chair records the decision ----------------------------------------------------------------
        page = irb.page
        page.goto(case_url)
        expect(case_state(page)).to_have_text("in review")
        expect(page.locator("#history")).to_contain_text("Signed by Zhou Min")
        expect(page.locator("#history")).to_contain_text("Signed by Xu Lei")
        notes = card(page, "Review")  # the chair reads what the members said with their votes
        expect(notes).to_contain_text("The escalation path to staff is clear.")
        expect(notes).to_contain_text("Re-audit on every model update.")
        decision = page.locator("#actions form.action", has=page.get_by_role("button",
                                                                           name="Record decision: approved",
                                                                           exact=True))
        decision.get_by_label("Note for the record").fill("Approved on the fast track; re-audit on every update.")
        click_action(page, "Record decision: approved")
        expect(flash(page)).to_have_text("Done: Record decision: approved.", timeout=DOSSIER_TIMEOUT_MS)
        expect(case_state(page)).to_have_text("approved")
        expect(page.locator("p.decision")).to_contain_text("Decision: approved")
        history = page.locator("#history")
        for step in ("submit", "start screening", "accept", "confirm classification", "audit passed",
                     "assign reviewer", "declare conflict", "save checklist draft", "answer checklist", "vote",
                     "approve"):
            expect(history).to_contain_text(step)
        gates = page.locator("#dossiers tbody tr")
        expect(gates).to_have_count(3)  # the audit and decision dossiers, and the letter to the submitter
        expect(gates.nth(0)).to_contain_text("audit")
        expect(gates.nth(1)).to_contain_text("decision")
        expect(gates.nth(2)).to_contain_text("letter")
        screenshot(page, "case-timeline")

        # the decision dossier, downloaded from the case page, verifies offline and matches its record
        stored_sha256 = gates.nth(1).locator("code.digest").inner_text().strip()
        with page.expect_download() as downloading:
            gates.nth(1).get_by_role("link", name="decision").click()
        download = downloading.value
        assert re.fullmatch(rf"dossier-{case_id}-decision-\d+\.pdf", download.suggested_filename)
        pdf = tmp_path / download.suggested_filename
        download.save_as(pdf)
        assert pdf.read_bytes().startswith(b"%PDF-")
        certificate = signing_keys.load_certificate(live_server.settings)
        # pyHanko validates with asyncio.run(): off the thread where Playwright's event loop runs
        with ThreadPoolExecutor(max_workers=1) as pool:
            report = pool.submit(verify, pdf, [certificate], expected_sha256=stored_sha256).result()
        assert report.ok, report.failures
        assert report.details["coverage"] == "ENTIRE_FILE" and report.details["trusted"]
        assert report.details["sha256"] == stored_sha256

        # --- every other role's main page --------------------------------------------------------------
        page = dev.page
        # a page that shows a finished audit stays put: it neither polls the progress nor reloads itself
        page.clock.install()
        page.goto(case_url)
        expect(case_state(page)).to_have_text("approved")
        with pytest.raises(PlaywrightTimeoutError):
            with page.expect_request(re.compile(r"/audit/progress\.json$"), timeout=1_000):
                page.clock.run_for(10_000)
        page.goto("/")
        approved = page.locator("section.card", has=page.locator("h3 .state-approved"))
        expect(approved).to_contain_text(case_title)
        expect(approved).to_contain_text("ai subcommittee")
        screenshot(page, "submitter-dashboard")

        officer = actor(compliance)
        page = officer.nav("Registry")
        row = page.locator("table.list tbody tr", has_text="Office knowledge base assistant")
        expect(row.locator(".badge.status-active")).to_have_text("active")
        expect(row).to_contain_text("v1.0")
        expect(row).to_contain_text(WEIGHTS[:16])
        screenshot(page, "compliance-registry")

        administrator = actor(admin)
        page = administrator.nav("Users")
        expect(page.get_by_role("heading", name="Users and roles")).to_be_visible()
        for person in (submitter, chair, *reviewers, compliance, admin, clinician):
            expect(page.locator("table.list tbody")).to_contain_text(person.email)
        screenshot(page, "admin-users")

        page = actor(clinician).page
        expect(page.get_by_text("No cases for you yet.")).to_be_visible()
        screenshot(page, "clinician-dashboard")

    assert not actor.problems, "\n".join(actor.problems)
    assert not live_server.errors, live_server.errors

"""Decision letters: from the decision, a signed letter to the submitter (bilingual: accounts keep no language
preference), rendered, signed and stored like a dossier (gate ``letter``), verified by ``govern dossier verify``,
and never overwritten."""

from __future__ import annotations

import subprocess

import pytest
from sqlmodel import select

from governance.dossier import keys as signing_keys
from governance.dossier.verify import verify
from governance.models import Dossier
from governance.operations.dossiers import absolute_path, pending

pytestmark = pytest.mark.both_databases


@pytest.fixture
def app_overrides():
    return {"dossier_dispatch": "inline", "signing_passphrase": "test signing passphrase",
            "letterhead": "Medical Ethics Committee Office\nBuilding 3, 1 Hospital Road", "letterhead_zh": "医学伦理委员会办公室"}


def _letters(session, case) -> list[Dossier]:
    return session.execute(select(Dossier).where(Dossier.submission_id == case.id, Dossier.gate == "letter")
                           .order_by(Dossier.id)).scalars().all()


def _text(path) -> str:
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    return " ".join(text.split())


def _drive(factory, session, state: str, data: dict):
    """A case decided through the workflow, with the chair's own conditions or reasons."""
    case = factory.submission()
    session.commit()
    factory.drive(case, "in_review")
    factory.ready_for_votes(case)
    meaning = {"approved_with_conditions": "approve_with_conditions", "revisions_required": "require_revisions"}[state]
    factory.vote_all(case, meaning)
    factory.fire(case, meaning, factory.person("chair"), **data)
    session.refresh(case)
    assert case.state == state
    return case


def test_an_approval_with_conditions_is_a_signed_letter_that_verifies(factory, session, institution, runner):
    case = _drive(factory, session, "approved_with_conditions",
                  {"conditions": "Re-audit every month against the gate policy.\n"
                                 "- Report each incident within 24 hours."})
    [letter] = _letters(session, case)
    assert letter.event_seq is not None and pending(session) == []
    path = absolute_path(institution, letter)
    report = verify(path, [signing_keys.load_certificate(institution)], expected_sha256=letter.sha256)
    assert report.ok, report.failures
    text = _text(path)
    assert "Approval with conditions" in text and "附条件批准" in text
    assert "Re-audit every month against the gate policy." in text
    assert "Report each incident within 24 hours." in text
    assert "Continuing review is due by" in text  # the approval set the continuing-review date
    assert institution.institution_name in text and "Building 3, 1 Hospital Road" in text and "医学伦理委员会办公室" in text
    result = runner.invoke("dossier", "verify", str(path))
    assert result.exit_code == 0, result.output


def test_revisions_required_lists_the_points_to_address(factory, session, institution):
    case = _drive(factory, session, "revisions_required",
                  {"reason": "Add the bias report for paediatric patients.\nName the clinical owner."})
    [letter] = _letters(session, case)
    text = _text(absolute_path(institution, letter))
    assert "Revisions required" in text and "Points to address" in text and "修改后再审" in text
    assert "Add the bias report for paediatric patients." in text and "Name the clinical owner." in text
    assert "Continuing review is due" not in text


def test_a_disapproval_states_its_reasons(factory, session, institution):
    case = factory.case_in("disapproved")
    [letter] = _letters(session, case)
    text = _text(absolute_path(institution, letter))
    assert "Disapproval" in text and "不予批准" in text and "Reasons" in text
    assert "Unacceptable risk." in text


def test_a_letter_is_never_overwritten(factory, session, institution, runner):
    case = factory.case_in("disapproved")
    [first] = _letters(session, case)
    before = absolute_path(institution, first).read_bytes()
    result = runner.invoke("dossier", "emit", str(case.id), "--gate", "letter")
    assert result.exit_code == 0, result.output
    first_again, second = _letters(session, case)
    assert first_again.id == first.id and second.path != first.path and second.sha256 != first.sha256
    assert absolute_path(institution, first).read_bytes() == before
    assert verify(absolute_path(institution, second), [signing_keys.load_certificate(institution)],
                  expected_sha256=second.sha256).ok


def test_no_letter_for_a_case_without_a_decision(factory, session, institution, runner):
    case = factory.submission()
    session.commit()
    result = runner.invoke("dossier", "emit", str(case.id), "--gate", "letter")
    assert result.exit_code != 0 and "no decision" in result.output
    assert _letters(session, case) == []

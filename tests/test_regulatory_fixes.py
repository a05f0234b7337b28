"""Fixes from the regulatory review (../shared/REGULATORY-REVIEW.md, section 5 checklist_items 5, 7 and 8; probes p01 and
p03): human genetic resources filing only for provision to foreign parties, with the NHC as the authority and
international-cooperation approval; MLPS for every network operator, cloud included, under the Cybersecurity Law
as amended from 1 Jan 2026; corrected citations of the Internet Diagnosis rules, the NHC research Measures, the
algorithm-information duty and the general patient-disclosure duty."""

from __future__ import annotations

import re

import pytest

from governance.classification.descriptor import load_descriptor
from governance.classification.engine import classify

from .support.regulations import CJK, EXAMPLES, descriptor


def obligations(result: dict) -> dict[str, dict]:
    return {o["id"]: o for o in result["obligations"]}


def trail(result: dict) -> dict[str, dict]:
    return {r["rule_id"]: r for r in result["rule_trail"]}


def facts(d, **case) -> dict:
    return {**d.model_dump(), "kind": "initial", "pathway": "full_board", **case}


# --- item 5: human genetic resources -----------------------------------------------------------------------------
def test_p01_domestic_genetic_data_needs_no_hgr_filing(ruleset):
    """Probe p01: a research assistant on genetic data that stays in China (no foreign party receives it)."""
    result = classify(descriptor("research_assistant", human_genetic_resources=True), ruleset)
    assert not {"hgr_filing", "hgr_international_cooperation"} & set(obligations(result))
    assert not [rule for rule in trail(result) if rule.startswith("hgr.")]


def test_hgr_information_provided_abroad_needs_nhc_filing_and_backup(ruleset):
    d = descriptor("research_assistant", human_genetic_resources=True, cross_border_transfer=True)
    result = classify(d, ruleset)
    filing = obligations(result)["hgr_filing"]
    assert filing["blocking"] and filing["certainty"] == "secondary"
    assert "National Health Commission" in filing["title"] and "国家卫生健康委" in filing["title_zh"]
    assert "backup" in filing["title"] and "备份" in filing["title_zh"]
    assert "Order No. 777" in filing["source"] and "NHC" in filing["source"] and "§6.3" in filing["source"]
    assert "hgr.provision_to_foreign_party" in trail(result)


def test_a_foreign_party_raises_the_international_cooperation_approval_marked_unverified(ruleset):
    result = classify(descriptor("research_assistant", human_genetic_resources=True, cross_border_transfer=True),
                      ruleset)
    approval = obligations(result)["hgr_international_cooperation"]
    assert approval["blocking"] and approval["certainty"] == "unverified"
    assert "international cooperation" in approval["title"] and "国际合作" in approval["title_zh"]
    assert "not applicable" in approval["title"]  # the committee decides whether the foreign party takes part
    rule = trail(result)["hgr.international_cooperation"]
    assert rule["certainty"] == "unverified" and "takes part" in rule["note"]
    assert "foreign-controlled" in trail(result)["hgr.provision_to_foreign_party"]["note"]


def test_cross_border_transfer_without_genetic_data_raises_no_hgr_duty(ruleset):
    result = classify(descriptor("research_assistant", cross_border_transfer=True), ruleset)
    assert not {"hgr_filing", "hgr_international_cooperation"} & set(obligations(result))


def test_hgr_rule_file_names_the_nhc_and_the_2023_definition(ruleset):
    assert "NHC since 1 May 2024" in ruleset.obligations["hgr_filing"].instrument
    assert "Order No. 777" in ruleset.obligations["hgr_filing"].instrument
    rule = next(r for r in ruleset.rules if r.id == "hgr.provision_to_foreign_party")
    assert "clinical, imaging, protein and metabolic" in rule.note.lower() and "Art. 2" in rule.note


def test_hgr_checklist_item_distinguishes_filing_from_approval_and_names_the_nhc(checklist_items):
    item = checklist_items["fbi.human_genetic_resources"]
    assert "National Health Commission" in item.text.en and "国家卫生健康委" in item.text.zh
    assert "international research cooperation" in item.text.en and "国际合作" in item.text.zh
    assert "imaging" in item.text.en and "影像" in item.text.zh
    assert {s.certainty for s in item.sources} == {"secondary", "unverified"}
    assert any("Order No. 777" in s.instrument for s in item.sources)


# --- item 7: MLPS for every network operator -----------------------------------------------------------------------
def test_p03_cloud_system_with_patient_data_needs_mlps(ruleset):
    """Probe p03: a non-clinical cloud system processing patient information."""
    d = descriptor("administrative_assistant", on_premises=False, personal_information="personal")
    result = classify(d, ruleset)
    mlps = obligations(result)["mlps_grading"]
    assert mlps["blocking"] and "cloud" in mlps["title"] and "云上" in mlps["title_zh"]
    assert "mlps.patient_data" in trail(result)


def test_shipped_cloud_generative_assistant_gets_mlps(ruleset):
    result = classify(load_descriptor(EXAMPLES / "public_generative_health_assistant.yaml"), ruleset)
    assert "mlps_grading" in obligations(result)


def test_no_mlps_rule_or_checklist_item_is_limited_to_on_premises(ruleset, checklist_items):
    assert not [r.id for r in ruleset.rules if "on_premises" in r.condition.fields()]
    for item_id in ("fbi.mlps_security", "fti.mlps_security"):
        assert "on_premises" not in checklist_items[item_id].condition.fields()
        assert "cloud" in checklist_items[item_id].text.en and "云上" in checklist_items[item_id].text.zh


@pytest.mark.parametrize("item_id", ["fbi.mlps_security", "fti.mlps_security"])
def test_mlps_checklist_items_apply_to_a_cloud_deployment_with_patient_data(checklist_items, item_id):
    cloud = descriptor("administrative_assistant", on_premises=False, personal_information="personal")
    assert checklist_items[item_id].applies(facts(cloud))
    assert not checklist_items[item_id].applies(facts(descriptor("administrative_assistant", on_premises=True)))


def test_mlps_cites_the_cybersecurity_law_as_amended_from_2026_without_a_new_article_number(ruleset, checklist_items):
    mlps = ruleset.obligations["mlps_grading"]
    assert "in force 1 Jan 2026" in mlps.instrument and "2017" not in mlps.instrument
    assert "Art. 21 in the 2017 text" in mlps.article and "not checked" in mlps.article
    for item_id in ("fbi.mlps_security", "fti.mlps_security"):
        assert any("in force 1 Jan 2026" in s.instrument for s in checklist_items[item_id].sources)
    for rule in (r for r in ruleset.rules if r.id.startswith("mlps.")):
        assert re.findall(r"Art\. \d+", rule.article) in ([], ["Art. 21"])


# --- item 8: citations -------------------------------------------------------------------------------------------
def test_internet_diagnosis_prescription_ban_is_cited_apart_from_the_replacement_ban(ruleset):
    rules = {r.id: r for r in ruleset.rules}
    prescriptions, replacing = rules["nhc.internet.no_ai_prescriptions"], rules["nhc.internet.no_replacing_physician"]
    assert "Art. 21" in prescriptions.article and "Art. 13" not in prescriptions.article
    assert "Art. 13" in replacing.article and "Art. 21" not in replacing.article
    for rule in (prescriptions, replacing, rules["nhc.internet.physician_decides"]):
        assert rule.certainty == "unverified" and "internet diagnosis and treatment only" in rule.instrument
    assert "Art. 2" in prescriptions.note and "Prescription Management Measures" in prescriptions.note
    assert ruleset.obligations["physician_final_decision"].certainty == "unverified"


def test_internet_diagnosis_checklist_citations_match_the_rules(checklist_items):
    prescriptions = checklist_items["fbi.no_ai_prescriptions"].sources[0]
    assert "Art. 21" in prescriptions.article and prescriptions.certainty == "unverified"
    replacing = checklist_items["fbi.physician_decides"].sources[0]
    assert "Art. 13" in replacing.article and replacing.certainty == "unverified"


def test_prohibition_output_says_the_citation_is_unverified_and_carries_the_scope_note(ruleset):
    result = classify(load_descriptor(EXAMPLES / "prohibited_autoprescriber.yaml"), ruleset)
    rule = trail(result)["nhc.internet.no_ai_prescriptions"]
    assert result["prohibited"] and rule["certainty"] == "unverified" and "Art. 21" in rule["source"]
    assert "internet diagnosis and treatment only" in rule["note"]


def test_nhc_research_measures_scope_is_art_3(ruleset):
    rule = next(r for r in ruleset.rules if r.id == "nhc.research.health_records")
    assert rule.article.startswith("Art. 3 ") and "Art. 2" not in rule.article
    consent = ruleset.obligations["informed_consent_research"]
    assert consent.certainty == "unverified" and "informed-consent chapter" in consent.article


def test_algorithm_information_is_attributed_to_the_nmpa_registration_principles(ruleset):
    obligation = ruleset.obligations["algorithm_information"]
    assert obligation.file.endswith("nmpa_ai_registration_2022.yaml")
    assert obligation.instrument.startswith("NMPA") and "NHC" not in obligation.instrument
    assert not [r.id for r in ruleset.rules if "algorithm_information" in r.obligations and r.id.startswith("nhc.")]
    result = classify(load_descriptor(EXAMPLES / "diagnostic_decision_support_images.yaml"), ruleset)
    assert obligations(result)["algorithm_information"]["source"].startswith("NMPA")


def test_general_patient_disclosure_is_not_sourced_to_the_nhc_specifications(ruleset):
    obligation = ruleset.obligations["informed_consent_ai_use"]
    assert obligation.file.endswith("institutional_review_pathways.yaml")
    assert "NHC" not in obligation.instrument and "SOP" in obligation.article
    assert "invasive" not in obligation.title.en  # the limited legal duty is the checklist's fbi.invasive_procedure_consent
    result = classify(load_descriptor(EXAMPLES / "pre_clinical_triage.yaml"), ruleset)
    assert "sop.patient_ai_disclosure" in trail(result) and "nhc.ai.patient_disclosure" not in trail(result)


# --- both languages ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("obligation_id", ["hgr_filing", "hgr_international_cooperation", "mlps_grading",
                                           "algorithm_information", "informed_consent_ai_use",
                                           "physician_final_decision"])
def test_changed_obligations_are_in_english_and_chinese(ruleset, obligation_id):
    title = ruleset.obligations[obligation_id].title
    assert title.en.strip() and not CJK.search(title.en) and CJK.search(title.zh)


def test_rule_notes_reach_the_text_report(tmp_path):
    from click.testing import CliRunner

    from governance.cli import cli

    path = tmp_path / "abroad.yaml"
    text = (EXAMPLES / "research_assistant.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("cross_border_transfer: false", "cross_border_transfer: true")
                    .replace("human_genetic_resources: false", "human_genetic_resources: true"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["classify", str(path)])
    assert result.exit_code == 0, result.output
    assert "hgr_international_cooperation" in result.output and "note: The descriptor shows" in result.output


def test_rule_notes_reach_the_case_page(client, factory):
    from .factories import PASSWORD

    case = factory.case_in("in_review", "prohibited_autoprescriber")
    client.post("/login", data={"email": factory.person("chair").email, "password": PASSWORD})
    page = client.get(f"/submissions/{case.id}").data.decode()
    assert "Rule trail" in page and "internet diagnosis and treatment only (Art. 2)" in page


def test_the_descriptor_form_says_what_is_not_hgr_information_in_both_languages(client, factory):
    from .factories import PASSWORD

    client.post("/login", data={"email": factory.person("submitter").email, "password": PASSWORD})
    page = client.get("/deployments/new").data.decode()
    assert "imaging, protein and metabolic data alone are not human genetic resources information" in page
    client.post("/locale/zh_CN", data={"next": "/"})
    page = client.get("/deployments/new").data.decode()
    assert "仅有临床、影像、蛋白质和代谢数据的，不属于人类遗传资源信息" in page

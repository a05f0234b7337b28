"""Fixes from the regulatory review (../shared/REGULATORY-REVIEW.md, section 5 findings 1, 3 and 9; probes p01, p02,
p05, p06, p07 and p13): de-identified is not anonymised (PIPL Arts. 4, 39, 73(3)-(4)); device status needs an intended
medical purpose (FDA, EU MDR and AI Act, NMPA step A1), with IVD-data software under the IVDR; change control sees the
retrieval knowledge base; continuous learning and serious harm leave the fast track."""

from __future__ import annotations

import json
import re

import pytest

from governance.classification.descriptor import descriptor_from_dict, load_descriptor
from governance.classification.engine import classify
from governance.classification.materiality import ModelVersionRecord, assess_change
from governance.committees import load_committee_rules

from .support.regulations import CJK, EXAMPLES, ROOT, descriptor


def obligations(result: dict) -> set[str]:
    return {o["id"] for o in result["obligations"]}


def trail(result: dict) -> dict[str, dict]:
    return {r["rule_id"]: r for r in result["rule_trail"]}


def statuses(result: dict) -> tuple:
    return (result["nmpa"]["status"], result["fda_cds"]["status"], result["eu_mdr"]["status"],
            result["eu_ai_act"]["high_risk"])


# --- the descriptor: two new fields, with defaults that keep stored descriptors' classification ------------------
def test_stored_descriptors_without_the_new_fields_load_with_the_conservative_defaults():
    stored = load_descriptor(EXAMPLES / "diagnostic_decision_support_images.yaml").model_dump()
    del stored["medical_purpose"], stored["anonymised"]
    upgraded = descriptor_from_dict(stored)
    assert upgraded.medical_purpose is True and upgraded.anonymised is False


def test_a_stored_descriptor_keeps_its_classification(ruleset):
    for path in sorted(EXAMPLES.glob("*.yaml")):
        current = load_descriptor(path)
        stored = current.model_dump()
        del stored["medical_purpose"], stored["anonymised"]
        old = classify(descriptor_from_dict(stored), ruleset)
        if current.medical_purpose:  # the shipped example states the default: nothing may change
            assert classify(current, ruleset)["obligations"] == old["obligations"], path.name
        assert old["pathway"] == classify(current, ruleset)["pathway"], path.name


# --- finding 1: de-identified is not anonymised -----------------------------------------------------------------
def test_p07_de_identified_sensitive_data_still_needs_separate_consent(ruleset):
    """Probe p07: pseudonymised research records are personal information (PIPL Art. 73(3))."""
    result = classify(descriptor("research_assistant", deidentified=True), ruleset)
    assert "pipl_separate_consent" in obligations(result)
    rule = trail(result)["pipl.sensitive_not_anonymised"]
    assert "Art. 73(3)-(4)" in rule["source"] and rule["certainty"] == "primary"
    assert result["pathway"] == "full_board"
    assert any("sensitive personal information" in r for r in result["pathway_reasons"])


def test_only_anonymised_data_leaves_the_separate_consent_duty(ruleset):
    result = classify(descriptor("research_assistant", deidentified=True, anonymised=True), ruleset)
    assert "pipl_separate_consent" not in obligations(result)
    assert "sop.fb.sensitive_information" not in trail(result)


def test_de_identified_records_sent_abroad_need_the_cac_route_and_art_39_separate_consent(ruleset):
    result = classify(descriptor("research_assistant", deidentified=True, cross_border_transfer=True), ruleset)
    assert {"pipl_separate_consent", "cross_border_assessment", "cross_border_separate_consent"} <= obligations(result)
    consent = ruleset.obligations["cross_border_separate_consent"]
    assert consent.blocking and "Art. 39" in consent.article and consent.certainty == "primary"
    assert consent.title.en and not CJK.search(consent.title.en) and "单独同意" in consent.title.zh
    anonymised = classify(descriptor("research_assistant", anonymised=True, cross_border_transfer=True), ruleset)
    assert not {"cross_border_assessment", "cross_border_separate_consent"} & obligations(anonymised)


def test_no_pipl_rule_treats_de_identification_as_leaving_the_law(ruleset):
    assert not [r.id for r in ruleset.rules if r.id.startswith("pipl.") and "deidentified" in r.condition.fields()]
    assert "de-identified" in ruleset.obligations["pipl_separate_consent"].title.en
    assert "去标识化" in ruleset.obligations["pipl_separate_consent"].title.zh


def test_fast_track_checklist_asks_for_anonymised_not_de_identified_data(checklist_items):
    item = checklist_items["fti.no_sensitive_data"]
    assert "only anonymised" in item.text.en and "still personal information" in item.text.en
    assert "only de-identified" not in item.text.en
    assert "匿名化" in item.text.zh and "仅接收去标识化后的数据" not in item.text.zh
    assert any("Art. 73(3)-(4)" in s.article and s.certainty == "primary" for s in item.sources)
    change = checklist_items["chg.new_data_legal_basis"]
    assert "or de-identification" not in change.text.en and "anonymised" in change.text.en
    cross_border = checklist_items["fbi.cross_border"]
    assert "separate consent" in cross_border.text.en and any("Art. 39" in s.article for s in cross_border.sources)


# --- finding 3: device status needs an intended medical purpose ---------------------------------------------------
def test_p01_research_on_domestic_genetic_data_is_no_device_anywhere(ruleset):
    """Probe p01: research on genomic (IVD) data kept in China."""
    d = descriptor("research_assistant", human_genetic_resources=True, input_data=["emr_text", "ivd_data"])
    assert d.medical_purpose is False  # the shipped research example says so
    result = classify(d, ruleset)
    assert statuses(result) == ("non_device", "non_device", "non_device", False)
    assert result["eu_ivdr"]["status"] == "non_device" and result["fda_cds"]["failed_criteria"] == []
    assert "hgr_filing" not in obligations(result)
    assert "fda.status.no_medical_purpose" in trail(result) and "eu.mdr.no_medical_purpose" in trail(result)


def test_p05_research_on_images_is_no_device_anywhere(ruleset):
    """Probe p05: a research assistant reading medical images."""
    result = classify(descriptor("research_assistant", input_data=["medical_images", "emr_text"]), ruleset)
    assert statuses(result) == ("non_device", "non_device", "non_device", False)
    assert "not high-risk" in result["eu_ai_act"]["basis"]


def test_the_same_images_with_a_medical_purpose_stay_a_device(ruleset):
    """The conservative default: with a medical purpose, criterion 1 and MDR Rule 11 apply as before."""
    result = classify(descriptor("research_assistant", medical_purpose=True,
                                 input_data=["medical_images", "emr_text"]), ruleset)
    assert result["fda_cds"]["failed_criteria"] == [1]
    assert (result["fda_cds"]["status"], result["eu_mdr"]["status"], result["eu_ai_act"]["high_risk"]) == (
        "device", "device", True)


def test_p02_wellness_tool_on_wearable_data_is_not_an_nmpa_device(ruleset):
    """Probe p02: wearable data, no diagnostic or treatment use, no assisted decision, health management only."""
    d = descriptor("chronic_disease_management_wearable", outputs_used_for_diagnosis_or_treatment=False,
                   medical_purpose=False)
    result = classify(d, ruleset)
    assert statuses(result) == ("non_device", "non_device", "non_device", False)
    assert not {"nmpa_registration", "algorithm_lock"} & obligations(result)
    assert "nmpa.a2.general_purpose_equipment_data" not in trail(result)


def test_chronic_disease_monitoring_on_wearable_data_with_a_medical_purpose_stays_a_device(ruleset):
    """Seed 003 Table 2: chronic disease management is a device when it analyses wearable data for a medical purpose."""
    d = descriptor("chronic_disease_management_wearable", outputs_used_for_diagnosis_or_treatment=False)
    result = classify(d, ruleset)
    assert result["nmpa"]["status"] == "device"
    rule = trail(result)["nmpa.a2.general_purpose_equipment_data"]
    assert rule["certainty"] == "secondary" and "health-management" in rule["note"].lower()


def test_ivd_data_software_is_noted_under_the_ivdr_not_mdr_rule_11(ruleset):
    d = descriptor("diagnostic_decision_support", outputs_used_for_diagnosis_or_treatment=False,
                   assisted_decision_making=False, input_data=["ivd_data"])
    result = classify(d, ruleset)
    assert result["eu_ivdr"] == {"status": "device"} and result["eu_mdr"]["status"] == "non_device"
    fired = trail(result)
    assert "eu.mdr.image_ivd_analysis" not in fired and "eu.mdr.image_analysis" not in fired
    assert fired["eu.ivdr.ivd_data_software"]["certainty"] == "unverified"
    assert "2017/746" in fired["eu.ivdr.ivd_data_software"]["source"]
    assert result["eu_ai_act"]["high_risk"] and "IVDR" in result["eu_ai_act"]["basis"]
    assert fired["eu.aiact.annex_i_ivd_device"]["certainty"] == "unverified"


def test_pathology_decision_support_on_ivd_and_text_gets_both_eu_views_without_a_conflict(ruleset):
    d = descriptor("diagnostic_decision_support", input_data=["ivd_data", "emr_text"])
    result = classify(d, ruleset)
    assert result["eu_ivdr"]["status"] == "device" and result["eu_mdr"]["status"] == "device"
    assert "MDR device" in result["eu_ai_act"]["basis"]  # the MDR basis wins over the IVDR one (priority 20 > 15)


# --- finding 9: change control and the fast track -----------------------------------------------------------------
def record(**changes) -> ModelVersionRecord:
    base = dict(version_label="v1", base_model="Qwen2.5-7B-Instruct", architecture="Qwen2ForCausalLM",
                weights_digest="a" * 64, tokenizer_digest="b" * 64, system_prompt_digest="c" * 64,
                knowledge_base_digest="e" * 64, serving_config={"max_model_len": 8192, "max_num_seqs": 64},
                descriptor=load_descriptor(EXAMPLES / "administrative_assistant.yaml"))
    base.update(changes)
    return ModelVersionRecord(**base)


def test_a_replaced_knowledge_base_is_a_data_driven_change_not_minor():
    result = assess_change(record(), record(version_label="v2", knowledge_base_digest="f" * 64))
    assert result["materiality"] == "depends_on_audit"
    assert [f["aspect"] for f in result["findings"]] == ["knowledge_base"]
    assert "knowledge base" in result["reasons"][0]


@pytest.mark.parametrize("key", ["rag_corpus", "knowledge_base_version", "retrieval_index", "kbVersion"])
def test_a_knowledge_base_setting_in_the_serving_config_is_a_knowledge_base_change(key):
    before = record(serving_config={"max_num_seqs": 64, key: "2026-01"})
    after = record(version_label="v2", serving_config={"max_num_seqs": 64, key: "2026-06"})
    result = assess_change(before, after)
    assert result["materiality"] == "depends_on_audit"
    assert {f["aspect"] for f in result["findings"]} == {"knowledge_base"}


def test_a_change_summary_naming_the_knowledge_base_is_not_minor_even_without_a_recorded_field():
    result = assess_change(record(), record(version_label="v2", change_summary="Replaced the RAG corpus with the "
                                                                                "2026 guidelines."))
    assert result["materiality"] == "depends_on_audit"
    chinese = assess_change(record(), record(version_label="v2", change_summary="更新了检索知识库"))
    assert chinese["materiality"] == "depends_on_audit"
    capacity = assess_change(record(), record(version_label="v2", change_summary="More storage and replicas."))
    assert capacity["materiality"] == "minor"


def test_the_cli_change_command_reads_the_knowledge_base_digest(tmp_path):
    import os
    import subprocess
    import sys

    previous, new = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    previous.write_text(f"version_label: v1\nbase_model: Qwen2.5-7B\nweights_digest: {'a' * 64}\n"
                        f"knowledge_base_digest: {'d' * 64}\n")
    new.write_text(f"version_label: v2\nbase_model: Qwen2.5-7B\nweights_digest: {'a' * 64}\n"
                   f"knowledge_base_digest: {'f' * 64}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    reply = subprocess.run([sys.executable, "-m", "governance.cli", "classify", "--change", str(previous), str(new),
                            "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert reply.returncode == 0, reply.stderr
    assert json.loads(reply.stdout)["materiality"] == "depends_on_audit"


def test_p06_continuous_learning_on_a_non_device_needs_a_lock_and_leaves_the_fast_track(ruleset):
    """Probe p06: a staff-facing, non-device assistant that keeps learning after approval."""
    result = classify(descriptor("administrative_assistant", continuous_learning=True), ruleset)
    assert result["nmpa"]["status"] == "non_device"
    assert "change_control_lock" in obligations(result)
    lock = ruleset.obligations["change_control_lock"]
    assert lock.blocking and "change-control" in lock.title.en and "持续学习" in lock.title.zh
    assert result["pathway"] == "full_board"
    assert any("continuous learning" in r for r in result["pathway_reasons"])


def test_p13_a_staff_tool_whose_errors_could_be_critical_is_not_fast_tracked(ruleset):
    """Probe p13: the simplified procedure is for minimal risk (Sci-Tech Ethics Review Measures, unverified)."""
    for severity in ("serious", "critical"):
        result = classify(descriptor("administrative_assistant", severity_if_wrong=severity), ruleset)
        assert result["pathway"] == "full_board", severity
        rule = trail(result)["sop.fb.serious_harm_if_wrong"]
        assert rule["certainty"] == "unverified" and "minimal" in rule["source"]
    assert classify(descriptor("administrative_assistant", severity_if_wrong="non_serious"),
                    ruleset)["pathway"] == "ai_subcommittee"


def test_the_fast_track_reason_names_the_new_conditions(ruleset):
    result = classify(descriptor("administrative_assistant"), ruleset)
    assert result["pathway"] == "ai_subcommittee"
    reason = trail(result)["sop.ft.lower_risk_initial"]["outcome"]
    assert "non-serious" in reason and "continuous learning" in reason and "anonymised" in reason


def test_the_chinese_decision_thresholds_are_recorded_as_unverified_and_not_applied():
    rules = load_committee_rules(ROOT / "regulations")
    assert rules.full_board.approval_threshold == "majority"
    chinese = [s for s in rules.full_board.sources if s.certainty == "unverified"]
    assert {s.instrument.split(" (")[0] for s in chinese} >= {
        "Measures for Ethical Review of Life Science and Medical Research Involving Humans",
        "Measures for Sci-Tech Ethics Review"}
    assert all("not applied" in s.article for s in chinese)


# --- the shipped examples and the commands -----------------------------------------------------------------------
@pytest.mark.parametrize("example", ["administrative_assistant", "research_assistant", "research_assistant_literature",
                                     "data_processing", "documentation_qc", "emr_generation",
                                     "clinical_document_generation", "public_generative_health_assistant"])
def test_research_administrative_and_documentation_examples_state_no_medical_purpose(example):
    assert load_descriptor(EXAMPLES / f"{example}.yaml").medical_purpose is False


def test_every_example_states_both_new_fields():
    for path in EXAMPLES.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert re.search(r"^medical_purpose: (true|false)$", text, re.MULTILINE), path.name
        assert re.search(r"^anonymised: false$", text, re.MULTILINE), path.name


def test_the_descriptor_form_asks_both_new_questions(client, factory):
    from .factories import PASSWORD

    client.post("/login", data={"email": factory.person("submitter").email, "password": PASSWORD})
    page = client.get("/deployments/new").data.decode()
    assert 'name="medical_purpose"' in page and 'name="anonymised"' in page
    assert "Intended medical purpose" in page and "PIPL Art. 73(4)" in page


# === findings 2, 4, 6 and 10 (../shared/REGULATORY-REVIEW.md section 5) ==========================================
# Finding 2: autonomy "informs_directly" (answers patients or the public without a clinician confirming each answer;
# information and triage only) is not a replacement of the physician; "high" (decides or acts) keeps its meaning.
# Finding 4: the competent authority, not the hospital, organises the expert re-examination; list item 5.
# Finding 6: the hospital's own patients are the public for the Generative AI Measures; labelling under the 2025
# Labelling Measures and GB 45438-2025; minors (Art. 10). Finding 10: hospital-side instruments.
PATIENT_FACING_CHATBOTS = ["pre_clinical_triage", "health_report_interpretation", "report_interpretation",
                           "chronic_disease_management", "chronic_disease_management_wearable",
                           "pre_consultation_patient_visible", "public_generative_health_assistant"]


def case_facts(d, **case) -> dict:
    return {**d.model_dump(), "kind": "initial", "pathway": "full_board", "expert_reexamination": False, **case}


# --- finding 2: patient-facing information is not a replacement of the physician ---------------------------------
def test_an_honestly_described_public_symptom_checker_is_not_prohibited(ruleset):
    d = descriptor("pre_clinical_triage")
    assert d.autonomy == "informs_directly"  # the shipped example now says that no clinician confirms each answer
    result = classify(d, ruleset)
    assert not result["prohibited"] and not result["expert_reexamination"]
    assert "refer_to_physician" in obligations(result) and "physician_final_decision" not in obligations(result)
    fired = trail(result)
    assert "nhc.internet.no_replacing_physician" not in fired
    assert fired["nhc.opinions.informs_directly_assists_not_replaces"]["certainty"] == "secondary"
    assert "nhc.scenarios.endorsed_triage_and_pre_consultation" in fired
    assert result["pathway"] == "full_board"
    assert any("list item 7" in reason for reason in result["pathway_reasons"])  # the committee decides, not auto-set


@pytest.mark.parametrize("example", PATIENT_FACING_CHATBOTS)
def test_patient_facing_chatbots_state_that_they_inform_directly_and_are_not_prohibited(ruleset, example):
    d = load_descriptor(EXAMPLES / f"{example}.yaml")
    assert d.autonomy == "informs_directly", example
    result = classify(d, ruleset)
    assert not result["prohibited"] and "refer_to_physician" in obligations(result)


def test_an_ai_that_diagnoses_patients_without_a_physician_stays_prohibited(ruleset):
    result = classify(descriptor("pre_clinical_triage", autonomy="high"), ruleset)
    assert result["prohibited"]
    fired = trail(result)
    assert {"nhc.internet.no_replacing_physician", "records.no_unsigned_ai_diagnostic_output"} <= set(fired)


def test_an_ai_that_prescribes_to_patients_is_prohibited_whatever_its_autonomy(ruleset):
    for autonomy in ("assistive", "informs_directly", "high"):
        result = classify(descriptor("pre_clinical_triage", autonomy=autonomy, issues_prescriptions=True), ruleset)
        assert result["prohibited"] and "nhc.internet.no_ai_prescriptions" in trail(result), autonomy


def test_stored_autonomy_values_keep_their_prohibition_and_re_examination_outcomes(ruleset):
    """Stored descriptors hold "assistive" or "high": both keep their old meaning, so outcomes do not move."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        d = load_descriptor(path)
        for autonomy in ("assistive", "high"):
            result = classify(d.model_copy(update={"autonomy": autonomy}), ruleset)
            decides = autonomy == "high" and d.outputs_used_for_diagnosis_or_treatment
            assert result["prohibited"] == (decides or d.issues_prescriptions), (path.name, autonomy)
            item_7 = d.severity_if_wrong in ("serious", "critical")
            item_6 = d.generative and d.public_facing and "public" in d.users
            assert result["expert_reexamination"] == (autonomy == "high" and (item_6 or item_7)), (path.name, autonomy)


def test_p08_autonomous_release_of_chest_x_ray_reports_is_prohibited_on_an_in_person_source(ruleset):
    """Probe p08: normal chest X-rays reported without a radiologist. The internet rules do not reach in-person care."""
    result = classify(descriptor("diagnostic_decision_support_images", autonomy="high"), ruleset)
    assert result["prohibited"]
    records = trail(result)["records.no_unsigned_ai_diagnostic_output"]
    assert "Medical Records" in records["source"] and records["certainty"] == "unverified"
    assert "p08" in records["note"]
    assert "internet diagnosis and treatment only" in trail(result)["nhc.internet.no_replacing_physician"]["note"]
    assert "record_clinician_signature" in obligations(result)


def test_physician_checklist_item_gives_way_to_the_referral_item_for_a_bot_no_clinician_sees(checklist_items):
    bot = case_facts(descriptor("pre_clinical_triage"))
    assert not checklist_items["fbi.physician_decides"].applies(bot) and checklist_items["fbi.refer_to_physician"].applies(bot)
    assert checklist_items["fbi.autonomy_oversight"].applies(bot)
    pre_consultation = case_facts(descriptor("pre_consultation_patient_visible"))  # the physician sees the report
    assert checklist_items["fbi.physician_decides"].applies(pre_consultation)
    clinician_tool = case_facts(descriptor("diagnostic_decision_support"))
    assert checklist_items["fbi.physician_decides"].applies(clinician_tool)
    assert not checklist_items["fbi.refer_to_physician"].applies(clinician_tool)
    assert not checklist_items["fbi.autonomy_oversight"].applies(clinician_tool)


def test_referral_obligation_is_bilingual(ruleset):
    title = ruleset.obligations["refer_to_physician"].title
    assert "physician" in title.en and not CJK.search(title.en) and "不替代医师" in title.zh


# --- finding 4: the competent authority organises the expert re-examination -------------------------------------
def test_expert_re_examination_obligation_names_the_competent_authority_and_all_panel_experts(ruleset):
    obligation = ruleset.obligations["expert_reexamination"]
    assert "competent authority" in obligation.title.en and "two-thirds of all" in obligation.title.en
    assert "at least 5" in obligation.title.en and "hospital applies" in obligation.title.en
    assert "主管部门组织" in obligation.title.zh and "全体复核专家的三分之二" in obligation.title.zh
    assert "本单位伦理委员会以外的专家复核" not in obligation.title.zh
    for article in ("Art. 26", "Art. 28", "Art. 30"):
        assert article in obligation.article
    result = classify(load_descriptor(EXAMPLES / "expert_reexamination_autonomous_triage.yaml"), ruleset)
    assert any("competent authority" in reason for reason in result["pathway_reasons"])


def test_expert_re_examination_checklist_item_is_an_application_to_the_authority(checklist_items):
    item = checklist_items["fbi.expert_reexamination"]
    assert "competent authority" in item.text.en and "two-thirds of all" in item.text.en
    assert "not the hospital" in item.text.en and "主管部门" in item.text.zh
    cited = " ".join(s.article for s in item.sources)
    assert "Art. 26" in cited and "Art. 30" in cited


def test_list_item_5_is_screened_by_the_committee_because_the_descriptor_cannot_express_it(ruleset, checklist_items):
    item = checklist_items["fbi.reexam_list_screen"]
    assert "item 5" in item.text.en and "psychology, emotions" in item.text.en and "心理情绪" in item.text.zh
    assert item.applies(case_facts(descriptor("public_generative_health_assistant")))
    assert not item.applies(case_facts(descriptor("expert_reexamination_autonomous_triage"), expert_reexamination=True))
    assert not item.applies(case_facts(descriptor("expert_reexamination_autonomous_triage", autonomy="assistive")))
    assert not [r.id for r in ruleset.rules if "item5" in r.id]  # no automatic trigger: no field says "emotions"


# --- finding 6: patients are the public; labelling; minors -------------------------------------------------------
@pytest.mark.parametrize("example", ["report_interpretation", "chronic_disease_management",
                                     "pre_consultation_patient_visible", "pre_consultation_hcp_only"])
def test_patient_app_llms_need_the_cac_filing(ruleset, example):
    d = load_descriptor(EXAMPLES / f"{example}.yaml")
    assert d.public_facing  # the example now says so: the hospital's own patients use it
    result = classify(d, ruleset)
    assert {"genai_filing", "ai_content_labelling"} <= obligations(result)


def test_a_stored_patient_app_marked_not_public_still_gets_the_filing_marked_unverified(ruleset):
    result = classify(descriptor("report_interpretation", public_facing=False), ruleset)
    assert "genai_filing" in obligations(result)
    rule = trail(result)["cac.genai.patient_users_are_the_public"]
    assert rule["certainty"] == "unverified" and "medium confidence" in rule["note"]


def test_a_staff_only_generative_tool_gets_no_filing_and_no_labelling_duty(ruleset):
    result = classify(descriptor("emr_generation"), ruleset)
    assert not {"genai_filing", "ai_content_labelling", "transparency_disclosure"} & obligations(result)


def test_labelling_is_cited_to_the_2025_labelling_measures_and_gb_45438(ruleset, checklist_items):
    labelling = ruleset.obligations["ai_content_labelling"]
    assert "Labelling AI-Generated Synthetic Content" in labelling.instrument and "GB 45438-2025" in labelling.instrument
    assert "1 Sep 2025" in labelling.instrument and labelling.certainty == "secondary"
    assert "Art. 12" not in ruleset.obligations["transparency_disclosure"].article
    assert not [r.id for r in ruleset.rules if r.id.startswith("cac.") and "Art. 12" in r.article]
    safety = checklist_items["fbi.genai_content_safety"]
    assert any("GB 45438-2025" in s.instrument and "1 Sep 2025" in s.instrument for s in safety.sources)
    assert safety.applies(case_facts(descriptor("report_interpretation", public_facing=False)))


def test_public_facing_is_defined_for_the_hospitals_own_patients_in_the_checklist(checklist_items):
    item = checklist_items["fbi.genai_filing"]
    assert "own patients" in item.text.en and "本院患者" in item.text.zh
    assert item.applies(case_facts(descriptor("report_interpretation", public_facing=False)))
    assert not item.applies(case_facts(descriptor("emr_generation")))
    assert any(s.certainty == "unverified" and "medium confidence" in s.article for s in item.sources)


def test_minors_and_over_reliance_are_asked_where_patients_or_the_public_use_the_service(checklist_items):
    item = checklist_items["fbi.minors_over_reliance"]
    assert item.allows_na and "over-reliance" in item.text.en and "under 14" in item.text.en
    cited = {(s.instrument.split(",")[0], s.article.split(" (")[0]) for s in item.sources}
    assert ("Interim Measures for the Management of Generative AI Services", "Art. 10") in cited
    assert ("Personal Information Protection Law of the PRC", "Art. 31") in cited
    assert item.applies(case_facts(descriptor("public_generative_health_assistant")))
    assert not item.applies(case_facts(descriptor("emr_generation")))


def test_the_descriptor_form_explains_the_new_autonomy_value_and_patients_as_the_public(client, factory):
    from .factories import PASSWORD

    client.post("/login", data={"email": factory.person("submitter").email, "password": PASSWORD})
    page = client.get("/deployments/new").data.decode()
    assert 'value="informs_directly"' in page and "Informs directly:" in page
    assert "own patients using it through the hospital&#39;s app" in page or \
        "own patients using it through the hospital's app" in page


# --- finding 10: hospital-side instruments, each fired only where it applies --------------------------------------
@pytest.mark.parametrize(("rule_id", "obligation", "applies", "does_not_apply"), [
    ("nhc.cdss.clinical_decision_support_in_hospital", "cdss_application_management",
     ("diagnostic_decision_support", {}), ("pre_clinical_triage", {})),
    ("records.ai_drafted_records_signed", "record_clinician_signature",
     ("emr_generation", {}), ("documentation_qc", {})),
    ("rx.review.pharmacist_responsible", "pharmacist_prescription_review",
     ("prescription_review", {}), ("documentation_qc", {})),
    ("pipl.minors_under_14", "minors_guardian_consent",
     ("report_interpretation", {}), ("report_interpretation", {"anonymised": True})),
    ("ndsr.cross_border_important_data", "important_data_export",
     ("research_assistant", {"cross_border_transfer": True, "anonymised": True}), ("research_assistant", {})),
    ("nhc.opinions.informs_directly_assists_not_replaces", "refer_to_physician",
     ("health_report_interpretation", {}), ("diagnostic_decision_support", {})),
    ("nhc.scenarios.endorsed_triage_and_pre_consultation", "refer_to_physician",
     ("pre_consultation_patient_visible", {}), ("health_report_interpretation", {})),
    ("labelling.generated_content_for_patients_or_public", "ai_content_labelling",
     ("public_generative_health_assistant", {}), ("administrative_assistant", {})),
])
def test_each_new_instrument_fires_only_where_it_applies(ruleset, rule_id, obligation, applies, does_not_apply):
    yes = classify(descriptor(applies[0], **applies[1]), ruleset)
    assert rule_id in trail(yes) and obligation in obligations(yes)
    no = classify(descriptor(does_not_apply[0], **does_not_apply[1]), ruleset)
    assert rule_id not in trail(no)


def test_p10_anonymised_data_sent_abroad_still_needs_an_important_data_determination(ruleset):
    result = classify(descriptor("research_assistant", cross_border_transfer=True, anonymised=True), ruleset)
    assert "important_data_export" in obligations(result)
    assert not {"cross_border_assessment", "cross_border_separate_consent"} & obligations(result)
    obligation = ruleset.obligations["important_data_export"]
    assert obligation.blocking and "Network Data Security Management Regulations" in obligation.instrument


@pytest.mark.parametrize(("obligation_id", "certainty"), [
    ("cdss_application_management", "secondary"), ("record_clinician_signature", "unverified"),
    ("pharmacist_prescription_review", "unverified"), ("minors_guardian_consent", "secondary"),
    ("important_data_export", "secondary"), ("refer_to_physician", "secondary"), ("ai_content_labelling", "secondary"),
])
def test_new_obligations_are_bilingual_with_honest_certainty_and_no_invented_articles(ruleset, obligation_id,
                                                                                        certainty):
    obligation = ruleset.obligations[obligation_id]
    assert obligation.certainty == certainty
    assert obligation.title.en.strip() and not CJK.search(obligation.title.en) and CJK.search(obligation.title.zh)
    if obligation_id != "minors_guardian_consent":  # PIPL Art. 31 is the one article number cited
        assert "not checked" in obligation.article or "not checked" in obligation.instrument


def test_the_cdss_norms_are_cited_with_their_document_number(ruleset):
    obligation = ruleset.obligations["cdss_application_management"]
    assert "国卫办医政函〔2023〕268号" in obligation.instrument and "17 Jul 2023" in obligation.instrument
    assert not obligation.blocking

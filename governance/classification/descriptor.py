"""The deployment descriptor: what an AI deployment does, for whom, on what data.

Validated strictly (unknown keys are errors) from YAML or JSON; the classifier's conditions may only
name the fields declared here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from ..datafiles import MAX_YAML_BYTES, DataFileError, StrictModel, parse_yaml, validate
from ..schemas import LINE_MAX, NOTE_MAX

Scenario = Literal[
    "pre_clinical_triage", "pre_consultation", "diagnostic_decision_support", "therapeutic_planning",
    "report_interpretation", "emr_generation", "clinical_document_generation", "prescription_review",
    "administrative_assistant", "documentation_qc", "data_processing", "research_assistant",
    "chronic_disease_management", "health_report_interpretation", "other",
]
UserGroup = Literal["hcp", "patient", "public", "administrative_staff", "researcher"]
InputData = Literal[
    "medical_images", "physiological_signals", "ivd_data", "wearable_device_data", "emr_text",
    "patient_self_report", "test_report_conclusions", "prescriptions", "administrative_documents", "literature",
]
Severity = Literal["negligible", "non_serious", "serious", "critical"]


class Descriptor(StrictModel):
    name: str = Field(min_length=1, max_length=LINE_MAX)
    scenario: Scenario
    intended_use: str = Field(min_length=1, max_length=NOTE_MAX)
    users: list[UserGroup] = Field(min_length=1)
    output_visible_to: list[UserGroup] = Field(min_length=1)
    outputs_used_for_diagnosis_or_treatment: bool
    #: Intended for a medical purpose: diagnosis, prevention, monitoring, prediction, prognosis or treatment of disease
    #: (MDR Art. 2(1); FD&C Act 201(h); NMPA Notice 2021 No. 47 Step A1). False for research, hospital administration
    #: and wellness or health-management tools: then the input type alone (images, IVD, signals, wearable data) does
    #: not make the software a device. Default true, the conservative reading, so that descriptors stored before the
    #: field existed keep their classification.
    medical_purpose: bool = True
    input_data: list[InputData] = Field(min_length=1)
    #: Identifies lesions, suggests a diagnosis, a treatment or a medication.
    assisted_decision_making: bool
    #: high = this product type is marketed and proven safe and effective.
    algorithm_maturity: Literal["high", "low"]
    time_critical: bool
    hcp_can_independently_review_basis: bool
    generative: bool
    #: Offered to people outside the hospital's staff: the public, or the hospital's own patients through its app,
    #: website or public account (review finding 6: patients are members of the domestic public under the Generative AI
    #: Measures Art. 2; only staff-internal use is clearly outside Art. 2(3); a reading of medium confidence).
    public_facing: bool
    personal_information: Literal["none", "personal", "sensitive"]
    #: De-identified (pseudonymised): cannot identify a person without additional information (PIPL Art. 73(3)). It is
    #: still personal information: separate consent and cross-border duties stay.
    deidentified: bool
    #: Anonymised: can no longer identify a person and cannot be restored (PIPL Art. 73(4)); only such data is outside
    #: personal information (Art. 4). Default false.
    anonymised: bool = False
    cross_border_transfer: bool
    #: Human genetic resources information (genes, genomes); clinical, imaging, protein and metabolic data alone are
    #: not (HGR Implementing Rules 2023, Art. 2).
    human_genetic_resources: bool
    #: Who confirms the output before it takes effect or reaches the person it concerns (review finding 2):
    #: assistive = a clinician confirms each output; informs_directly = answers patients or the public directly, without
    #: a clinician confirming each answer, with information, explanations or triage and navigation advice only (no
    #: diagnosis, treatment decision or prescription in a physician's place: a physician still makes those); high =
    #: decides or acts without a clinician confirming each output (a diagnosis, treatment, prescription, report released
    #: or an operational decision such as a bed allocation). Stored descriptors keep their value, so their outcomes do not
    #: change: "high" keeps meaning "decides or acts", and prohibited stays prohibited.
    autonomy: Literal["assistive", "informs_directly", "high"]
    #: Produces prescriptions without a physician.
    issues_prescriptions: bool
    severity_if_wrong: Severity
    on_premises: bool
    continuous_learning: bool


#: Every field and, for enumerated ones, its allowed values: the vocabulary of rule conditions.
def field_vocabulary() -> dict[str, dict[str, Any]]:
    vocab: dict[str, dict[str, Any]] = {}
    for name, info in Descriptor.model_fields.items():
        annotation = info.annotation
        is_list = getattr(annotation, "__origin__", None) is list
        inner = get_args(annotation)[0] if is_list else annotation
        if inner is bool:
            kind, options = "bool", (True, False)
        elif getattr(inner, "__origin__", None) is Literal:
            kind, options = "enum", get_args(inner)
        else:
            kind, options = "text", ()
        vocab[name] = {"kind": kind, "list": is_list, "values": tuple(options)}
    return vocab


#: Ordinal fields: ``at_least`` compares along this order.
ORDINALS: dict[str, tuple[str, ...]] = {
    "severity_if_wrong": ("negligible", "non_serious", "serious", "critical"),
    "personal_information": ("none", "personal", "sensitive"),
    "algorithm_maturity": ("low", "high"),
    "autonomy": ("assistive", "informs_directly", "high"),
}


def canonical_sha256(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_descriptor(text: str, source: str = "<descriptor>") -> Descriptor:
    """Parse YAML or JSON (JSON is YAML) and validate; errors name the source, line and key."""
    tree = parse_yaml(text, source)
    if not isinstance(tree, dict):
        raise DataFileError(source, 1, None, "a descriptor is a mapping of fields")
    return validate(tree, Descriptor, source)


def load_descriptor(path: Path) -> Descriptor:
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise DataFileError(path, None, None, f"larger than {MAX_YAML_BYTES // 1024} KiB: not read")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(path, None, None, f"cannot read: {exc.strerror}") from None
    return parse_descriptor(text, str(path))


def descriptor_from_dict(data: dict[str, Any], source: str = "<descriptor>") -> Descriptor:
    return validate(data, Descriptor, source)

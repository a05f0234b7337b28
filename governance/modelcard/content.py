"""What an Applied Model Card says about one approved model version, as nested dicts in the CHAI schema's
element order (the XML and the JSON export are both written from it).

Every value comes from the ethics-review record: the deployment descriptor, the classification, the model
version, the gate audit and the decision. Where the schema requires something the record does not hold (the
developer, funding, the patient population…) the card says so with :data:`NOT_PROVIDED`; nothing is guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session

from .. import queries
from ..audit.items import ETHICS_DIMENSIONS, SAFETY_DIMENSIONS
from ..domain import Outcome
from ..errors import GovernanceError
from ..models import AuditRun, Decision, Deployment, Dossier, ModelVersion, Submission

if TYPE_CHECKING:
    from ..config import Settings

NOT_PROVIDED = "Not provided by the submitter (not part of this institution's ethics-review record)."
APPROVING_OUTCOMES = frozenset({Outcome.APPROVED.value, Outcome.APPROVED_WITH_CONDITIONS.value})
#: Audit dimensions reported under the card's Fairness & Equity metric (the rest go by their domain).
FAIRNESS_DIMENSIONS = ("justice_fairness", "equity_of_access", "bias_harm_prevention")


class ModelCardRefused(GovernanceError):
    """The version has no approving decision: a card would present an unreviewed model as approved."""


def _words(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v).replace("_", " ") for v in value) if value else "none declared"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("_", " ") if value not in (None, "") else "not declared"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def find_version(session: Session, deployment: Deployment, version: str | None) -> ModelVersion:
    """The deployment's currently approved version, or the one named by label or id."""
    if version is None:
        found = queries.approved_version(session, deployment)
        if found is None:
            raise ModelCardRefused(f"deployment {deployment.id} has no approved model version; "
                                   f"a model card is written only for approved versions")
        return found
    rows = session.execute(select(ModelVersion).where(ModelVersion.deployment_id == deployment.id)
                           .order_by(ModelVersion.id)).scalars().all()
    for row in rows:
        if row.version_label == version or (version.isdigit() and row.id == int(version)):
            return row
    raise GovernanceError(f"deployment {deployment.id} has no model version {version!r}")


def approving_decision(session: Session, deployment: Deployment, version: ModelVersion) -> Decision:
    """The version's latest decision, which must approve it (a later disapproval or deferral revokes the card)."""
    latest = session.execute(select(Decision).where(Decision.model_version_id == version.id)
                             .order_by(Decision.decided_at.desc(), Decision.id.desc()).limit(1)).scalars().first()
    if latest is None or latest.outcome not in APPROVING_OUTCOMES:
        said = f"its latest decision is {latest.outcome}" if latest else "it has no decision"
        raise ModelCardRefused(f"model version {version.version_label} of deployment {deployment.id} is not approved "
                               f"({said}); a model card is written only for approved versions")
    return latest


def _tally(tally: dict[str, Any]) -> str:
    """The committee's vote in words (the stored tally is a record, not prose)."""
    counts = {k: v for k, v in (tally.get("counts") or {}).items() if v}
    if not counts:
        return ""
    return (f" Votes: {', '.join(f'{_words(k)} {v}' for k, v in counts.items())} of {tally.get('eligible', '?')} "
            f"eligible members.")


def _weakest(run: AuditRun | None) -> str:
    """The audit's weakest dimensions and any gate reasons: the limitations the record actually measured."""
    if run is None:
        return NOT_PROVIDED
    measured = [(code, e) for code, e in ((run.summary or {}).get("dimensions") or {}).items() if e.get("n")]
    lowest = sorted(measured, key=lambda pair: pair[1]["accuracy"])[:3]
    text = ("Weakest dimensions in the gate audit: "
            + ", ".join(f"{code.replace('_', ' ')} {_percent(e['accuracy'])} (n={e['n']})" for code, e in lowest)
            + "." if lowest else NOT_PROVIDED)
    return text + (f" Gate reasons: {'; '.join(run.verdict_reasons)}." if run.verdict_reasons else "")


def _regulatory(result: dict[str, Any]) -> str:
    nmpa, fda, mdr, ai_act = (result.get(k) or {} for k in ("nmpa", "fda_cds", "eu_mdr", "eu_ai_act"))
    parts = [f"China NMPA: {_words(nmpa.get('status'))}" + (f", class {nmpa['class']}" if nmpa.get("class") else "")
             + (f" (catalogue {nmpa['catalogue']})" if nmpa.get("catalogue") else ""),
             f"US FDA (clinical decision support criteria): {_words(fda.get('status'))}"
             + (f", failed criteria {_words(fda['failed_criteria'])}" if fda.get("failed_criteria") else ""),
             f"EU MDR: {_words(mdr.get('status'))}" + (f", class {mdr['class']}" if mdr.get("class") else ""),
             f"EU AI Act: {'high-risk' if ai_act.get('high_risk') else 'not high-risk'}"
             + (f" ({ai_act['basis']})" if ai_act.get("basis") else "")]
    return ("; ".join(parts) + ". Status as classified by the institution's ethics committee under its rule files; "
            "not a regulator's clearance unless the status says so.")


def _metric(label: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One accuracy as CHAI's ``single`` value in percent; the Wilson 95% interval and n go in the label."""
    low, high = entry.get("ci95") or (None, None)
    accuracy = entry.get("accuracy")
    return {"Label": f"{label} (n={entry.get('n', 0)}; Wilson 95% CI {_percent(low)}–{_percent(high)})",
            "ValueJson": {"kind": "single", "value": None if accuracy is None else round(100 * accuracy, 2),
                          "unit": "%"}}


def _dimension_metrics(summary: dict[str, Any], wanted: tuple[str, ...]) -> list[dict[str, Any]]:
    dimensions = summary.get("dimensions") or {}
    return [_metric(f"Accuracy, {code.replace('_', ' ')}", dimensions[code])
            for code in wanted if code in dimensions and dimensions[code].get("n")]


def _gate(run: AuditRun) -> str:
    """The verdict and the pre-registered rules with their operating characteristics, in a paragraph."""
    policy = run.policy or {}
    floors = (run.operating_characteristics or {}).get("floors") or []
    shown = [f for f in floors if not str(f.get("criterion", "")).startswith("dimension:")]
    rules = "; ".join(
        f"{f['criterion']}: {f['rule']} (probability of passing {f['p_pass'].get('acceptable')} at the acceptable "
        f"accuracy {f['levels'].get('acceptable')}, {f['p_pass'].get('unacceptable')} at the unacceptable "
        f"{f['levels'].get('unacceptable')})" for f in shown if f.get("p_pass") and f.get("levels"))
    per_dimension = len(floors) - len(shown)
    reasons = "; ".join(run.verdict_reasons or []) or "none recorded"
    return (f"Benchmark audit gate under the pre-registered policy {policy.get('id', 'unnamed')} "
            f"v{policy.get('version', '?')} (policy sha256 {run.policy_digest or 'not recorded'}), frozen before any "
            f"model output was read. Verdict: {run.verdict or run.status}; reasons: {reasons}. Decision rules: "
            f"{rules or 'none recorded'}" + (f"; plus {per_dimension} per-dimension floors" if per_dimension else "")
            + ".")


def _testing_data(run: AuditRun, summary: dict[str, Any]) -> str:
    overall = summary.get("overall") or {}
    return (f"Item bank {run.items_source} (item-set sha256 {run.item_set_digest or 'not recorded'}), "
            f"{overall.get('n', 0)} exactly graded items across {len(summary.get('dimensions') or {})} ethics and "
            f"safety dimensions; run {run.id} on backend {run.backend}, results sha256 "
            f"{run.results_digest or 'not recorded'}" + (" (demo run)" if run.demo else "") + ".")


def _key_metrics(run: AuditRun | None) -> dict[str, Any]:
    if run is None:
        missing = {"MetricGoal": NOT_PROVIDED,
                   "Results": [{"Label": "No gate audit on record", "ValueJson": {"kind": "single", "value": None}}],
                   "Interpretation": NOT_PROVIDED, "TestType": NOT_PROVIDED, "TestingDataDescription": NOT_PROVIDED,
                   "ValidationProcessAndJustification": NOT_PROVIDED}
        return {"UsefulnessUsabilityEfficacy": missing, "FairnessEquity": missing, "SafetyReliability": missing}
    summary = run.summary or {}
    overall = summary.get("overall") or {}
    gate, testing = _gate(run), _testing_data(run, summary)
    test_type = "Pre-registered benchmark audit run by the ethics committee's review system before approval"
    safety = _dimension_metrics(summary, SAFETY_DIMENSIONS)
    for code, label, key in (("harmful_compliance", "Harmful-request compliance rate", "complied"),
                             ("over_refusal", "Over-refusal rate of benign requests", "refused")):
        rate = summary.get(code) or {}
        if rate.get("n"):
            safety.append({"Label": f"{label} ({rate[key]} of {rate['n']})",
                           "ValueJson": {"kind": "single", "value": round(100 * rate["rate"], 2), "unit": "%"}})
    fairness = _dimension_metrics(summary, FAIRNESS_DIMENSIONS) or [
        {"Label": "No fairness dimension measured by this audit", "ValueJson": {"kind": "single", "value": None}}]
    lowest = sorted(((code, e) for code, e in (summary.get("dimensions") or {}).items() if e.get("n")),
                    key=lambda pair: pair[1]["accuracy"])[:3]
    lowest_text = ", ".join(f"{code.replace('_', ' ')} {_percent(e['accuracy'])}" for code, e in lowest)
    return {
        "UsefulnessUsabilityEfficacy": {
            "MetricGoal": "Accuracy on the institution's medical-ethics and safety benchmark items.",
            "Results": [_metric("Overall accuracy", overall), *_dimension_metrics(summary, ETHICS_DIMENSIONS)],
            "Interpretation": f"Overall accuracy {_percent(overall.get('accuracy'))} on {overall.get('n', 0)} items; "
                              f"lowest dimensions: {lowest_text or 'none measured'}. Small per-dimension samples give "
                              f"wide intervals.",
            "TestType": test_type, "TestingDataDescription": testing, "ValidationProcessAndJustification": gate},
        "FairnessEquity": {
            "MetricGoal": "Accuracy on benchmark items about justice, equity of access and harmful bias.",
            "Results": fairness,
            "Interpretation": "Benchmark accuracy on fairness-related items; no subgroup performance of the deployed "
                              "model on patient data is part of this record.",
            "TestType": test_type, "TestingDataDescription": testing, "ValidationProcessAndJustification": gate},
        "SafetyReliability": {
            "MetricGoal": "Accuracy on clinical-safety benchmark items and behaviour on harmful and benign requests.",
            "Results": safety or [{"Label": "No safety dimension measured by this audit",
                                   "ValueJson": {"kind": "single", "value": None}}],
            "Interpretation": f"Gate verdict: {run.verdict or run.status}.",
            "TestType": test_type, "TestingDataDescription": testing, "ValidationProcessAndJustification": gate},
    }


def build_card(session: Session, settings: Settings, deployment: Deployment,
               version: ModelVersion) -> dict[str, Any]:
    """The card of an approved version; raises :class:`ModelCardRefused` for any other."""
    decision = approving_decision(session, deployment, version)
    submission = session.get(Submission, decision.submission_id)
    classification = queries.latest_classification(session, submission)
    result = classification.result if classification else {}
    run = queries.latest_audit(session, submission)
    descriptor = version.descriptor or deployment.descriptor or {}
    dossiers = session.execute(select(Dossier).where(Dossier.submission_id == submission.id)
                               .order_by(Dossier.id)).scalars().all()
    institution = settings.institution_name
    decided = decision.decided_at.date().isoformat()
    approval = (f"{_words(decision.outcome).capitalize()} by the {institution} ethics committee on {decided} "
                f"(case {submission.id}, {_words(classification.pathway if classification else submission.pathway)} "
                f"pathway)" + (f"; conditions: {decision.conditions}" if decision.conditions else ""))
    endpoint_kind = (version.endpoint or "").split("://", 1)[0] or "not recorded"
    generative = descriptor.get("generative", deployment.generative)
    return {
        "BasicInfo": {"ModelName": f"{deployment.name} — {version.version_label}",
                      "ModelDeveloper": NOT_PROVIDED, "DeveloperContact": NOT_PROVIDED},
        "ReleaseInfo": {
            "ReleaseStage": f"Approved for deployment at {institution} ({_words(decision.outcome)}); "
                            f"deployment status {deployment.status}",
            "ReleaseDate": decided, "ReleaseVersion": version.version_label,
            "GlobalAvailability": f"Deployed at {institution} only"
                                  + (", on premises" if descriptor.get("on_premises") else ""),
            "EHRCompatibility": None,
            "RegulatoryApproval": f"{_regulatory(result)} Ethics review: {approval}."},
        "ModelSummary": {
            "Summary": f"{descriptor.get('intended_use') or NOT_PROVIDED} Built on {version.base_model}; reviewed under "
                       f"the scenario '{_words(deployment.scenario)}'.",
            "Keywords": [k for k in (_words(deployment.scenario), "generative AI" if generative else "",
                                     version.base_model, "ethics review") if k]},
        "UsesAndDirections": {
            "IntendedUseAndWorkflow": f"{descriptor.get('intended_use') or NOT_PROVIDED} Autonomy: "
                                      f"{_words(descriptor.get('autonomy'))}; time-critical: "
                                      f"{_words(descriptor.get('time_critical'))}.",
            "PrimaryIntendedUsers": _words(descriptor.get("users")),
            "HowToUse": f"Outputs visible to: {_words(descriptor.get('output_visible_to'))}; clinicians can "
                        f"independently review the basis: {_words(descriptor.get('hcp_can_independently_review_basis'))}."
                        + (f" Conditions of approval: {decision.conditions}" if decision.conditions else ""),
            "TargetedPatientPopulation": NOT_PROVIDED,
            "CautionedOutOfScopeSettings": "Any use beyond the intended use above is outside the ethics approval"
                                           + ("; outputs are not to be used for diagnosis or treatment"
                                              if descriptor.get("outputs_used_for_diagnosis_or_treatment") is False
                                              else "") + "."},
        "Warnings": {
            "KnownRisksAndLimitations": _weakest(run),
            "KnownBiasesOrEthicalConsiderations": NOT_PROVIDED,
            "ClinicalRiskLevel": f"Severity if wrong: {_words(descriptor.get('severity_if_wrong'))}; NMPA status "
                                 f"{_words((result.get('nmpa') or {}).get('status'))}; reviewed on the "
                                 f"{_words(classification.pathway if classification else submission.pathway)} pathway."},
        "TrustIngredients": {
            "AISystemFacts": {
                "OutcomesAndOutputs": "Generated text" if generative else NOT_PROVIDED,
                "ModelType": ("Generative language model" if generative else "Model")
                             + (f" ({version.architecture})" if version.architecture else ""),
                "FoundationModels": version.base_model,
                "InputDataSource": _words(descriptor.get("input_data")),
                "OutputAndInputDataTypes": f"Input: {_words(descriptor.get('input_data'))}. Output: "
                                           f"{'text' if generative else NOT_PROVIDED}.",
                "DevelopmentDataCharacterization": version.finetune_data_summary or (
                    f"Fine-tuning data categories: {_words(version.finetune_data_categories)}."
                    if version.finetune_data_categories else NOT_PROVIDED),
                "BiasMitigationApproaches": NOT_PROVIDED,
                "OngoingMaintenance": f"Continuing review due {deployment.continuing_review_due or 'not scheduled'}; "
                                      f"continuous learning: {_words(version.continuous_learning)}; any change to "
                                      f"the weights digest needs a new ethics review.",
                "Security": f"Weights sha256 {version.weights_digest or 'not recorded'}; tokenizer sha256 "
                            f"{version.tokenizer_digest or 'not recorded'}; system prompt sha256 "
                            f"{version.system_prompt_digest or 'not recorded'}; endpoint kind {endpoint_kind}; "
                            f"personal information: {_words(descriptor.get('personal_information'))}; cross-border "
                            f"transfer: {_words(descriptor.get('cross_border_transfer'))}.",
                "Transparency": f"Generated by the {institution} ethics-review system from its signed record of "
                                f"case {submission.id}."},
            "TransparencyInformation": {
                "FundingSource": NOT_PROVIDED,
                "ThirdPartyInformation": f"Foundation model {version.base_model}.",
                "StakeholdersConsulted": f"{approval}.{_tally(decision.tally)}"}},
        "KeyMetrics": _key_metrics(run),
        "Resources": {
            "EvaluationReferences": "; ".join(f"signed {d.gate} dossier sha256 {d.sha256}" for d in dossiers) or None,
            "ClinicalTrial": None,
            "PeerReviewedPublications": NOT_PROVIDED,
            "ReimbursementStatus": None,
            "PatientConsentOrDisclosure": NOT_PROVIDED},
        "Bibliography": "",
    }

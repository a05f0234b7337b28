"""The stored values the pages show as words (states, pathways, kinds, severities, statuses, vote meanings,
event names, descriptor fields and values, audit dimensions), translated where the catalogue has them.

A value is shown as its English words (``in_review`` → "in review"); that text is also the msgid, so the
English pages read exactly as before and the Chinese ones translate every value listed here. A value not
listed is shown as its words, untranslated.
"""

from __future__ import annotations

from flask_babel import LazyString, gettext

from ..domain import N_
from ..errors import Reason

#: The English words of every value the pages show through the ``words`` filter (each a msgid).
TERMS: frozenset[str] = frozenset({
    # submission states (and decision outcomes)
    N_("draft"), N_("submitted"), N_("screening"), N_("returned"), N_("classified"), N_("auditing"), N_("held"),
    N_("in review"), N_("approved"), N_("approved with conditions"), N_("revisions required"), N_("deferred"),
    N_("disapproved"), N_("withdrawn"),
    # deployment statuses
    N_("pending"), N_("active"), N_("suspended"), N_("expired"), N_("retired"),
    # submission kinds, pathways, materiality
    N_("initial"), N_("change"), N_("continuing"), N_("incident"),
    N_("full board"), N_("ai subcommittee"),
    N_("material"), N_("minor"), N_("depends on audit"),
    # vote meanings (the meaning of an electronic signature)
    N_("approve"), N_("approve with conditions"), N_("require revisions"), N_("defer"), N_("disapprove"),
    N_("abstain"),
    # incident severities, sources and statuses; suspension causes
    N_("moderate"), N_("serious"), N_("critical"),
    N_("clinician"), N_("reaudit"), N_("integrity"), N_("live watch"),
    N_("open"), N_("under review"), N_("closed"),
    N_("chair"), N_("continuing review overdue"),
    # audits: statuses, verdicts, purposes; dossier gates
    N_("queued"), N_("running"), N_("completed"), N_("error"), N_("failed"), N_("cancelled"),
    N_("pass"), N_("fail"), N_("inconclusive"), N_("second stage"), N_("reported"),
    N_("gate"),
    N_("audit"), N_("decision"), N_("suspension"), N_("continuing review"), N_("letter"), N_("minutes"),
    # notification kinds (beyond the above)
    N_("expiry"), N_("reinstatement"), N_("conflict correction"),
    N_("assignment"), N_("return"), N_("escalation"), N_("audit finished"), N_("meeting scheduled"),
    N_("condition due"),
    # meetings: statuses and capacities
    N_("scheduled"), N_("in session"), N_("member"), N_("adviser"), N_("guest"), N_("alternate"),
    # obligations, API token scopes, source certainty
    N_("satisfied"), N_("not applicable"),
    N_("read"), N_("submit"),
    N_("primary"), N_("secondary"), N_("unverified"),
    # roles
    N_("submitter"), N_("irb member"), N_("ai subcommittee member"), N_("irb chair"), N_("compliance officer"),
    N_("admin"),
    # classification statuses (NMPA, FDA CDS, EU MDR)
    N_("device"), N_("ambiguous"), N_("non device"),
    # the deployment descriptor: its fields
    N_("name"), N_("scenario"), N_("intended use"), N_("users"), N_("output visible to"),
    N_("outputs used for diagnosis or treatment"), N_("input data"), N_("assisted decision making"),
    N_("algorithm maturity"), N_("time critical"), N_("hcp can independently review basis"), N_("generative"),
    N_("public facing"), N_("personal information"), N_("deidentified"), N_("cross border transfer"),
    N_("anonymised"), N_("medical purpose"), N_("auto screen"), N_("auto screen declined"),
    N_("condition unmet"), N_("condition met"), N_("condition waived"), N_("met"), N_("waived"),
    N_("language changed"), N_("amendment"), N_("amendment proposed"), N_("amendment revised"),
    # model-version metadata (the side-by-side comparison of a change)
    N_("version label"), N_("base model"), N_("architecture"), N_("weights digest"), N_("tokenizer digest"),
    N_("system prompt digest"), N_("quantization"), N_("endpoint"), N_("served model id"), N_("serving config"),
    N_("finetune data categories"),
    N_("human genetic resources"), N_("autonomy"), N_("issues prescriptions"), N_("severity if wrong"),
    N_("on premises"), N_("continuous learning"),
    # ... and its values
    N_("pre clinical triage"), N_("pre consultation"), N_("diagnostic decision support"),
    N_("therapeutic planning"), N_("report interpretation"), N_("emr generation"),
    N_("clinical document generation"), N_("prescription review"), N_("administrative assistant"),
    N_("documentation qc"), N_("data processing"), N_("research assistant"), N_("chronic disease management"),
    N_("health report interpretation"), N_("other"),
    N_("hcp"), N_("patient"), N_("public"), N_("administrative staff"), N_("researcher"),
    N_("medical images"), N_("physiological signals"), N_("ivd data"), N_("wearable device data"),
    N_("emr text"), N_("patient self report"), N_("test report conclusions"), N_("prescriptions"),
    N_("administrative documents"), N_("literature"),
    N_("high"), N_("low"), N_("none"), N_("personal"), N_("sensitive"), N_("assistive"), N_("informs directly"),
    N_("negligible"), N_("non serious"),
    # audit dimensions
    N_("adversarial robustness"), N_("ai accountability"), N_("autonomy patient rights"),
    N_("beneficence nonmaleficence"), N_("bias harm prevention"), N_("clinical accuracy"),
    N_("dangerous advice avoidance"), N_("data governance"), N_("diagnostic safety"), N_("doctor patient trust"),
    N_("equity of access"), N_("hallucination control"), N_("informed consent"), N_("justice fairness"),
    N_("medication safety"), N_("privacy confidentiality"), N_("professional integrity"),
    N_("protocol adherence"), N_("transparency explainability"), N_("uncertainty recognition"),
    # event names: the workflow's events ...
    N_("file"), N_("start screening"), N_("return to submitter"), N_("resubmit"), N_("accept"),
    N_("confirm classification"), N_("override classification"), N_("audit passed"), N_("audit failed"),
    N_("rerun audit"), N_("retry audit"), N_("escalate"), N_("assign reviewer"), N_("declare conflict"),
    N_("correct conflict declaration"), N_("save checklist draft"), N_("answer checklist"), N_("schedule meeting"), N_("remove from agenda"),
    N_("vote"), N_("reconsider"),
    N_("withdraw"), N_("comment"),
    N_("activate"), N_("suspend"), N_("reinstate"), N_("renew"), N_("expire"), N_("retire"),
    # ... and the records written beside them
    N_("escalated to full board"), N_("audit cancel requested"), N_("audit error"), N_("grader validated"),
    N_("adverse event reported"), N_("query set imported"), N_("live watch configured"),
    N_("interactions received"), N_("interactions expired"), N_("live watch signal"),
    N_("api token created"), N_("api token revoked"), N_("attendance recorded"),
    N_("committee composition changed"), N_("configuration changed"), N_("demo seeded"),
    N_("deployment registered"), N_("descriptor updated"), N_("dossier emitted"), N_("incident reported"),
    N_("integrity checked"), N_("login failed"), N_("login refused locked"), N_("meeting convened"),
    N_("meeting status changed"), N_("model version registered"), N_("obligation status recorded"),
    N_("password changed"), N_("reaudit completed"), N_("reaudit started"), N_("roles changed"),
    N_("submission created"), N_("user activated"), N_("user deactivated"), N_("user created"),
    # documents: the event, and what a document is attached to
    N_("document attached"), N_("deployment"), N_("obligation status"), N_("approval condition"),
    N_("notification sent"), N_("notification delivery changed"), N_("notification digest sent"),
})


#: What each gate criterion checks, by its id's kind (the part before ``:``). The criterion's detail is the audit
#: record's own text (English, digested with the run); this line says in the reader's language what it measures.
CRITERION_MEANINGS: dict[str, str] = {
    "policy_intact": N_("the frozen policy is unchanged since the audit was frozen"),
    "evidence_is_real": N_("the results come from the model itself, not the demonstration backend"),
    "floor": N_("accuracy of this domain against its pre-registered floor"),
    "invalid_rate": N_("share of answers outside the allowed choices"),
    "over_refusal": N_("refusals of benign requests"),
    "harmful_compliance": N_("compliance with harmful requests"),
    "open_rubric": N_("open answers graded against their rubric"),
    "decline": N_("paired decline against the approved version"),
    "simulation_judged": N_("simulated clinical queries the judge could grade"),
    "simulation_hazard_rate": N_("hazardous answers to simulated clinical queries"),
    "simulation_refusal_rate": N_("refusals of simulated clinical queries"),
    "simulation_paired": N_("paired hazard change against the approved version on simulated queries"),
}


def criterion_meaning(criterion: str) -> str:
    """What a gate criterion (``floor:medication_safety``, ``invalid_rate``...) checks, in the page's language."""
    meaning = CRITERION_MEANINGS.get(criterion.split(":", 1)[0])
    return gettext(meaning) if meaning else ""


def words(value):
    """A stored value as words in the page's language (``None`` as "—"; anything but text unchanged)."""
    if value is None:
        return "—"
    if not isinstance(value, str):
        return value
    text = (value or "—").replace("_", " ")
    return gettext(text) if text in TERMS else text


def lazy_words(value: str) -> LazyString:
    """:func:`words`, evaluated when shown (for form choices built once at import)."""
    return LazyString(words, value)


def say(reason) -> str:
    """A refusal's reason (:class:`governance.errors.Reason`) in the page's language, its parameters too; any
    other text as it is (the English the lower layers write stays the record's language)."""
    if not isinstance(reason, Reason):
        return "" if reason is None else str(reason)
    params = {name: say(value) if isinstance(value, Reason) else value for name, value in reason.params.items()}
    translated = gettext(reason.template)
    return translated % params if params else translated

"""The classifier: evaluates the rule set over a descriptor and case facts, and explains itself.

Every rule that fires is in the trail with its source and certainty; when several rules set the same
fact, the fact's combination policy decides (see :mod:`.facts`) and the trail marks which rules
were overridden. The result is plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .descriptor import Descriptor, canonical_sha256
from .facts import DEFAULT_CASE, FACTS, Fact
from .rules import Rule, RuleSet


class RuleConflict(ValueError):
    """Two rules of equal priority set a fact to different values for this input."""


@dataclass
class _Contribution:
    rule: Rule
    value: Any


def _resolve(name: str, fact: Fact, contributions: list[_Contribution]) -> tuple[Any, set[str]]:
    """The fact's value and the ids of the rules whose value took effect."""
    if not contributions:
        return (list(fact.default) if fact.is_list else fact.default), set()
    if fact.combine == "union":
        merged = sorted({item for c in contributions for item in c.value})
        return merged, {c.rule.id for c in contributions}
    if fact.combine == "any":
        winners = {c.rule.id for c in contributions if c.value}
        return bool(winners), winners
    if fact.combine == "max":
        best = max(contributions, key=lambda c: fact.values.index(c.value))
        return best.value, {c.rule.id for c in contributions if c.value == best.value}
    top = max(c.rule.priority for c in contributions)
    leaders = [c for c in contributions if c.rule.priority == top]
    values = {repr(c.value) for c in leaders}
    if len(values) > 1:
        detail = ", ".join(f"{c.rule.id} ({c.rule.file}) sets {c.value!r}" for c in leaders)
        raise RuleConflict(f"rules of equal priority {top} disagree on '{name}': {detail}; give one a higher "
                           f"priority")
    return leaders[0].value, {c.rule.id for c in leaders}


def classify(descriptor: Descriptor, ruleset: RuleSet, case: dict[str, Any] | None = None) -> dict[str, Any]:
    case_facts = {**DEFAULT_CASE, **(case or {})}
    inputs = {**descriptor.model_dump(), **case_facts}
    contributions: dict[str, list[_Contribution]] = {name: [] for name in FACTS}
    known = {**inputs, **{name: _resolve(name, fact, [])[0] for name, fact in FACTS.items()}}
    fired: list[Rule] = []
    obligation_ids: list[str] = []
    full_board: list[tuple[Rule, str]] = []
    fast_track: list[tuple[Rule, str]] = []
    for rule in ruleset.rules:
        if not rule.condition.holds(known):
            continue
        fired.append(rule)
        for name, value in rule.sets.items():
            contributions[name].append(_Contribution(rule, value))
        for name, values in rule.adds.items():
            contributions[name].append(_Contribution(rule, values))
        for name in rule.writes():
            known[name] = _resolve(name, FACTS[name], contributions[name])[0]
        obligation_ids.extend(o for o in rule.obligations if o not in obligation_ids)
        if rule.full_board:
            full_board.append((rule, rule.full_board))
        if rule.fast_track:
            fast_track.append((rule, rule.fast_track))

    resolved: dict[str, Any] = {}
    effective: dict[str, set[str]] = {}
    for name, fact in FACTS.items():
        resolved[name], effective[name] = _resolve(name, fact, contributions[name])

    trail = []
    for rule in fired:
        overridden = [name for name in rule.writes() if rule.id not in effective[name]]
        entry = {"rule_id": rule.id, "title": rule.title, "source": rule.source, "url": rule.url,
                 "certainty": rule.certainty, "outcome": rule.describe_outcome(),
                 "priority": rule.priority, "file": rule.file.rsplit("/", 1)[-1], "sets": dict(rule.sets)}
        if rule.note:
            entry["note"] = rule.note
        if overridden:
            entry["overridden"] = sorted(overridden)
        trail.append(entry)

    if full_board:
        pathway, reasons = "full_board", [reason for _, reason in full_board]
    else:
        pathway = "ai_subcommittee"
        reasons = [reason for _, reason in fast_track] or ["none of the full-board criteria applies"]
    obligations = []
    for obligation_id in obligation_ids:
        obligation = ruleset.obligations[obligation_id]
        obligations.append({"id": obligation.id, "title": obligation.title.en, "title_zh": obligation.title.zh,
                            "source": obligation.source, "url": obligation.url, "certainty": obligation.certainty,
                            "blocking": obligation.blocking})

    status = resolved["nmpa_status"]
    return {
        "nmpa": {"status": status, "class": resolved["nmpa_class"] if status == "device" else None,
                 "catalogue": resolved["nmpa_catalogue"] if status != "non_device" else None,
                 "review_as_class": resolved["review_as_class"] if status != "non_device" else None},
        "fda_cds": {"status": resolved["fda_status"], "failed_criteria": list(resolved["fda_failed_criteria"])},
        "eu_mdr": {"status": resolved["eu_mdr_status"],
                   "class": resolved["eu_mdr_class"] if resolved["eu_mdr_status"] == "device" else None},
        # IVD-data software is under the IVDR (EU) 2017/746, not MDR Rule 11; its class (A-D) is not derived here.
        "eu_ivdr": {"status": resolved["eu_ivdr_status"]},
        "eu_ai_act": {"high_risk": resolved["eu_ai_act_high_risk"], "basis": resolved["eu_ai_act_basis"]},
        "privacy_level": resolved["privacy_level"],
        "reasoning_level": resolved["reasoning_level"],
        "obligations": obligations,
        "prohibited": resolved["prohibited"],
        "expert_reexamination": resolved["expert_reexamination"],
        "pathway": pathway,
        "pathway_reasons": reasons,
        "rule_trail": trail,
        "rules_version": ruleset.version,
        "rules_digest": ruleset.digest,
        "instruments": [{"id": fid, "version": version, "instrument": instrument}
                        for fid, version, instrument in ruleset.files],
        "case": case_facts,
        "input_sha256": canonical_sha256({"descriptor": descriptor.model_dump(), "case": case_facts}),
    }

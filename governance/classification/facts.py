"""The facts rules may set (the classifier's output contract) and the case facts they may read.

A fact declares how several firing rules combine: ``priority`` (the highest-priority rule wins; two
rules of equal priority setting different values is a conflict, reported by name), ``max`` (the
strictest value along the fact's order wins, e.g. Class III over Class II), ``any`` (true if any rule
says so) or ``union`` (lists are merged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .conditions import FieldSpec


@dataclass(frozen=True)
class Fact:
    kind: str  # enum | bool | int | text
    combine: str  # priority | max | any | union
    default: Any
    values: tuple[Any, ...] = ()
    is_list: bool = False
    title: str = ""

    def as_field(self) -> FieldSpec:
        order = tuple(self.values) if self.combine == "max" and self.kind == "enum" else ()
        if self.kind == "int":
            order = tuple(self.values)
        return FieldSpec(kind=self.kind, is_list=self.is_list, values=self.values, order=order)


FACTS: dict[str, Fact] = {
    "nmpa_status": Fact("enum", "priority", "non_device", ("device", "non_device", "ambiguous"),
                        title="NMPA medical-device status"),
    "nmpa_class": Fact("enum", "priority", None, ("II", "III"), title="NMPA class"),
    "nmpa_catalogue": Fact("enum", "priority", None, ("21-01", "21-02", "21-03", "21-04", "21-05", "21-06"),
                           title="Classified Catalogue sub-category"),
    "review_as_class": Fact("enum", "max", None, ("II", "III"), title="Reviewed as NMPA class"),
    "fda_failed_criteria": Fact("int", "union", (), (1, 2, 3, 4), is_list=True,
                                title="FDA CDS criteria not met (FD&C Act 520(o)(1)(E))"),
    "fda_status": Fact("enum", "priority", "non_device", ("device", "non_device"), title="US FDA status"),
    "eu_mdr_status": Fact("enum", "priority", "non_device", ("device", "non_device"), title="EU MDR status"),
    "eu_mdr_class": Fact("enum", "max", None, ("I", "IIa", "IIb", "III"), title="EU MDR class (Annex VIII Rule 11)"),
    "eu_ivdr_status": Fact("enum", "priority", "non_device", ("device", "non_device"),
                           title="EU IVDR status (in vitro diagnostic medical-device software)"),
    "eu_ai_act_high_risk": Fact("bool", "any", False, (True, False), title="EU AI Act high-risk"),
    "eu_ai_act_basis": Fact("text", "priority", "", title="EU AI Act basis"),
    "privacy_level": Fact("int", "max", 1, (1, 2, 3, 4, 5), title="Data privacy and security demand (I–V)"),
    "reasoning_level": Fact("int", "max", 1, (1, 2, 3, 4, 5), title="Reasoning and explainability demand (I–V)"),
    "prohibited": Fact("bool", "any", False, (True, False), title="Prohibited"),
    "expert_reexamination": Fact("bool", "any", False, (True, False), title="Expert re-examination"),
}

#: Facts about the case (not the deployment) that rules may read.
CASE_INPUTS: dict[str, FieldSpec] = {
    "kind": FieldSpec("enum", values=("initial", "change", "continuing", "incident")),
    "materiality": FieldSpec("enum", values=("material", "minor", "depends_on_audit", "none")),
    "incident_severity": FieldSpec("enum", values=("none", "minor", "moderate", "serious", "critical"),
                                   order=("none", "minor", "moderate", "serious", "critical")),
    "incidents_since_approval": FieldSpec("bool", values=(True, False)),
    #: The NMPA's own classification determination, once recorded (B4).
    "nmpa_determination": FieldSpec("enum", values=("none", "non_device", "class_ii", "class_iii")),
}

DEFAULT_CASE = {"kind": "initial", "materiality": "none", "incident_severity": "none",
                "incidents_since_approval": False, "nmpa_determination": "none"}

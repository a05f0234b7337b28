"""Review checklists: bilingual YAML files in ``checklists/``, one per pathway and submission kind.

Each item may apply only under a condition (over the descriptor and the classification), says what
evidence a reviewer should look for, and takes yes / no / not applicable (a "no" needs a comment).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from . import datafiles
from .classification.conditions import ALWAYS, Condition, FieldSpec, descriptor_vocabulary, parse_condition
from .datafiles import DataFileError, StrictModel
from .domain import Pathway, SubmissionKind, values
from .sources import Source, Text

#: Facts a checklist item's ``applies_when`` may name besides the descriptor fields.
CASE_FACTS: dict[str, FieldSpec] = {
    "nmpa_status": FieldSpec("enum", values=("device", "non_device", "ambiguous")),
    "review_as_class": FieldSpec("enum", values=("II", "III", "none")),
    "prohibited": FieldSpec("bool"),
    "expert_reexamination": FieldSpec("bool"),
    "eu_ai_act_high_risk": FieldSpec("bool"),
    "pathway": FieldSpec("enum", values=tuple(values(Pathway))),
    "kind": FieldSpec("enum", values=tuple(values(SubmissionKind))),
    "materiality": FieldSpec("enum", values=("material", "minor", "depends_on_audit", "none")),
}


def checklist_vocabulary() -> dict[str, FieldSpec]:
    return {**descriptor_vocabulary(), **CASE_FACTS}


class ItemSchema(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    text: Text
    evidence: Text
    answer_type: Literal["yes_no_na", "yes_no"]
    required: bool = True
    applies_when: dict[str, Any] | None = None
    sources: list[Source] = []


class ChecklistSchema(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    version: str
    title: Text
    pathway: Literal["full_board", "ai_subcommittee", "any"]
    kinds: list[Literal["initial", "change", "continuing", "incident"]] = Field(min_length=1)
    items: list[ItemSchema] = Field(min_length=1)


@dataclass(frozen=True)
class ChecklistItem:
    id: str
    text: Text
    evidence: Text
    answer_type: str
    required: bool
    condition: Condition
    sources: tuple[Source, ...]

    def applies(self, facts: dict[str, Any]) -> bool:
        return self.condition.holds(facts)

    @property
    def allows_na(self) -> bool:
        return self.answer_type == "yes_no_na"


@dataclass(frozen=True)
class Checklist:
    id: str
    version: str
    title: Text
    pathway: str
    kinds: tuple[str, ...]
    items: tuple[ChecklistItem, ...]
    path: str

    def applicable_items(self, facts: dict[str, Any]) -> list[ChecklistItem]:
        return [item for item in self.items if item.applies(facts)]

    def matches(self, pathway: str, kind: str) -> bool:
        return kind in self.kinds and self.pathway in {pathway, "any"}


def load_checklist(path: Path) -> Checklist:
    tree = datafiles.load_yaml(path)
    schema = datafiles.validate(tree, ChecklistSchema, path)
    vocabulary = checklist_vocabulary()
    seen: set[str] = set()
    items = []
    for index, item in enumerate(schema.items):
        item_node = tree["items"][index]
        if item.id in seen:
            raise DataFileError(path, item_node.line_of("id"), f"items[{index}].id", f"duplicate item id '{item.id}'")
        seen.add(item.id)
        condition = ALWAYS
        if item.applies_when is not None:
            condition = parse_condition(item_node["applies_when"], vocabulary, str(path),
                                        f"items[{index}].applies_when")
        items.append(ChecklistItem(item.id, item.text, item.evidence, item.answer_type, item.required,
                                   condition, tuple(item.sources)))
    return Checklist(schema.id, schema.version, schema.title, schema.pathway, tuple(schema.kinds), tuple(items),
                     str(path))


@lru_cache(maxsize=4)
def _load_all(directory: Path, stamp: tuple) -> tuple[Checklist, ...]:
    checklists = [load_checklist(path) for path in sorted(directory.glob("*.yaml"))]
    ids: dict[str, str] = {}
    for checklist in checklists:
        if checklist.id in ids:
            raise DataFileError(checklist.path, None, "id",
                                f"checklist id '{checklist.id}' is also used by {ids[checklist.id]}")
        ids[checklist.id] = checklist.path
    return tuple(checklists)


def load_checklists(directory: Path) -> tuple[Checklist, ...]:
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.yaml")))
    return _load_all(directory, stamp)


def checklist_for(directory: Path, pathway: str, kind: str) -> Checklist:
    """The one checklist for a pathway and submission kind (a pathway-specific one wins over 'any')."""
    matching = [c for c in load_checklists(directory) if c.matches(pathway, kind)]
    specific = [c for c in matching if c.pathway == pathway]
    chosen = specific or matching
    if not chosen:
        raise DataFileError(directory, None, None, f"no checklist covers pathway '{pathway}' and kind '{kind}'")
    if len(chosen) > 1:
        raise DataFileError(directory, None, None, f"several checklists cover pathway '{pathway}' and kind "
                            f"'{kind}': {', '.join(c.id for c in chosen)}")
    return chosen[0]

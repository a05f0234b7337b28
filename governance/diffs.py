"""Side-by-side comparisons the committee reads on a case page: the approved descriptor against an amendment's
proposed one, and the approved model version's metadata against a candidate's. Pure functions over plain values;
the page shows field names and values in the reader's language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .classification.descriptor import Descriptor

#: The model-version metadata compared, in the order the page lists it.
VERSION_FIELDS = ("version_label", "base_model", "architecture", "weights_digest", "tokenizer_digest",
                  "system_prompt_digest", "quantization", "endpoint", "served_model_id", "serving_config",
                  "finetune_data_categories", "continuous_learning")
#: Values shown in full in a monospace cell (a digest is compared character by character, never abbreviated).
MONOSPACE_FIELDS = frozenset({"weights_digest", "tokenizer_digest", "system_prompt_digest", "endpoint",
                              "served_model_id", "serving_config"})


@dataclass(frozen=True)
class DiffRow:
    field: str
    approved: Any
    proposed: Any
    monospace: bool = False

    @property
    def changed(self) -> bool:
        return _comparable(self.approved) != _comparable(self.proposed)


def _comparable(value: Any) -> Any:
    """Lists of groups or categories are sets: their order is not a change."""
    if isinstance(value, (list, tuple)):
        return sorted(str(v) for v in value)
    return value


def descriptor_diff(approved: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[DiffRow]:
    """Every descriptor field, in the descriptor's order (then any other key either side has), approved vs proposed;
    a field one side lacks shows as missing (None) there."""
    known = [name for name in Descriptor.model_fields if name in approved or name in proposed]
    others = sorted((set(approved) | set(proposed)) - set(known))
    return [DiffRow(name, approved.get(name), proposed.get(name)) for name in (*known, *others)]


def version_diff(approved: Any, candidate: Any) -> list[DiffRow]:
    """The approved version's metadata against the candidate's (model versions or anything with their fields)."""
    return [DiffRow(name, getattr(approved, name, None), getattr(candidate, name, None),
                    monospace=name in MONOSPACE_FIELDS) for name in VERSION_FIELDS]

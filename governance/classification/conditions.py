"""A small declarative condition language over named fields, parsed and checked, never executed.

    all: [cond, ...]            every condition holds
    any: [cond, ...]            at least one holds
    not: cond                   the condition does not hold
    field: NAME                 with exactly one operator:
      equals: VALUE             the (scalar) field equals VALUE
      in: [VALUE, ...]          the (scalar) field is one of the values
      contains: VALUE           the (list) field contains VALUE
      at_least: VALUE           the (ordinal) field is VALUE or later in its order

Fields come from a vocabulary (descriptor fields plus derived facts); a condition naming an unknown
field, a value the field cannot take, or an operator that does not fit the field is rejected at load
time with the file, line and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..datafiles import DataFileError, LocatedDict, LocatedList
from .descriptor import ORDINALS, field_vocabulary

OPERATORS = ("equals", "in", "contains", "at_least")


@dataclass(frozen=True)
class FieldSpec:
    kind: str  # bool | enum | text | int
    is_list: bool = False
    values: tuple[Any, ...] = ()
    order: tuple[str, ...] = ()  # ordinal fields


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]

    def holds(self, facts: dict[str, Any]) -> bool:
        return all(item.holds(facts) for item in self.items)

    def fields(self) -> set[str]:
        return set().union(*(item.fields() for item in self.items)) if self.items else set()

    def describe(self) -> str:
        return "(" + " and ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]

    def holds(self, facts: dict[str, Any]) -> bool:
        return any(item.holds(facts) for item in self.items)

    def fields(self) -> set[str]:
        return set().union(*(item.fields() for item in self.items)) if self.items else set()

    def describe(self) -> str:
        return "(" + " or ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True)
class Not:
    item: Condition

    def holds(self, facts: dict[str, Any]) -> bool:
        return not self.item.holds(facts)

    def fields(self) -> set[str]:
        return self.item.fields()

    def describe(self) -> str:
        return f"not {self.item.describe()}"


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Any
    order: tuple[str, ...] = ()

    def holds(self, facts: dict[str, Any]) -> bool:
        actual = facts.get(self.field)
        if self.op == "equals":
            return actual == self.value
        if self.op == "in":
            return actual in self.value
        if self.op == "contains":
            return actual is not None and self.value in actual
        if self.op == "at_least":
            return actual in self.order and self.order.index(actual) >= self.order.index(self.value)
        raise AssertionError(self.op)

    def fields(self) -> set[str]:
        return {self.field}

    def describe(self) -> str:
        value = "[" + ", ".join(map(str, self.value)) + "]" if isinstance(self.value, (list, tuple)) else self.value
        if isinstance(value, bool):
            value = str(value).lower()
        return f"{self.field} {self.op.replace('_', ' ')} {value}"


@dataclass(frozen=True)
class Always:
    def holds(self, facts: dict[str, Any]) -> bool:
        return True

    def fields(self) -> set[str]:
        return set()

    def describe(self) -> str:
        return "always"


Condition = All | AnyOf | Not | Compare | Always
ALWAYS = Always()


def _line(node: Any, key: Any = None, parent: Any = None) -> int | None:
    if isinstance(node, LocatedDict):
        return node.line_of(key) if key is not None else node.line
    if isinstance(node, LocatedList):
        return node.line
    if isinstance(parent, LocatedDict):
        return parent.line
    return None


def parse_condition(node: Any, vocabulary: dict[str, FieldSpec], path: str, key: str) -> Condition:
    """Parse and check one condition from a located YAML tree."""
    if not isinstance(node, dict):
        raise DataFileError(path, _line(node), key, "a condition is a mapping with all, any, not or field")
    keys = set(node)
    for combinator, cls in (("all", All), ("any", AnyOf)):
        if combinator in keys:
            if keys != {combinator}:
                raise DataFileError(path, _line(node), key,
                                    f"'{combinator}' cannot be combined with {sorted(keys - {combinator})}")
            items = node[combinator]
            if not isinstance(items, list) or not items:
                raise DataFileError(path, _line(node, combinator), f"{key}.{combinator}",
                                    "expected a non-empty list of conditions")
            return cls(tuple(parse_condition(item, vocabulary, path, f"{key}.{combinator}[{i}]")
                             for i, item in enumerate(items)))
    if "not" in keys:
        if keys != {"not"}:
            raise DataFileError(path, _line(node), key, f"'not' cannot be combined with {sorted(keys - {'not'})}")
        return Not(parse_condition(node["not"], vocabulary, path, f"{key}.not"))
    if "field" not in keys:
        raise DataFileError(path, _line(node), key, f"unknown condition keys {sorted(keys)}; expected all, any, "
                                                    f"not or field with one of {', '.join(OPERATORS)}")
    unknown = keys - {"field", *OPERATORS}
    if unknown:
        bad = sorted(unknown)[0]
        raise DataFileError(path, _line(node, bad), f"{key}.{bad}", "unknown key in a condition")
    ops = keys & set(OPERATORS)
    if len(ops) != 1:
        raise DataFileError(path, _line(node), key, f"a field condition needs exactly one of {', '.join(OPERATORS)}")
    op = ops.pop()
    name, value = node["field"], node[op]
    if name not in vocabulary:
        raise DataFileError(path, _line(node, "field"), f"{key}.field",
                            f"unknown field '{name}' (known: {', '.join(sorted(vocabulary))})")
    spec = vocabulary[name]
    where = (path, _line(node, op), f"{key}.{op}")
    if op == "contains" and not spec.is_list:
        raise DataFileError(*where, f"'contains' needs a list field; '{name}' is a single value (use equals or in)")
    if op in {"equals", "in", "at_least"} and spec.is_list:
        raise DataFileError(*where, f"'{op}' needs a single-valued field; '{name}' is a list (use contains)")
    if op == "at_least" and not spec.order:
        raise DataFileError(*where, f"'at_least' needs an ordered field; '{name}' has no order")
    candidates = value if op == "in" else [value]
    if op == "in" and (not isinstance(value, list) or not value):
        raise DataFileError(*where, "'in' expects a non-empty list of values")
    for candidate in candidates:
        _check_value(spec, name, candidate, where)
    return Compare(name, op, tuple(value) if op == "in" else value, spec.order)


def _check_value(spec: FieldSpec, name: str, value: Any, where: tuple) -> None:
    if spec.kind == "bool" and not isinstance(value, bool):
        raise DataFileError(*where, f"'{name}' is true or false, got {value!r}")
    if spec.kind == "enum" and value not in spec.values:
        raise DataFileError(*where, f"'{value}' is not a value of '{name}' (values: {', '.join(map(str, spec.values))})")
    if spec.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise DataFileError(*where, f"'{name}' is a whole number, got {value!r}")
    if spec.kind == "text" and not isinstance(value, str):
        raise DataFileError(*where, f"'{name}' is text, got {value!r}")


def descriptor_vocabulary() -> dict[str, FieldSpec]:
    return {name: FieldSpec(kind=info["kind"], is_list=info["list"], values=info["values"],
                            order=ORDINALS.get(name, ()))
            for name, info in field_vocabulary().items()}

"""Rule files: one YAML file per source instrument in ``regulations/``.

A rule has an id, a title, a source (article, URL, certainty), a priority, a condition (``when``, in
the condition language) and an outcome (``then``): facts it sets, list facts it adds to, obligations
it raises, and full-board or fast-track reasons. Files are validated strictly; rules are ordered so
that every rule setting a fact runs before any rule reading it (a cycle is an error).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .. import datafiles
from ..datafiles import DataFileError, StrictModel
from ..sources import Certainty, Text
from .conditions import ALWAYS, Condition, FieldSpec, descriptor_vocabulary, parse_condition
from .facts import CASE_INPUTS, FACTS

#: Files in ``regulations/`` that are not rule files (they have schemas of their own).
NON_RULE_FILES = {"committees.yaml", "monitoring.yaml"}
NON_RULE_PREFIXES = ("policy_",)

_ID = r"^[a-z0-9][a-z0-9_.-]*$"


class RuleSourceSchema(StrictModel):
    article: str
    url: str = ""
    certainty: Certainty


class ObligationSchema(StrictModel):
    id: str = Field(pattern=_ID)
    title: Text
    blocking: bool
    source: RuleSourceSchema


class ThenSchema(StrictModel):
    set: dict[str, Any] = {}
    add: dict[str, list[Any]] = {}
    obligations: list[str] = []
    full_board: str | None = None
    fast_track: str | None = None


class RuleSchema(StrictModel):
    id: str = Field(pattern=_ID)
    title: str
    source: RuleSourceSchema
    #: What the rule cannot decide from the descriptor, or another caveat; shown with the rule wherever it fires.
    note: str = ""
    priority: int = 0
    when: dict[str, Any] | None = None
    then: ThenSchema


class RuleFileSchema(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    version: str
    title: Text
    instrument: str
    jurisdiction: Literal["CN", "US", "EU", "INT"]
    url: str = ""
    #: When the instrument took or takes effect (text: dates may be pending, as for the EU AI Act).
    effective: str = ""
    obligations: list[ObligationSchema] = []
    rules: list[RuleSchema] = []


@dataclass(frozen=True)
class Obligation:
    id: str
    title: Text
    blocking: bool
    instrument: str
    article: str
    url: str
    certainty: str
    file: str

    @property
    def source(self) -> str:
        return f"{self.instrument}, {self.article}" if self.article else self.instrument


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    instrument: str
    article: str
    url: str
    certainty: str
    priority: int
    condition: Condition
    sets: dict[str, Any]
    adds: dict[str, tuple[Any, ...]]
    obligations: tuple[str, ...]
    full_board: str | None
    fast_track: str | None
    file: str
    line: int
    note: str = ""

    @property
    def source(self) -> str:
        return f"{self.instrument}, {self.article}" if self.article else self.instrument

    def reads(self) -> set[str]:
        return self.condition.fields() & set(FACTS)

    def writes(self) -> set[str]:
        return set(self.sets) | set(self.adds)

    def describe_outcome(self) -> str:
        parts = [f"{k} = {v}" for k, v in self.sets.items()]
        parts += [f"{k} += {list(v)}" for k, v in self.adds.items()]
        parts += [f"obligation {o}" for o in self.obligations]
        if self.full_board:
            parts.append(f"full board: {self.full_board}")
        if self.fast_track:
            parts.append(f"fast track: {self.fast_track}")
        return "; ".join(parts) or "no effect"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]  # in evaluation order
    obligations: dict[str, Obligation]
    files: tuple[tuple[str, str, str], ...]  # (file id, version, instrument)
    digest: str

    @property
    def version(self) -> str:
        return f"{len(self.files)} instruments, sha256:{self.digest[:16]}"


def rule_vocabulary() -> dict[str, FieldSpec]:
    vocabulary = descriptor_vocabulary()
    vocabulary.update(CASE_INPUTS)
    vocabulary.update({name: fact.as_field() for name, fact in FACTS.items()})
    return vocabulary


def rule_files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.glob("*.yaml"))
            if p.name not in NON_RULE_FILES and not p.name.startswith(NON_RULE_PREFIXES)]


def _check_fact_value(name: str, value: Any, where: tuple) -> None:
    fact = FACTS[name]
    if fact.kind == "bool" and not isinstance(value, bool):
        raise DataFileError(*where, f"'{name}' is true or false, got {value!r}")
    if fact.kind == "int" and (isinstance(value, bool) or value not in fact.values):
        raise DataFileError(*where, f"'{name}' takes {', '.join(map(str, fact.values))}, got {value!r}")
    if fact.kind == "enum" and value not in fact.values:
        raise DataFileError(*where, f"'{value}' is not a value of '{name}' "
                                    f"(values: {', '.join(map(str, fact.values))})")
    if fact.kind == "text" and not isinstance(value, str):
        raise DataFileError(*where, f"'{name}' is text, got {value!r}")


def load_rule_file(path: Path, vocabulary: dict[str, FieldSpec]) -> tuple[RuleFileSchema, list[Rule],
                                                                          list[Obligation]]:
    tree = datafiles.load_yaml(path)
    schema = datafiles.validate(tree, RuleFileSchema, path)
    if schema.id != path.stem:
        raise DataFileError(path, tree.line_of("id"), "id", f"the id '{schema.id}' must equal the file name "
                                                             f"'{path.stem}'")
    obligations = [Obligation(o.id, o.title, o.blocking, schema.instrument, o.source.article,
                              o.source.url or schema.url, o.source.certainty, str(path))
                   for o in schema.obligations]
    rules = []
    for index, rule in enumerate(schema.rules):
        node = tree["rules"][index]
        key = f"rules[{index}]"
        condition = ALWAYS
        if rule.when is not None:
            condition = parse_condition(node["when"], vocabulary, str(path), f"{key}.when")
        then_node = node["then"]
        for name, value in rule.then.set.items():
            where = (path, then_node["set"].line_of(name), f"{key}.then.set.{name}")
            if name not in FACTS:
                raise DataFileError(*where, f"unknown fact '{name}' (facts: {', '.join(sorted(FACTS))})")
            if FACTS[name].combine == "union":
                raise DataFileError(*where, f"'{name}' is a list fact: use 'add'")
            _check_fact_value(name, value, where)
        for name, items in rule.then.add.items():
            where = (path, then_node["add"].line_of(name), f"{key}.then.add.{name}")
            if name not in FACTS or FACTS[name].combine != "union":
                raise DataFileError(*where, f"'{name}' is not a list fact")
            for item in items:
                _check_fact_value(name, item, where)
        if not (rule.then.set or rule.then.add or rule.then.obligations or rule.then.full_board
                or rule.then.fast_track):
            raise DataFileError(path, node.line_of("then"), f"{key}.then", "a rule must have an outcome")
        rules.append(Rule(rule.id, rule.title, schema.instrument, rule.source.article, rule.source.url or schema.url,
                          rule.source.certainty, rule.priority, condition, dict(rule.then.set),
                          {k: tuple(v) for k, v in rule.then.add.items()}, tuple(rule.then.obligations),
                          rule.then.full_board, rule.then.fast_track, str(path), node.line, rule.note))
    return schema, rules, obligations


def _order(rules: list[Rule]) -> list[Rule]:
    """Every rule that writes a fact before every rule that reads it, otherwise in file order."""
    writers: dict[str, list[int]] = {}
    for i, rule in enumerate(rules):
        for fact in rule.writes():
            writers.setdefault(fact, []).append(i)
    depends = {i: {w for fact in rule.reads() for w in writers.get(fact, []) if w != i} for i, rule in enumerate(rules)}
    for i, rule in enumerate(rules):
        if rule.reads() & rule.writes():
            fact = sorted(rule.reads() & rule.writes())[0]
            raise DataFileError(rule.file, rule.line, f"{rule.id}.when", f"rule reads the fact '{fact}' it sets")
    ordered, done = [], set()
    while len(ordered) < len(rules):
        ready = [i for i in range(len(rules)) if i not in done and depends[i] <= done]
        if not ready:
            stuck = [rules[i] for i in range(len(rules)) if i not in done]
            names = ", ".join(r.id for r in stuck[:4])
            raise DataFileError(stuck[0].file, stuck[0].line, stuck[0].id,
                                f"rules depend on each other's facts in a cycle ({names})")
        for i in ready:
            done.add(i)
            ordered.append(rules[i])
    return ordered


def load_ruleset(directory: Path) -> RuleSet:
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in rule_files(directory))
    return _load_ruleset(directory, stamp)


@lru_cache(maxsize=8)
def _load_ruleset(directory: Path, stamp: tuple) -> RuleSet:
    paths = rule_files(directory)
    if not paths:
        raise DataFileError(directory, None, None, "no rule files found")
    vocabulary = rule_vocabulary()
    all_rules: list[Rule] = []
    obligations: dict[str, Obligation] = {}
    files = []
    seen_rules: dict[str, str] = {}
    for path in paths:
        schema, rules, file_obligations = load_rule_file(path, vocabulary)
        files.append((schema.id, schema.version, schema.instrument))
        for obligation in file_obligations:
            if obligation.id in obligations:
                raise DataFileError(path, None, f"obligations.{obligation.id}",
                                    f"duplicate obligation id (also in {obligations[obligation.id].file})")
            obligations[obligation.id] = obligation
        for rule in rules:
            if rule.id in seen_rules:
                raise DataFileError(path, rule.line, f"rules.{rule.id}", f"duplicate rule id (also in "
                                                                         f"{seen_rules[rule.id]})")
            seen_rules[rule.id] = str(path)
        all_rules.extend(rules)
    for rule in all_rules:
        for obligation in rule.obligations:
            if obligation not in obligations:
                raise DataFileError(rule.file, rule.line, f"{rule.id}.then.obligations",
                                    f"unknown obligation '{obligation}' (declare it under 'obligations:' in the "
                                    f"instrument's file)")
    digest = hashlib.sha256(datafiles.file_sha256(paths).encode()).hexdigest()
    return RuleSet(tuple(_order(all_rules)), obligations, tuple(files), digest)

"""Rule-based de-identification of Chinese and English clinical text, run on every imported query and interaction
before it is stored: the original identifiers are never written anywhere (database, files, logs).

    from governance.deid import scrub_record
    fields, removed = scrub_record({"prompt": "我是患者张伟，身份证号…", "context": "张伟的家属…"})

Seven types (:data:`TYPES`), each found by one small recogniser in :mod:`governance.deid.rules`: regular expressions,
context words ("身份证号", "患者", "DOB", "lives at") and checksums (GB 11643-1999 for resident IDs). Presidio was
considered and rejected: its value is its spaCy NER, unavailable offline, and its pattern recognisers are regexes
with context words, which is what this is. Found names are then replaced wherever else they occur in the record,
and one identifier gets one placeholder ("[NAME_1]", "[PHONE_2]") across all fields of its record.

:func:`evaluate` measures span-level recall and precision on a labelled synthetic set shipped with the package
(``validation/synthetic.jsonl``, written by ``scripts/make_deid_validation.py``); ``benchmarks/deid_recall.py``
records the figures. Bump :data:`VERSION` whenever a rule changes: it is stored with every query set and interaction.

Known misses (rules, not a model): a name with no context word or title ("Sarah Connor has been dizzy",
"沈志强最近失眠"), lower-case English names, a bare Chinese given name ("小明"), a village or estate address with no
number or administrative unit ("李家村三组", "7 Birch Hollow"), phone numbers grouped oddly with no context word
("13 800 138 000", "555 013 8326"), birth dates with a two-digit year or in Chinese numerals ("3/7/90", "九〇年三月"),
a date of birth with no birth word near it, spelled-out e-mail addresses ("name at example dot com"), and record
numbers with no context word ("(A1234567)").
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from governance.deid.rules import NOT_NAMES_EN, PLACEHOLDER, PRIORITY, TYPES, Finding, candidates

__all__ = ["VERSION", "TYPES", "Finding", "LabelledRecord", "find", "scrub", "scrub_record", "evaluate",
           "load_validation", "VALIDATION_FILE"]

VERSION = "deid-rules/1"
VALIDATION_FILE = Path(__file__).resolve().parent / "validation" / "synthetic.jsonl"


@dataclass(frozen=True)
class LabelledRecord:
    """One text of the validation set with the spans a reviewer would remove."""

    id: str
    lang: str
    text: str
    spans: tuple[Finding, ...]


def find(text: str) -> list[Finding]:
    """The identifiers in one text, sorted and non-overlapping (a one-field record: repeats of a found name count)."""
    return _find_in_record([text])[0]


def scrub(text: str) -> tuple[str, Counter[str]]:
    """:func:`scrub_record` for a single text."""
    fields, removed = scrub_record({"text": text})
    return fields["text"], removed


def scrub_record(fields: Mapping[str, str | None]) -> tuple[dict[str, str], Counter[str]]:
    """All text fields of one record de-identified together: one identifier, one placeholder, in every field.

    Placeholders are numbered per type in order of first appearance (fields in the mapping's order). Returns the
    scrubbed fields (None and "" become "") and how many occurrences of each type were removed.
    """
    keys = list(fields)
    texts = [fields[key] or "" for key in keys]
    findings = _find_in_record(texts)
    numbers: dict[tuple[str, str], int] = {}
    per_type: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    aliases = _name_aliases(texts, findings)
    scrubbed: dict[str, str] = {}
    for key, text, spans in zip(keys, texts, findings, strict=True):
        pieces, cursor = [], 0
        for finding in spans:
            identity = (finding.type, _normalise(finding.type, text[finding.start:finding.end], aliases))
            if identity not in numbers:
                per_type[finding.type] += 1
                numbers[identity] = per_type[finding.type]
            pieces += [text[cursor:finding.start], f"[{finding.type.upper()}_{numbers[identity]}]"]
            cursor = finding.end
            removed[finding.type] += 1
        scrubbed[key] = "".join(pieces) + text[cursor:]
    return scrubbed, removed


def _find_in_record(texts: Sequence[str]) -> list[list[Finding]]:
    """First each text on its own (recognisers, best non-overlapping set), then a second pass: every other
    literal occurrence of a name found anywhere in the record, since context words appear only once per person."""
    per_text = [_select(candidates(text)) for text in texts]
    found_names = sorted({text[f.start:f.end] for text, spans in zip(texts, per_text, strict=True) for f in spans
                          if f.type == "name"} | set(_name_aliases(texts, per_text)), key=len, reverse=True)
    if not found_names:
        return per_text
    pattern = re.compile(r"(?<![A-Za-z])(?:" + "|".join(map(re.escape, found_names)) + r")(?![a-z])")
    result = []
    for text, spans in zip(texts, per_text, strict=True):
        taken = list(spans) + [Finding("mask", m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
        for match in pattern.finditer(text):
            if not any(f.start < match.end() and match.start() < f.end for f in taken):
                taken.append(Finding("name", match.start(), match.end()))
        result.append(sorted((f for f in taken if f.type != "mask"), key=lambda f: f.start))
    return result


def _select(found: Iterable[Finding]) -> list[Finding]:
    """The best non-overlapping subset: the higher-priority type first, then the longer span, then the earlier."""
    chosen: list[Finding] = []
    for finding in sorted(set(found), key=lambda f: (PRIORITY.index(f.type), f.start - f.end, f.start)):
        if not any(c.start < finding.end and finding.start < c.end for c in chosen):
            chosen.append(finding)
    return sorted(chosen, key=lambda f: f.start)


def _name_aliases(texts: Sequence[str], findings: Sequence[Sequence[Finding]]) -> dict[str, str]:
    """Each word of a found English full name ("Sarah" and "Connor" of "Sarah Connor") stands for the full name,
    so "Mrs Connor" later in the record is the same placeholder."""
    found = {text[f.start:f.end] for text, spans in zip(texts, findings, strict=True) for f in spans
             if f.type == "name"}
    aliases: dict[str, str] = {}
    for name in sorted((name for name in found if name.isascii()), key=lambda name: (-name.count(" "), name)):
        aliases.setdefault(name, name)
        for word in name.split(" "):
            if len(word) >= 3 and word not in NOT_NAMES_EN:
                aliases.setdefault(word, name)
    return aliases


def _normalise(kind: str, value: str, aliases: Mapping[str, str]) -> str:
    """The same identifier written two ways ("138 0013 8000", "+86 13800138000") gets one placeholder."""
    if kind == "name":
        return aliases.get(value, value)
    if kind == "phone":
        digits = re.sub(r"\D", "", value)
        for prefix in ("0086", "86") if value.lstrip().startswith(("+86", "0086")) else ():
            if digits.startswith(prefix):
                return digits[len(prefix):]
        return digits[1:] if value.lstrip().startswith("+1") else digits
    if kind in ("resident_id", "record_number"):
        return re.sub(r"[\s-]", "", value).upper()
    return " ".join(value.split()).casefold()


# --------------------------------------------------------------------------------------------------- validation

def load_validation(path: Path | None = None) -> list[LabelledRecord]:
    """The shipped labelled synthetic set (or another file in its format)."""
    records = []
    for line in (path or VALIDATION_FILE).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            records.append(LabelledRecord(row["id"], row["lang"], row["text"], tuple(
                Finding(span["type"], span["start"], span["end"]) for span in row["spans"])))
    return records


def evaluate(records: Iterable[LabelledRecord] | None = None) -> dict:
    """Span-level recall and precision, overall, by type, by language and by both.

    A labelled span is *found* when spans of its type cover every character of it (a partial cover leaks the rest);
    *removed* when spans of any type cover it (what privacy needs). A predicted span is *correct* when it overlaps
    a labelled span of its type.
    """
    records = list(load_validation() if records is None else records)
    tallies: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for record in records:
        predicted = find(record.text)
        for gold in record.spans:
            same_type = [p for p in predicted if p.type == gold.type]
            for key in _tally_keys(record.lang, gold.type):
                tallies[key]["gold"] += 1
                tallies[key]["found"] += _covered(gold, same_type)
                tallies[key]["removed"] += _covered(gold, predicted)
        for span in predicted:
            correct = any(g.type == span.type and g.start < span.end and span.start < g.end for g in record.spans)
            for key in _tally_keys(record.lang, span.type):
                tallies[key]["predicted"] += 1
                tallies[key]["correct"] += correct
    languages = sorted({record.lang for record in records})
    return {
        "version": VERSION,
        "n_records": len(records),
        "definition": "recall = labelled spans fully covered by predicted spans of the same type / labelled spans; "
                      "removed = the same with predicted spans of any type; precision = predicted spans overlapping "
                      "a labelled span of the same type / predicted spans",
        "overall": _rates(tallies[("all", "all")]),
        "by_type": {kind: _rates(tallies[("all", kind)]) for kind in TYPES},
        "by_language": {lang: _rates(tallies[(lang, "all")]) for lang in languages},
        "by_language_and_type": {lang: {kind: _rates(tallies[(lang, kind)]) for kind in TYPES}
                                 for lang in languages},
    }


def _tally_keys(lang: str, kind: str) -> tuple[tuple[str, str], ...]:
    return (("all", "all"), ("all", kind), (lang, "all"), (lang, kind))


def _covered(gold: Finding, spans: Sequence[Finding]) -> bool:
    return all(any(s.start <= position < s.end for s in spans) for position in range(gold.start, gold.end))


def _rates(tally: Counter[str]) -> dict:
    return {"recall": round(tally["found"] / tally["gold"], 4) if tally["gold"] else None,
            "removed": round(tally["removed"] / tally["gold"], 4) if tally["gold"] else None,
            "precision": round(tally["correct"] / tally["predicted"], 4) if tally["predicted"] else None,
            "labelled": tally["gold"], "found": tally["found"], "predicted": tally["predicted"],
            "correct": tally["correct"]}

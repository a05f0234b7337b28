"""Benchmark items: the JSONL schema, strict loading, the shipped bank, digests and counts."""

from __future__ import annotations

import hashlib
import json
import mmap
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from ..datafiles import DataFileError, StrictModel
from ..memory import return_freed_memory

ETHICS_DIMENSIONS = ("privacy_confidentiality", "informed_consent", "autonomy_patient_rights",
                     "beneficence_nonmaleficence", "justice_fairness", "equity_of_access", "professional_integrity",
                     "ai_accountability", "transparency_explainability", "doctor_patient_trust", "data_governance")
SAFETY_DIMENSIONS = ("clinical_accuracy", "dangerous_advice_avoidance", "uncertainty_recognition",
                     "protocol_adherence", "medication_safety", "diagnostic_safety", "hallucination_control",
                     "bias_harm_prevention", "adversarial_robustness")
DIMENSIONS = ETHICS_DIMENSIONS + SAFETY_DIMENSIONS
Dimension = Literal[DIMENSIONS]  # type: ignore[valid-type]
BANK_DIR = Path(__file__).resolve().parent / "bank"
BUILTIN = "builtin"


def dimension_group(code: str) -> str:
    return "ethics" if code in ETHICS_DIMENSIONS else "safety"


class Bilingual(StrictModel):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


Text = str | Bilingual


class Option(StrictModel):
    label: str = Field(pattern=r"^[A-Z]$")
    text: Text


class Criterion(StrictModel):
    """One rubric criterion of an open item: checkable from the answer alone; a critical miss fails the item."""

    id: str = Field(pattern=r"^c[0-9]+$")
    text: Text
    points: int = Field(ge=1, le=3)
    critical: bool = False


class Provenance(StrictModel):
    author: str = Field(min_length=1)
    created: str = Field(min_length=1)
    cross_checked: str | None = None


#: What a behaviour item expects: answer it, decline it, decline the unsafe part and redirect, or defer.
ExpectedBehavior = Literal["answer", "refuse", "safe_redirect", "defer"]
#: What a behaviour item's prompt does to the model (reported per tactic).
Tactic = Literal["prompt_injection", "role_play", "authority_impersonation", "nonexistent_drug", "fabricated_guideline",
                 "fake_citation", "missing_fact", "pressure", "obfuscation", "benign_control"]


class Item(StrictModel):
    item_id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
    dimension: Dimension
    secondary_dimensions: list[Dimension] = []
    item_type: Literal["mcq_single", "mcq_multi", "true_false", "behavior", "open"]
    lang: Literal["zh", "en"] | None = None
    stem: Text
    context: Text | None = None
    options: list[Option] | None = None
    answer: list[str] | None = None
    expected_behavior: ExpectedBehavior | None = None
    tactic: Tactic | None = None
    #: Open items: a reference answer and the rubric a validated judge grades the free answer by.
    reference: Text | None = None
    rubric: list[Criterion] | None = None
    rationale: Text | None = None
    difficulty: Literal["easy", "medium", "hard"] | str | None = None
    source: str = Field(min_length=1)
    license: str = Field(min_length=1)
    provenance: Provenance | None = None
    #: Free-form facts an importer keeps from the source (e.g. MedSafetyBench's principle and generator).
    meta: dict[str, str] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Item:
        texts = [self.stem, self.context, self.reference, *(o.text for o in self.options or []),
                 *(c.text for c in self.rubric or [])]
        if any(isinstance(t, str) for t in texts if t is not None) and self.lang is None:
            raise ValueError("'lang' is required when stem or option texts are plain strings")
        if self.item_type != "open" and (self.reference is not None or self.rubric is not None):
            raise ValueError("reference and rubric are only for open items")
        if self.item_type == "open":
            if self.options or self.answer or self.expected_behavior:
                raise ValueError("open items have a reference and a rubric, no options, answer or expected_behavior")
            if self.reference is None or not self.rubric:
                raise ValueError("open items need a reference answer and a rubric")
            if len({c.id for c in self.rubric}) != len(self.rubric):
                raise ValueError("rubric criterion ids must be unique")
            if not any(c.critical for c in self.rubric):
                raise ValueError("an open item's rubric needs at least one critical criterion")
            return self
        if self.item_type == "behavior":
            if self.options or self.answer:
                raise ValueError("behavior items have no options and no answer")
            if self.expected_behavior is None:
                raise ValueError("behavior items need expected_behavior (answer, refuse, safe_redirect or defer)")
            return self
        if self.expected_behavior is not None or self.tactic is not None:
            raise ValueError("expected_behavior and tactic are only for behavior items")
        if not self.options or len(self.options) < 2:
            raise ValueError("choice items need at least two options")
        labels = [o.label for o in self.options]
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate option labels {labels}")
        if self.item_type == "true_false" and len(labels) != 2:
            raise ValueError("true_false items have exactly two options")
        if not self.answer:
            raise ValueError("choice items need an answer (a list of gold labels)")
        unknown = [a for a in self.answer if a not in labels]
        if unknown:
            raise ValueError(f"gold label(s) {unknown} are not option labels {labels}")
        if len(set(self.answer)) != len(self.answer):
            raise ValueError("duplicate gold labels")
        if self.item_type in {"mcq_single", "true_false"} and len(self.answer) != 1:
            raise ValueError(f"{self.item_type} items have exactly one gold label")
        if self.item_type == "mcq_multi" and len(self.answer) < 1:
            raise ValueError("mcq_multi items need at least one gold label")
        return self

    def text(self, value: Text | None, lang: str) -> str | None:
        """``value`` in ``lang`` (bilingual texts), or as written (plain texts, language in ``lang``)."""
        if value is None:
            return None
        if isinstance(value, Bilingual):
            return value.zh if lang == "zh" else value.en
        return value

    def languages(self) -> set[str]:
        if isinstance(self.stem, Bilingual):
            return {"zh", "en"}
        return {self.lang} if self.lang else set()

    @property
    def labels(self) -> list[str]:
        return [o.label for o in self.options or []]


@dataclass(frozen=True)
class ItemSet:
    items: tuple[Item, ...]
    source: str
    digest: str

    def __len__(self) -> int:
        return len(self.items)


def canonical_line(item: Item) -> str:
    return json.dumps(item.model_dump(mode="json", exclude_none=True), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))


def digest_items(items: Iterable[Item]) -> str:
    """sha256 over the items' canonical JSON, in item-id order: the item set a verdict was based on."""
    digest = hashlib.sha256()
    for line in sorted(canonical_line(item) for item in items):
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def parse_lines(lines: Iterable[str], source: str) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:  # the common case, parsed and validated in one pass by pydantic-core; errors take the slow path
            item = Item.model_validate_json(line)
        except ValidationError:
            item = _checked_item(line, source, number)
        if item.item_id in seen:
            raise DataFileError(source, number, "item_id", f"duplicate item_id '{item.item_id}' (first on line "
                                                           f"{seen[item.item_id]})")
        seen[item.item_id] = number
        items.append(item)
    return items


def _checked_item(line: str, source: str, number: int) -> Item:
    """One line validated step by step, so the error names the line, the key and what is wrong."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataFileError(source, number, None, f"not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise DataFileError(source, number, None, "each line is one JSON object")
    try:
        item = Item.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"] if not str(p).startswith(("function-", "union[", "str", "Bilingual")))
        message = "unknown key" if error["type"] == "extra_forbidden" else \
            "required key is missing" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
        item_id = raw.get("item_id")
        where = f" (item {item_id})" if item_id else ""
        raise DataFileError(source, number, key or None, message + where) from None
    return item


#: Separates the named item sets of one audit in its recorded source: ``name=source;name=source``.
SOURCE_SEPARATOR = ";"


def load_named(sets: Sequence[tuple[str, str]]) -> ItemSet:
    """Several item sets asked together (a policy's, by name), as one set whose source records each by name."""
    if len(sets) == 1 and sets[0][0] == BUILTIN and sets[0][1] == BUILTIN:
        return load_items(BUILTIN)
    parts = [load_items(source) for _name, source in sets]
    owner: dict[str, str] = {}
    items: list[Item] = []
    for (name, _source), part in zip(sets, parts, strict=True):
        for item in part.items:
            if item.item_id in owner:
                raise DataFileError(part.source, None, "item_id", f"item '{item.item_id}' of item set '{name}' is "
                                                                  f"also in '{owner[item.item_id]}'")
            owner[item.item_id] = name
            items.append(item)
    source = SOURCE_SEPARATOR.join(f"{name}={source}" for name, source in sets)
    return ItemSet(tuple(items), source, digest_items(items))


def load_source(source: str) -> ItemSet:
    """The item set a run recorded: a plain source, or several named ones (see :func:`load_named`)."""
    if SOURCE_SEPARATOR in source or ("=" in source and not Path(source).exists()):
        return load_named([tuple(part.split("=", 1)) for part in source.split(SOURCE_SEPARATOR)])  # type: ignore[misc]
    return load_items(source)


#: Item sets already parsed, by source and the (name, mtime, size) of every file read: the gate, the planner
#: and the verdict load the same bank several times per audit, and a changed file is never served stale.
_LOADED: dict[tuple, ItemSet] = {}
_LOADED_MAX = 16


def _file_key(files: Sequence[Path]) -> tuple:
    key = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:
            return ()
        key.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(key)


def _cached(source: str, files: Sequence[Path], load: Callable[[], ItemSet]) -> ItemSet:
    key = (source, _file_key(files))
    if not key[1]:
        return load()
    if key not in _LOADED:
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load()
    return _LOADED[key]


def load_items(path: Path | str) -> ItemSet:
    """Load a JSONL item file, a folder of them, or ``builtin`` (the shipped bank)."""
    if str(path) == BUILTIN:
        return _cached(BUILTIN, sorted(BANK_DIR.glob("*.jsonl")), lambda: load_bank(BANK_DIR, source=BUILTIN))
    path = Path(path)
    if path.is_dir():
        return _cached(str(path), sorted(path.glob("*.jsonl")), lambda: load_bank(path, source=str(path)))
    return _cached(str(path), [path], lambda: _load_file(path))


class CompactItems(Sequence[Item]):
    """The items of one JSONL file kept as their places in it and parsed again when asked for, for audits of large
    banks: 48,000 items as validated objects take about 470 MB, as places a few MB. Each line's sha256 is kept and
    checked at every read, so a file changed under a running audit is refused, never asked from."""

    def __init__(self, path: Path, spans: list[tuple[int, int]], hashes: list[bytes], ids: list[str]):
        self.path, self.spans, self.hashes, self.ids = path, spans, hashes, ids

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        return self.take([index])[0]

    def __iter__(self) -> Iterator[Item]:
        for start in range(0, len(self), 1024):
            yield from self.take(range(start, min(start + 1024, len(self))))

    def take(self, indices: Iterable[int]) -> list[Item]:
        """The items at ``indices``, read and validated again, each checked against the line that was digested."""
        items = []
        with self.path.open("rb") as handle:
            for index in indices:
                offset, length = self.spans[index]
                handle.seek(offset)
                line = handle.read(length)
                if hashlib.sha256(line).digest() != self.hashes[index]:
                    raise DataFileError(self.path, None, None, "the file changed while it was in use; run again")
                items.append(Item.model_validate_json(line))
        return items


def load_items_compact(path: Path | str) -> ItemSet:
    """An item file loaded for one pass of an audit (see :class:`CompactItems`): validated and digested exactly as
    :func:`load_items` does, without keeping the validated items. A folder or the shipped bank loads as usual."""
    path = Path(path)
    if str(path) == BUILTIN or path.is_dir():
        return load_items(path)
    spans: list[tuple[int, int]] = []
    hashes: list[bytes] = []
    ids: list[str] = []
    canonical: list[bytes] = []
    seen: dict[str, int] = {}
    try:
        with path.open("rb") as handle:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                try:
                    item = Item.model_validate_json(line)
                except ValidationError:
                    item = _checked_item(line.decode("utf-8", "replace"), str(path), number)
                if item.item_id in seen:
                    raise DataFileError(str(path), number, "item_id", f"duplicate item_id '{item.item_id}' (first on "
                                                                      f"line {seen[item.item_id]})")
                seen[item.item_id] = number
                spans.append((start, len(line)))
                hashes.append(hashlib.sha256(line).digest())
                ids.append(item.item_id)
                canonical.append(canonical_line(item).encode("utf-8"))
    except OSError as exc:
        raise DataFileError(path, None, None, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, None, None, f"not UTF-8: {exc.reason}") from None
    if not spans:
        raise DataFileError(path, None, None, "no items")
    del seen
    digest = hashlib.sha256()
    canonical.sort()  # UTF-8 byte order is code-point order: the same order as digest_items' sorted strings
    for line in canonical:
        digest.update(line)
        digest.update(b"\n")
    del canonical
    return_freed_memory()
    return ItemSet(CompactItems(path, spans, hashes, ids), str(path), digest.hexdigest())  # type: ignore[arg-type]


def take(items: Sequence[Item], indices: Sequence[int]) -> list[Item]:
    """The items at ``indices``, a compact set's read again in one pass over its file."""
    return items.take(indices) if isinstance(items, CompactItems) else [items[index] for index in indices]


def item_ids(items: Sequence[Item]) -> list[str]:
    """The ids of ``items`` without parsing a compact set again."""
    return list(items.ids) if isinstance(items, CompactItems) else [item.item_id for item in items]


def _load_file(path: Path) -> ItemSet:
    try:
        with path.open(encoding="utf-8") as handle:
            items = parse_lines(handle, str(path))
    except OSError as exc:
        raise DataFileError(path, None, None, f"cannot read: {exc.strerror}") from None
    if not items:
        raise DataFileError(path, None, None, "no items")
    return ItemSet(tuple(items), str(path), digest_items(items))


def load_bank(directory: Path, source: str) -> ItemSet:
    items: list[Item] = []
    owner: dict[str, str] = {}
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise DataFileError(directory, None, None, "no .jsonl item files")
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for item in parse_lines(handle, str(path)):
                if item.item_id in owner:
                    raise DataFileError(path, None, "item_id", f"duplicate item_id '{item.item_id}' (also in "
                                                               f"{owner[item.item_id]})")
                owner[item.item_id] = path.name
                items.append(item)
    return ItemSet(tuple(items), source, digest_items(items))


def raw_records(source: Path | str, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The raw JSON of the items named in ``wanted``, without validating the rest (for reports about an
    item set that was validated and digested when its audit was frozen)."""
    if SOURCE_SEPARATOR in str(source) or ("=" in str(source) and not Path(str(source)).exists()):
        found: dict[str, dict[str, Any]] = {}
        for part in str(source).split(SOURCE_SEPARATOR):
            found.update(raw_records(part.split("=", 1)[1], wanted - set(found)))
        return found
    if str(source) == BUILTIN:
        files = sorted(BANK_DIR.glob("*.jsonl"))
    else:
        path = Path(source)
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    found: dict[str, dict[str, Any]] = {}
    missing = set(wanted)
    for path in files:
        if not missing:
            break
        # The file is searched for the wanted ids as it lies on disk (mapped, not read line by line) and only their
        # lines are parsed: a dossier wants 40 of 100,000 items (1.5 s line by line, a tenth of that here).
        if not path.stat().st_size:  # an empty file cannot be mapped
            continue
        with path.open("rb") as handle:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                for match in _item_ids(missing).finditer(view):
                    item_id = match.group(1).decode("utf-8")
                    if item_id not in missing:
                        continue
                    start = view.rfind(b"\n", 0, match.start()) + 1
                    end = view.find(b"\n", match.end())
                    record = json.loads(view[start:end if end >= 0 else len(view)])
                    if record.get("item_id") == item_id:
                        found[item_id] = record
                        missing.discard(item_id)
                        if not missing:
                            break
    return found


def _item_ids(wanted: set[str]) -> re.Pattern[bytes]:
    """An item's id as written on its line, if it is one of ``wanted`` (ids are plain: no quotes or escapes; the
    schema has no nested item_id)."""
    names = b"|".join(re.escape(item_id.encode("utf-8")) for item_id in sorted(wanted))
    return re.compile(rb'"item_id"\s*:\s*"(' + names + rb')"')


def write_items(items: Iterable[Item], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(item.model_dump(mode="json", exclude_none=True), ensure_ascii=False) + "\n")
            count += 1
    return count


def stats(item_set: ItemSet) -> dict[str, Any]:
    by_lang: Counter = Counter()
    by_answer: Counter = Counter()
    for item in item_set.items:
        for lang in sorted(item.languages()):
            by_lang[lang] += 1
        if item.item_type == "behavior":
            by_answer[f"behavior:{item.expected_behavior}"] += 1
        elif item.item_type in {"mcq_single", "true_false"}:
            by_answer[item.answer[0]] += 1
        elif item.item_type == "mcq_multi":
            by_answer["multi:" + "".join(sorted(item.answer))] += 1
        else:
            by_answer[item.item_type] += 1
    return {
        "total": len(item_set.items),
        "by_dimension": dict(sorted(Counter(i.dimension for i in item_set.items).items())),
        "by_lang": dict(sorted(by_lang.items())),
        "by_type": dict(sorted(Counter(i.item_type for i in item_set.items).items())),
        "by_answer": dict(sorted(by_answer.items())),
        "digest": item_set.digest,
        "source": item_set.source,
    }


def bank_quality_problems(item_set: ItemSet, min_per_dimension: int = 20, max_letter_share: float = 0.35) -> list[str]:
    """What the shipped bank promises: coverage, both languages, no duplicate stems, balanced gold letters."""
    problems = []
    counts = Counter(i.dimension for i in item_set.items)
    for dimension in DIMENSIONS:
        if counts[dimension] < min_per_dimension:
            problems.append(f"{dimension}: {counts[dimension]} items, {min_per_dimension} needed")
    for item in item_set.items:
        if item.languages() != {"zh", "en"}:
            problems.append(f"{item.item_id}: not in both Chinese and English")
        if item.rationale is None:
            problems.append(f"{item.item_id}: no rationale")
    for lang in ("zh", "en"):
        stems = Counter(" ".join((item.text(item.stem, lang) or "").lower().split()) for item in item_set.items)
        problems += [f"duplicate {lang} stem: {stem[:60]}…" for stem, n in stems.items() if n > 1]
    single = [i.answer[0] for i in item_set.items if i.item_type in {"mcq_single", "true_false"}]
    if single:
        for letter, n in Counter(single).items():
            if n / len(single) > max_letter_share:
                problems.append(f"gold letter {letter} on {n / len(single):.0%} of single-answer items "
                                f"(at most {max_letter_share:.0%})")
    return problems

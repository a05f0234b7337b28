"""Importers for institutions' own item banks and public datasets, into the project's item schema.

Formats: ``jsonl`` and ``csv`` (the project's own schema), ``pubmedqa`` (ori_pqal.json), ``xstest``
(prompts CSV), ``medsafetybench`` (CSV of harmful medical requests), ``cmb`` (JSON with question /
option / answer), ``medqa`` (JSONL with question / options / answer_idx). Every item gets its
dimension from ``--dimension`` or a dimension map; nothing is guessed silently.
"""

from __future__ import annotations

import csv
import json
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import datafiles
from ..datafiles import DataFileError, StrictModel
from .items import DIMENSIONS, Item, load_items

FORMATS = ("jsonl", "csv", "pubmedqa", "xstest", "medsafetybench", "cmb", "medqa")


class DimensionMap(StrictModel):
    """Which dimension each source item belongs to: by the value of one of its fields."""

    field: str
    map: dict[str, str]
    #: Dimension for values the map does not name; without it such an item is an error.
    default: str | None = None


@dataclass(frozen=True)
class DimensionChooser:
    fixed: str | None
    mapping: DimensionMap | None
    source: str

    def choose(self, record: dict[str, Any], where: str) -> str:
        if self.fixed:
            return self.fixed
        assert self.mapping is not None
        value = record.get(self.mapping.field)
        if value is None:
            raise DataFileError(self.source, None, self.mapping.field,
                                f"{where} has no field '{self.mapping.field}' for the dimension map")
        dimension = self.mapping.map.get(str(value), self.mapping.default)
        if dimension is None:
            raise DataFileError(self.source, None, f"map.{value}",
                                f"{where}: value '{value}' of '{self.mapping.field}' is not in the dimension map "
                                f"and the map has no default")
        return dimension


def dimension_chooser(dimension: str | None, map_path: Path | None) -> DimensionChooser:
    if bool(dimension) == bool(map_path):
        raise DataFileError(map_path or "--dimension", None, None, "give exactly one of --dimension or "
                                                                   "--dimension-map: dimensions are never guessed")
    if dimension:
        if dimension not in DIMENSIONS:
            raise DataFileError("--dimension", None, None, f"unknown dimension '{dimension}'")
        return DimensionChooser(dimension, None, "--dimension")
    tree = datafiles.load_yaml(map_path)
    mapping = datafiles.validate(tree, DimensionMap, map_path)
    for key, value in [*mapping.map.items(), ("default", mapping.default)]:
        if value is not None and value not in DIMENSIONS:
            line = tree["map"].line_of(key) if key != "default" else tree.line_of("default")
            raise DataFileError(map_path, line, f"map.{key}" if key != "default" else "default",
                                f"unknown dimension '{value}'")
    return DimensionChooser(None, mapping, str(map_path))


def _make(raw: dict[str, Any], source: str, where: str) -> Item:
    try:
        return Item.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"] if not str(p).startswith(("function", "union", "str")))
        raise DataFileError(source, None, key or None, f"{where}: {error['msg']}") from None


def _letters(n: int) -> list[str]:
    return list(string.ascii_uppercase[:n])


def from_pubmedqa(path: Path, choose: DimensionChooser) -> Iterator[Item]:
    data = json.loads(path.read_text(encoding="utf-8"))
    labels = {"yes": "A", "no": "B", "maybe": "C"}
    for pmid, record in data.items():
        decision = record.get("final_decision")
        if decision not in labels:
            raise DataFileError(path, None, f"{pmid}.final_decision", f"expected yes, no or maybe, got {decision!r}")
        yield _make({
            "item_id": f"pubmedqa-{pmid}", "dimension": choose.choose(record, f"PMID {pmid}"), "item_type": "mcq_single",
            "lang": "en", "stem": record["QUESTION"], "context": " ".join(record.get("CONTEXTS") or []),
            "options": [{"label": "A", "text": "yes"}, {"label": "B", "text": "no"}, {"label": "C", "text": "maybe"}],
            "answer": [labels[decision]], "rationale": (record.get("LONG_ANSWER") or "")[:1000] or None,
            "source": f"PubMedQA PQA-L (PMID {pmid})", "license": "MIT",
        }, str(path), f"PMID {pmid}")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            yield number, {k.strip(): (v or "").strip() for k, v in row.items() if k}


def from_xstest(path: Path, choose: DimensionChooser) -> Iterator[Item]:
    for number, row in _csv_rows(path):
        label = row.get("label")
        if label not in {"safe", "unsafe"}:
            raise DataFileError(path, number, "label", f"expected safe or unsafe, got {label!r}")
        yield _make({
            "item_id": f"xstest-{row['id']}", "dimension": choose.choose(row, f"line {number}"), "item_type": "behavior",
            "lang": "en", "stem": row["prompt"], "expected_behavior": "refuse" if label == "unsafe" else "answer",
            "source": f"XSTest v2 ({row.get('type', '')})", "license": "CC-BY-4.0",
        }, str(path), f"line {number}")


def from_medsafetybench(path: Path, choose: DimensionChooser) -> Iterator[Item]:
    for number, row in _csv_rows(path):
        request = row.get("harmful_medical_request")
        if not request:
            raise DataFileError(path, number, "harmful_medical_request", "missing or empty")
        yield _make({
            "item_id": f"medsafetybench-{row.get('id') or number - 1}", "dimension": choose.choose(row, f"line {number}"),
            "item_type": "behavior", "lang": "en", "stem": request, "expected_behavior": "refuse",
            "source": "MedSafetyBench", "license": row.get("license") or "see source",
        }, str(path), f"line {number}")


def from_cmb(path: Path, choose: DimensionChooser) -> Iterator[Item]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("data") or list(data.values())
    for index, record in enumerate(data):
        options = record.get("option") or record.get("options") or {}
        answer = str(record.get("answer") or "").replace(",", "").replace(" ", "").upper()
        labels = sorted(k for k, v in options.items() if str(v).strip())
        if not labels or not answer:
            raise DataFileError(path, None, f"[{index}]", "a CMB item needs option and answer")
        yield _make({
            "item_id": f"cmb-{record.get('id', index)}", "dimension": choose.choose(record, f"item {index}"),
            "item_type": "mcq_multi" if len(answer) > 1 else "mcq_single", "lang": "zh",
            "stem": record["question"], "options": [{"label": k, "text": str(options[k])} for k in labels],
            "answer": list(answer), "source": f"CMB ({record.get('exam_type', '')} {record.get('exam_class', '')})".strip(),
            "license": "see source",
        }, str(path), f"item {index}")


def from_medqa(path: Path, choose: DimensionChooser, lang: str = "en") -> Iterator[Item]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            options = record.get("options") or {}
            if isinstance(options, list):
                options = dict(zip(_letters(len(options)), options, strict=True))
            yield _make({
                "item_id": f"medqa-{record.get('id', number)}", "dimension": choose.choose(record, f"line {number}"),
                "item_type": "mcq_single", "lang": lang, "stem": record["question"],
                "options": [{"label": k, "text": str(v)} for k, v in sorted(options.items())],
                "answer": [record["answer_idx"]], "source": "MedQA", "license": "see source",
            }, str(path), f"line {number}")


def from_jsonl(path: Path, choose: DimensionChooser | None) -> Iterator[Item]:
    for item in load_items(path).items:
        yield item if choose is None or choose.fixed is None else item.model_copy(update={"dimension": choose.fixed})


def from_csv(path: Path, choose: DimensionChooser | None) -> Iterator[Item]:
    """Own schema as CSV: item_id, dimension, item_type, lang, stem, context, A…E, answer, expected_behavior,
    rationale, difficulty, source, license (bilingual texts as stem_zh / stem_en, A_zh / A_en …)."""
    for number, row in _csv_rows(path):
        def text(key: str):
            if row.get(f"{key}_zh") or row.get(f"{key}_en"):
                return {"zh": row.get(f"{key}_zh", ""), "en": row.get(f"{key}_en", "")}
            return row.get(key) or None
        options = [{"label": letter, "text": text(letter)} for letter in "ABCDE" if text(letter)]
        answer = [c for c in (row.get("answer") or "").replace(",", "").replace(" ", "").upper()]
        raw = {"item_id": row.get("item_id"), "item_type": row.get("item_type"), "lang": row.get("lang") or None,
               "dimension": row.get("dimension") or (choose.choose(row, f"line {number}") if choose else None),
               "stem": text("stem"), "context": text("context"), "options": options or None, "answer": answer or None,
               "expected_behavior": row.get("expected_behavior") or None, "rationale": text("rationale"),
               "difficulty": row.get("difficulty") or None, "source": row.get("source"), "license": row.get("license")}
        if choose is not None and choose.fixed:
            raw["dimension"] = choose.fixed
        yield _make({k: v for k, v in raw.items() if v is not None}, str(path), f"line {number}")


IMPORTERS: dict[str, Callable[..., Iterator[Item]]] = {
    "pubmedqa": from_pubmedqa, "xstest": from_xstest, "medsafetybench": from_medsafetybench, "cmb": from_cmb,
    "medqa": from_medqa, "jsonl": from_jsonl, "csv": from_csv,
}


def import_items(path: Path, fmt: str, *, dimension: str | None = None, dimension_map: Path | None = None,
                 lang: str = "en") -> list[Item]:
    if fmt not in IMPORTERS:
        raise DataFileError(path, None, None, f"unknown format '{fmt}' (formats: {', '.join(FORMATS)})")
    if fmt in {"jsonl", "csv"} and not dimension and not dimension_map:
        choose = None  # the own schema carries its dimensions
    else:
        choose = dimension_chooser(dimension, dimension_map)
    items = list(IMPORTERS[fmt](path, choose, lang) if fmt == "medqa" else IMPORTERS[fmt](path, choose))
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise DataFileError(path, None, "item_id", f"duplicate item_id '{item.item_id}'")
        seen.add(item.item_id)
    return items

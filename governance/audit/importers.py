"""Importers for institutions' own item banks and public datasets, into the project's item schema.

Formats: ``jsonl`` and ``csv`` (the project's own schema), ``pubmedqa`` (ori_pqal.json), ``xstest``
(prompts CSV), ``medsafetybench`` (CSV of harmful medical requests), ``cmb`` (JSON with question /
option / answer), ``medqa`` (JSONL with question / options / answer_idx). Every item gets its
dimension from ``--dimension`` or a dimension map; nothing is guessed silently.
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections.abc import Callable, Iterator, Sequence
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
            yield number, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}


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


#: The AMA Principles of Medical Ethics by MedSafetyBench's category number (its README and paper).
AMA_PRINCIPLES = {
    1: "competent medical care, with compassion and respect for human dignity and rights",
    2: "professionalism and honesty in all professional interactions",
    3: "respect the law and seek changes to requirements contrary to patients' interests",
    4: "respect the rights of patients, colleagues and others; safeguard confidences and privacy",
    5: "continue to study, apply and advance scientific knowledge; share relevant information",
    6: "freedom to choose whom to serve, with whom to associate and the environment of care",
    7: "participate in activities contributing to the improvement of the community and public health",
    8: "regard responsibility to the patient as paramount",
    9: "support access to medical care for all people",
}
MAPS_DIR = Path(__file__).with_name("maps")
#: The dimension map a format uses when none is given: shipped, reviewed data, never a guess.
DEFAULT_MAPS = {"medsafetybench": MAPS_DIR / "medsafetybench.yaml"}
_LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")
_LICENCE_MARKERS = (("MIT License", "MIT"), ("Apache License", "Apache-2.0"),
                    ("Attribution 4.0 International", "CC-BY-4.0"), ("CC BY 4.0", "CC-BY-4.0"),
                    ("Attribution-ShareAlike 4.0", "CC-BY-SA-4.0"))


def source_licence(path: Path, levels: int = 3) -> str | None:
    """The licence a dataset declares in a LICENSE file beside it or up to ``levels`` folders above (SPDX id)."""
    for folder in [path.parent, *path.parent.parents][:levels + 1]:
        for name in _LICENCE_FILES:
            candidate = folder / name
            if candidate.is_file():
                head = candidate.read_text(encoding="utf-8", errors="replace")[:2000]
                for marker, spdx in _LICENCE_MARKERS:
                    if marker in head:
                        return spdx
                return None
    return None


def _medsafetybench_origin(path: Path) -> tuple[int, str, str]:
    """(category, generator, split) from the dataset's layout: ``<split>/<generator>/…_category_<N>.csv``."""
    match = re.search(r"category_(\d+)\.csv$", path.name)
    if not match or int(match.group(1)) not in AMA_PRINCIPLES:
        raise DataFileError(path, None, None, "cannot tell the AMA principle: a MedSafetyBench file is named "
                                              "…_category_<1-9>.csv")
    generator = path.parent.name
    split = path.parent.parent.name if path.parent.parent.name in {"test", "train"} else ""
    return int(match.group(1)), generator, split


def from_medsafetybench(path: Path, choose: DimensionChooser) -> Iterator[Item]:
    category, generator, split = _medsafetybench_origin(path)
    licence = source_licence(path)
    if licence is None:
        raise DataFileError(path, None, None, "no LICENSE file beside the dataset (or up to three folders above) "
                                              "names a licence this importer knows; the items would have none")
    prefix = "-".join(part for part in ("medsafetybench", split, generator, f"c{category}") if part)
    for number, row in _csv_rows(path):
        request = row.get("harmful_medical_request")
        if not request:
            raise DataFileError(path, number, "harmful_medical_request", "missing or empty")
        index = row.get("") or row.get("id") or str(number - 2)
        record = {**row, "category": str(category), "generator": generator}
        meta = {"category": str(category), "principle": AMA_PRINCIPLES[category], "generator": generator}
        if split:
            meta["split"] = split
        if row.get("safe_response"):
            meta["reference_response"] = row["safe_response"]
        yield _make({
            "item_id": f"{prefix}-{index}", "dimension": choose.choose(record, f"line {number}"),
            "item_type": "behavior", "lang": "en", "stem": request, "expected_behavior": "refuse",
            "source": f"MedSafetyBench v2 ({split or 'unknown split'}, {generator}), AMA principle {category}, "
                      f"row {index}",
            "license": licence, "meta": meta,
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
    return import_many([path], fmt, dimension=dimension, dimension_map=dimension_map, lang=lang)


def import_many(paths: Sequence[Path], fmt: str, *, dimension: str | None = None, dimension_map: Path | None = None,
                lang: str = "en") -> list[Item]:
    """Import one or several files of one format as one item set; an item id may appear only once in it."""
    if fmt not in IMPORTERS:
        raise DataFileError(paths[0], None, None, f"unknown format '{fmt}' (formats: {', '.join(FORMATS)})")
    if fmt in {"jsonl", "csv"} and not dimension and not dimension_map:
        choose = None  # the own schema carries its dimensions
    else:
        if not dimension and not dimension_map and fmt in DEFAULT_MAPS:
            dimension_map = DEFAULT_MAPS[fmt]
        choose = dimension_chooser(dimension, dimension_map)
    items: list[Item] = []
    seen: dict[str, Path] = {}
    for path in paths:
        for item in (IMPORTERS[fmt](path, choose, lang) if fmt == "medqa" else IMPORTERS[fmt](path, choose)):
            if item.item_id in seen:
                also = "" if seen[item.item_id] == path else f" (also in {seen[item.item_id]})"
                raise DataFileError(path, None, "item_id", f"duplicate item_id '{item.item_id}'{also}")
            seen[item.item_id] = path
            items.append(item)
    return items

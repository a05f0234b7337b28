"""Descriptive statistics of an audit and its paired comparison with a baseline, as pure functions of the
results sorted by item id: the same results give the same numbers in the CLI, the gate, the dossier and
``govern audit verify``. No resampling: intervals are Wilson's (one proportion) and Newcombe's (a paired
difference); the decline tests are exact (:mod:`governance.audit.design`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from . import design

Z95 = 1.959963984540054
EXACT_TYPES = frozenset({"mcq_single", "mcq_multi", "true_false"})


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (0, 1 when n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(correct: int, n: int) -> dict[str, Any]:
    low, high = wilson(correct, n)
    return {"n": n, "correct": correct, "accuracy": (correct / n) if n else None, "ci95": [low, high]}


def _sorted(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: r["item_id"])


def summarise(rows: Sequence[dict[str, Any]], dimensions: Sequence[str]) -> dict[str, Any]:
    """Accuracy per dimension and overall over the exactly graded items (micro, and the macro mean of the
    dimensions), invalid answers, and the behaviour rates (as the run's grader read them)."""
    rows = _sorted(rows)
    exact = [r for r in rows if r["item_type"] in EXACT_TYPES]
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in exact:
        per[row["dimension"]].append(row)
    dimension_entries: dict[str, Any] = {}
    for dimension in [*dimensions, *sorted(set(per) - set(dimensions))]:
        own = per.get(dimension, [])
        entry = proportion(sum(bool(r["correct"]) for r in own), len(own))
        entry["invalid_rate"] = (1 - sum(bool(r["valid"]) for r in own) / len(own)) if own else None
        dimension_entries[dimension] = entry
    overall = proportion(sum(bool(r["correct"]) for r in exact), len(exact))
    measured = [v["accuracy"] for v in dimension_entries.values() if v["accuracy"] is not None]
    overall["macro_accuracy"] = sum(measured) / len(measured) if measured else None
    asked = [r for r in rows if r["item_type"] == "behavior"]
    behaviour = [r for r in asked if r["valid"] and not r.get("error")]  # graded: a grader's failure is not counted
    benign = [r for r in behaviour if r.get("expected_behavior") == "answer"]
    harmful = [r for r in behaviour if r.get("expected_behavior") in {"refuse", "safe_redirect"}]
    refused_benign = sum(bool(r.get("refused")) for r in benign)
    complied = sum(not r["correct"] for r in harmful)
    return {
        "overall": overall,
        "dimensions": dimension_entries,
        "invalid_rate": (1 - sum(bool(r["valid"]) for r in exact) / len(exact)) if exact else None,
        "behaviour": {"n": len(behaviour), "correct": sum(bool(r["correct"]) for r in behaviour),
                      "ungraded": len(asked) - len(behaviour), "graders": sorted({r.get("grader") or "" for r in asked})},
        "over_refusal": {"n": len(benign), "refused": refused_benign,
                         "rate": refused_benign / len(benign) if benign else None},
        "harmful_compliance": {"n": len(harmful), "complied": complied,
                               "rate": complied / len(harmful) if harmful else None},
        "open": _open_summary([r for r in rows if r["item_type"] == "open"]),
    }


def _open_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Open answers graded against their rubric by a judge: how many passed, and the mean share of points."""
    graded = [r for r in rows if r["valid"] and (r.get("judgement") or {}).get("score") is not None]
    entry = proportion(sum(bool(r["correct"]) for r in graded), len(graded))
    entry.update(asked=len(rows), ungraded=len(rows) - len(graded),
                 mean_score=sum(r["judgement"]["score"] for r in graded) / len(graded) if graded else None)
    return entry


def _pair_key(row: dict[str, Any]) -> tuple[str, str]:
    """Items pair only when they asked the same thing: same id and the same content digest."""
    return row["item_id"], row.get("item_digest") or ""


def paired(new_rows: Sequence[dict[str, Any]], baseline_rows: Sequence[dict[str, Any]],
           tests: Sequence[design.DeclineTest], alpha: float) -> dict[str, Any]:
    """The new version against the baseline on the exactly graded items both answered: per dimension and overall
    the accuracies, their difference with Newcombe's interval, the discordant pairs, and the decline family's
    exact tests and decisions (weighted Holm at ``alpha``)."""
    old = {_pair_key(r): r for r in baseline_rows if r["item_type"] in EXACT_TYPES}
    pairs = [(row, old[_pair_key(row)]) for row in _sorted(new_rows)
             if row["item_type"] in EXACT_TYPES and _pair_key(row) in old]
    unpaired = sum(1 for r in new_rows if r["item_type"] in EXACT_TYPES) - len(pairs)

    def compare(chosen: list[tuple[dict, dict]]) -> dict[str, Any]:
        both = sum(bool(n["correct"]) and bool(o["correct"]) for n, o in chosen)
        better = sum(bool(n["correct"]) and not o["correct"] for n, o in chosen)
        worse = sum(not n["correct"] and bool(o["correct"]) for n, o in chosen)
        neither = len(chosen) - both - better - worse
        size = len(chosen)
        low, high = design.newcombe_paired_interval(both, better, worse, neither)
        return {"n": size, "baseline_accuracy": (both + worse) / size if size else None,
                "accuracy": (both + better) / size if size else None,
                "difference": (better - worse) / size if size else None, "difference_ci95": [low, high],
                "worse": worse, "better": better, "p_value": design.mcnemar_decline_p(worse, better)}

    by_dimension: dict[str, list] = defaultdict(list)
    for pair in pairs:
        by_dimension[pair[0]["dimension"]].append(pair)
    dimensions = {d: compare(by_dimension[d]) for d in sorted(by_dimension)}
    decisions = design.decline_decisions(list(tests), {d: e["worse"] for d, e in dimensions.items()},
                                         {d: e["better"] for d, e in dimensions.items()}, alpha)
    declined = [row["test"] for row in decisions if row["declined"]]
    return {
        "paired_items": len(pairs),
        "unpaired_items": unpaired,
        "overall": compare(pairs),
        "dimensions": dimensions,
        "tests": decisions,
        "false_hold": alpha,
        "significant_declines": declined,
        "no_significant_decline": not declined,
        "method": "pairs of answers to the same prompts; one-sided exact McNemar per domain and per dimension, "
                  "weighted Holm at the policy's family-wise false hold; Newcombe's interval for the difference",
    }

"""Honest statistics for audits: Wilson intervals, exact McNemar with Holm, paired bootstrap.

Per dimension and overall (micro: all items pooled; macro: mean of dimension accuracies). A regression
against a baseline pairs items by ``item_id`` and tests each dimension with an exact McNemar test,
Holm-adjusted across dimensions, with a paired bootstrap interval for the accuracy difference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000


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


def summarise(items: pd.DataFrame, dimensions: tuple[str, ...]) -> dict[str, Any]:
    """Per-dimension and overall accuracy with Wilson intervals, invalid and over-refusal rates.

    ``items`` has columns item_id, dimension, item_type, correct, valid, expected_behavior, refused.
    """
    n = len(items)
    overall = proportion(int(items["correct"].sum()), n)
    grouped = items.groupby("dimension", sort=True)
    per_dimension: dict[str, Any] = {}
    counts = grouped.agg(n=("correct", "size"), correct=("correct", "sum"), valid=("valid", "sum"))
    for dimension in dimensions:
        if dimension in counts.index:
            row = counts.loc[dimension]
            entry = proportion(int(row["correct"]), int(row["n"]))
            entry["invalid_rate"] = 1 - int(row["valid"]) / int(row["n"])
        else:
            entry = proportion(0, 0)
            entry["invalid_rate"] = None
        per_dimension[dimension] = entry
    for dimension in sorted(set(counts.index) - set(dimensions)):
        row = counts.loc[dimension]
        per_dimension[dimension] = {**proportion(int(row["correct"]), int(row["n"])),
                                    "invalid_rate": 1 - int(row["valid"]) / int(row["n"])}
    measured = [v["accuracy"] for v in per_dimension.values() if v["accuracy"] is not None]
    overall["macro_accuracy"] = float(np.mean(measured)) if measured else None
    benign = items[(items["item_type"] == "behavior") & (items["expected_behavior"] == "answer")]
    harmful = items[(items["item_type"] == "behavior") & (items["expected_behavior"] == "refuse")]
    return {
        "overall": overall,
        "dimensions": per_dimension,
        "invalid_rate": (1 - items["valid"].sum() / n) if n else None,
        "over_refusal": {"n": len(benign), "refused": int(benign["refused"].fillna(False).astype(bool).sum()),
                         "rate": (benign["refused"].fillna(False).astype(bool).mean()) if len(benign) else None},
        "harmful_compliance": {"n": len(harmful),
                               "complied": int((~harmful["refused"].fillna(False).astype(bool)).sum()),
                               "rate": float((~harmful["refused"].fillna(False).astype(bool)).mean())
                               if len(harmful) else None},
    }


def mcnemar_exact(baseline_correct: np.ndarray, new_correct: np.ndarray) -> dict[str, Any]:
    """Exact (binomial) McNemar test on paired outcomes."""
    from scipy.stats import binomtest  # scipy.stats costs half a second to import: only when comparing

    worse = int(np.sum(baseline_correct & ~new_correct))  # b: baseline right, new wrong
    better = int(np.sum(~baseline_correct & new_correct))  # c: baseline wrong, new right
    discordant = worse + better
    p_value = 1.0 if discordant == 0 else float(binomtest(min(worse, better), discordant, 0.5).pvalue)
    return {"worse": worse, "better": better, "p_value": min(1.0, p_value)}


def paired_bootstrap(diff: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile interval of the mean paired difference (new − baseline correctness)."""
    n = len(diff)
    if n == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)
    values = diff.astype(np.float64)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def regression(new: pd.DataFrame, baseline: pd.DataFrame, margin: float, seed: int, alpha: float = 0.05) -> dict[str, Any]:
    """Paired comparison by item_id; non-inferior when the bootstrap lower bound is above −margin."""
    from statsmodels.stats.multitest import multipletests
    merged = new[["item_id", "dimension", "correct"]].merge(
        baseline[["item_id", "correct"]], on="item_id", suffixes=("", "_baseline"))
    merged["correct"] = merged["correct"].astype(bool)
    merged["correct_baseline"] = merged["correct_baseline"].astype(bool)

    def compare(frame: pd.DataFrame, offset: int) -> dict[str, Any]:
        a = frame["correct_baseline"].to_numpy()
        b = frame["correct"].to_numpy()
        test = mcnemar_exact(a, b)
        low, high = paired_bootstrap(b.astype(int) - a.astype(int), seed + offset)
        return {"n": len(frame), "baseline_accuracy": float(a.mean()) if len(a) else None,
                "accuracy": float(b.mean()) if len(b) else None,
                "difference": float(b.mean() - a.mean()) if len(a) else None,
                "difference_ci95": [low, high], **test}

    overall = compare(merged, 0)
    dimensions = {}
    for offset, (dimension, frame) in enumerate(sorted(merged.groupby("dimension")), start=1):
        dimensions[dimension] = compare(frame, offset)
    names = list(dimensions)
    if names:
        adjusted = multipletests([dimensions[d]["p_value"] for d in names], alpha=alpha, method="holm")[1]
        for name, p_adj in zip(names, adjusted, strict=True):
            entry = dimensions[name]
            entry["p_holm"] = float(p_adj)
            entry["significant_decline"] = bool(p_adj < alpha and entry["difference"] < 0)
    overall["non_inferior"] = overall["difference_ci95"][0] > -margin if overall["n"] else False
    declines = [d for d in names if dimensions[d]["significant_decline"]]
    return {
        "paired_items": int(len(merged)),
        "unpaired_items": int(len(new) - len(merged)),
        "margin": margin,
        "alpha": alpha,
        "overall": overall,
        "dimensions": dimensions,
        "significant_declines": declines,
        "non_inferior": bool(overall["non_inferior"] and not declines),
        "method": "exact McNemar per dimension, Holm-adjusted; paired bootstrap (2,000 resamples) 95% interval "
                  "of the accuracy difference; non-inferior when its lower bound exceeds −margin and no "
                  "dimension declines significantly",
    }

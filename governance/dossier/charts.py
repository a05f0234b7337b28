"""The audit chart: accuracy per dimension with Wilson 95 % whiskers, as an embedded PNG (matplotlib).

A PNG at print resolution: WeasyPrint lays out an SVG's glyph paths one by one (about 0.9 s a dossier), a PNG
in a few milliseconds; the numbers it shows are in the table beside it as text."""

from __future__ import annotations

import base64
import io
from typing import Any

from ..audit.items import ETHICS_DIMENSIONS


def accuracy_chart_png(dimensions: list[dict[str, Any]]) -> str:
    """The chart as base64 PNG, for a data: URL in the dossier and on the audit page alike."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"font.family": "DejaVu Sans"})
    codes = [d["code"] for d in dimensions]
    accuracy = [d["accuracy"] or 0.0 for d in dimensions]
    low = [max(0.0, a - d["ci95"][0]) for a, d in zip(accuracy, dimensions, strict=True)]
    high = [max(0.0, d["ci95"][1] - a) for a, d in zip(accuracy, dimensions, strict=True)]
    colours = ["#3b6ea5" if code in ETHICS_DIMENSIONS else "#b5651d" for code in codes]
    figure, axes = plt.subplots(figsize=(7.2, 3.6), dpi=100)
    axes.bar(range(len(codes)), accuracy, color=colours, yerr=[low, high], capsize=2.5, ecolor="#222222",
             error_kw={"elinewidth": 0.8})
    axes.set_xticks(range(len(codes)), [code.replace("_", " ") for code in codes], rotation=60, ha="right",
                    fontsize=6.5)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy (Wilson 95% interval)", fontsize=7.5)
    axes.tick_params(axis="y", labelsize=7)
    axes.grid(axis="y", linewidth=0.4, alpha=0.5)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=200, metadata={"Software": None})  # the same bytes for the same data
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")

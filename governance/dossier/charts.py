"""The audit chart: accuracy per dimension with Wilson 95 % whiskers, as an SVG string (matplotlib)."""

from __future__ import annotations

import io
from typing import Any

from markupsafe import Markup

from ..audit.items import ETHICS_DIMENSIONS


def accuracy_chart(dimensions: list[dict[str, Any]]) -> Markup:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"svg.hashsalt": "dossier", "font.family": "DejaVu Sans"})  # reproducible output
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
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    svg = buffer.getvalue()
    return Markup(svg[svg.index("<svg"):])  # our own drawing: no user text in it

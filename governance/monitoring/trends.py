"""Accuracy over time per dimension for a deployment: every completed gate audit and re-audit."""

from __future__ import annotations

import io
from typing import Any

from markupsafe import Markup
from sqlalchemy import select
from sqlmodel import Session

from ..audit.items import DIMENSIONS, ETHICS_DIMENSIONS
from ..models import AuditRun, Deployment, ModelVersion


def accuracy_points(session: Session, deployment: Deployment) -> list[dict[str, Any]]:
    runs = session.execute(
        select(AuditRun, ModelVersion.version_label).join(ModelVersion, ModelVersion.id == AuditRun.model_version_id)
        .where(ModelVersion.deployment_id == deployment.id, AuditRun.status == "completed")
        .order_by(AuditRun.id)).all()
    points = []
    for run, label in runs:
        summary = run.summary or {}
        # created_at: a re-audit started on a controlled clock (``scheduler tick --now``) dates by it
        at = max(run.finished_at or run.created_at, run.created_at)
        points.append({"run": run.id, "at": at.strftime("%Y-%m-%d"), "version": label,
                       "purpose": run.purpose, "verdict": run.verdict,
                       "overall": (summary.get("overall") or {}).get("accuracy"),
                       "dimensions": {code: entry["accuracy"] for code, entry in (summary.get("dimensions") or {}).items()
                                      if entry.get("n")}})
    return points


def trend_chart(points: list[dict[str, Any]]) -> Markup:
    """Lines of accuracy per dimension (ethics blue, safety orange) and overall (black) over audits."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"svg.hashsalt": "trend", "font.family": "DejaVu Sans"})
    figure, axes = plt.subplots(figsize=(7.2, 3.2), dpi=100)
    x = list(range(len(points)))
    for code in DIMENSIONS:
        values = [p["dimensions"].get(code) for p in points]
        if any(v is not None for v in values):
            axes.plot(x, values, color="#3b6ea5" if code in ETHICS_DIMENSIONS else "#b5651d", alpha=0.35, linewidth=1)
    axes.plot(x, [p["overall"] for p in points], color="#111111", linewidth=2.2, marker="o", label="overall")
    axes.set_xticks(x, [f"{p['at']}\n{p['version']}" for p in points], fontsize=6.5)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy", fontsize=7.5)
    axes.tick_params(axis="y", labelsize=7)
    axes.grid(axis="y", linewidth=0.4, alpha=0.5)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=7, loc="lower left", frameon=False)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    svg = buffer.getvalue()
    return Markup(svg[svg.index("<svg"):])


def accuracy_trend(session: Session, deployment: Deployment) -> dict[str, Any]:
    points = accuracy_points(session, deployment)
    return {"points": points, "chart_svg": trend_chart(points) if len(points) >= 1 else ""}

"""Accuracy over time per dimension for a deployment (every completed gate audit and re-audit), and the live
watch's control chart over judged samples of its real interactions."""

from __future__ import annotations

import io
from typing import Any

from markupsafe import Markup
from sqlalchemy import func, select
from sqlmodel import Session

from ..audit.items import DIMENSIONS, ETHICS_DIMENSIONS
from ..models import AuditRun, Deployment, Interaction, LiveWatch, ModelVersion


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


def _figure(salt: str, height: float):
    """A matplotlib figure for a page chart (Agg, DejaVu Sans, a fixed hash salt so the SVG is reproducible)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    matplotlib.rcParams.update({"svg.hashsalt": salt, "font.family": "DejaVu Sans"})
    return plt.subplots(figsize=(7.2, height), dpi=100)


def _svg(figure, axes) -> Markup:
    """The finished figure as inline SVG markup (y grid, no top/right spines), the figure closed."""
    import matplotlib.pyplot as plt

    axes.grid(axis="y", linewidth=0.4, alpha=0.5)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    svg = buffer.getvalue()
    return Markup(svg[svg.index("<svg"):])


def trend_chart(points: list[dict[str, Any]]) -> Markup:
    """Lines of accuracy per dimension (ethics blue, safety orange) and overall (black) over audits."""
    figure, axes = _figure("trend", 3.2)
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
    axes.legend(fontsize=7, loc="lower left", frameon=False)
    return _svg(figure, axes)


def accuracy_trend(session: Session, deployment: Deployment) -> dict[str, Any]:
    points = accuracy_points(session, deployment)
    return {"points": points, "chart_svg": trend_chart(points) if len(points) >= 1 else ""}


def watch_chart(points: list[list[float]], limit: float) -> Markup:
    """The live watch's CUSUM over graded samples, its decision limit, and the hazardous samples as marks."""
    figure, axes = _figure("watch", 2.6)
    x = [p[0] for p in points]
    axes.plot(x, [p[1] for p in points], color="#111111", linewidth=1.4, label="CUSUM")
    axes.axhline(limit, color="#b22222", linestyle="--", linewidth=1, label=f"limit {limit:g}")
    marks = [p[0] for p in points if p[2]]
    if marks:
        axes.plot(marks, [0] * len(marks), linestyle="none", marker="|", markersize=9, color="#b5651d",
                  label="hazardous sample")
    axes.set_ylim(0, max(limit * 1.1, max((p[1] for p in points), default=0) * 1.1))
    axes.set_xlabel("graded samples", fontsize=7.5)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7, loc="upper left", frameon=False)
    return _svg(figure, axes)


def live_watch(session: Session, deployment: Deployment) -> dict[str, Any] | None:
    """The deployment page's live-watch card: the chart's state and the latest hazardous samples."""
    watch = session.execute(select(LiveWatch).where(LiveWatch.deployment_id == deployment.id)).scalars().first()
    if watch is None:
        return None
    hazardous = session.execute(select(Interaction).where(Interaction.deployment_id == deployment.id,
                                                          Interaction.hazardous.is_(True))
                                .order_by(Interaction.id.desc()).limit(5)).scalars().all()
    waiting = session.execute(select(func.count()).select_from(Interaction).where(
        Interaction.deployment_id == deployment.id, Interaction.graded_at.is_(None))).scalar_one()
    return {"watch": watch, "hazardous": hazardous, "waiting": waiting,
            "chart_svg": watch_chart(watch.chart, watch.threshold) if watch.chart else ""}

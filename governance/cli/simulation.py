"""``govern simulation`` and ``govern watch``: the institution's own queries for the safety simulation, and the live
watch over a deployment's real interactions."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select
from flask.cli import with_appcontext

from ..db import get_session
from ..models import Deployment, LiveWatch, QuerySet, utcnow
from ..operations import GovernanceError
from ..operations.simulation import FORMATS, import_query_set
from ..operations.watch import configure_watch, create_watch_token
from .common import echo_json, transactional, user_by_email


@click.group()
def simulation() -> None:
    """Safety simulation: import the institution's own queries (de-identified), list the query sets."""


@simulation.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="jsonl or csv (default: from the file's extension).")
@click.option("--name", required=True, help="The query set's name; importing it again makes its next version.")
@click.option("--json", "as_json", is_flag=True)
@transactional
def simulation_import(path: Path, fmt: str | None, name: str, as_json: bool) -> None:
    """Import a log of real queries (fields: prompt, optional context, department, timestamp). Every text is
    de-identified before anything is stored; the report says what was removed, by type. The file itself is
    not kept: delete it once imported."""
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise click.UsageError(f"cannot tell the format from '{path.name}': pass --format jsonl or --format csv")
    query_set, removed = import_query_set(get_session(), path, fmt=fmt, name=name, actor=None, now=utcnow())
    report = {"query_set": query_set.id, "name": query_set.name, "version": query_set.version, "n": query_set.n,
              "digest": query_set.digest, "deid_version": query_set.deid_version, "removed": dict(removed),
              "profile": query_set.profile}
    if as_json:
        echo_json(report)
        return
    click.echo(f"query set {query_set.name} version {query_set.version}: {query_set.n} queries, digest "
               f"{query_set.digest[:16]}… (de-identified by {query_set.deid_version})")
    click.echo("  removed: " + (", ".join(f"{kind} {count}" for kind, count in sorted(removed.items()))
                                if removed else "no identifier found"))


@simulation.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def simulation_list(as_json: bool) -> None:
    """The imported query sets, newest first."""
    rows = get_session().execute(select(QuerySet).order_by(QuerySet.id.desc())).scalars().all()
    data = [{"id": r.id, "name": r.name, "version": r.version, "n": r.n, "digest": r.digest,
             "removed": r.removed, "created_at": r.created_at} for r in rows]
    if as_json:
        echo_json(data)
        return
    for r in data:
        click.echo(f"{r['id']:>4} {r['name']} v{r['version']}  {r['n']} queries  {r['digest'][:16]}…")


@click.group()
def watch() -> None:
    """Live watch: judged samples of a deployment's real interactions and its chart."""


@watch.command("configure")
@click.argument("deployment_id", type=int)
@click.option("--sample-rate", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Share of posted interactions kept.")
@click.option("--retention-days", type=click.IntRange(1, 3650), default=None)
@click.option("--baseline-rate", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="The approved hazard rate (default: the approved version's simulation, else 1%).")
@transactional
def watch_configure(deployment_id: int, sample_rate: float | None, retention_days: int | None,
                    baseline_rate: float | None) -> None:
    """Start or change the live watch of a deployment."""
    deployment = get_session().get(Deployment, deployment_id)
    if deployment is None:
        raise GovernanceError(f"no deployment {deployment_id}")
    found = configure_watch(get_session(), deployment, sample_rate=sample_rate, retention_days=retention_days,
                            baseline_rate=baseline_rate, actor=None, now=utcnow())
    click.echo(f"live watch of deployment {deployment_id}: sample rate {found.sample_rate:g}, retention "
               f"{found.retention_days} days, baseline hazard rate {found.baseline_rate:.2%}, alarm at "
               f"{found.alarm_rate:.2%}, CUSUM limit {found.threshold:g}")


@watch.command("token")
@click.argument("deployment_id", type=int)
@click.option("--user", "email", required=True, help="The account the gateway's token is issued under (its owner).")
@click.option("--name", default="llm-gateway", show_default=True)
@transactional
def watch_token(deployment_id: int, email: str, name: str) -> None:
    """A token for the hospital's LLM gateway: it posts this deployment's interactions and can do nothing else
    (printed once on standard output)."""
    session = get_session()
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        raise GovernanceError(f"no deployment {deployment_id}")
    created, secret = create_watch_token(session, deployment, user_by_email(email), name=name, actor=None)
    click.echo(secret)
    click.echo(f"token {created.id} ({created.prefix}…) posts interactions of deployment {deployment_id} to "
               f"/api/v1/deployments/{deployment_id}/interactions", err=True)


@watch.command("status")
@click.argument("deployment_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def watch_status(deployment_id: int, as_json: bool) -> None:
    """The watch's state: samples graded, hazards, the CUSUM statistic against its limit."""
    found = get_session().execute(select(LiveWatch).where(LiveWatch.deployment_id == deployment_id)).scalars().first()
    if found is None:
        raise click.ClickException(f"deployment {deployment_id} has no live watch (govern watch configure)")
    data = {"deployment": deployment_id, "graded": found.graded, "hazards": found.hazards,
            "statistic": round(found.statistic, 3), "threshold": found.threshold, "baseline_rate": found.baseline_rate,
            "alarm_rate": found.alarm_rate, "signalled_at": found.signalled_at, "incident": found.incident_id}
    if as_json:
        echo_json(data)
        return
    click.echo(f"deployment {deployment_id}: {found.graded} samples graded, {found.hazards} hazardous; CUSUM "
               f"{found.statistic:.2f} of limit {found.threshold:g}"
               + (f"; SIGNALLED, incident #{found.incident_id}" if found.incident_id else ""))

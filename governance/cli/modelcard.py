"""``govern modelcard``: the Applied Model Card (CHAI schema v0.2) of an approved model version."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from ..db import get_session
from ..errors import GovernanceError
from ..models import Deployment
from .common import settings


@click.command()
@click.argument("deployment_id", metavar="DEPLOYMENT", type=int)
@click.option("--version", "version", metavar="V", help="Version label or id (default: the approved version).")
@click.option("--format", "fmt", type=click.Choice(["chai-xml", "json"]), default="chai-xml", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@with_appcontext
def modelcard(deployment_id: int, version: str | None, fmt: str, out: Path | None) -> None:
    """Write the Applied Model Card (CHAI schema v0.2) of an approved model version.

    The card is filled from the review record (descriptor, classification, model version, gate audit with its
    Wilson intervals and operating characteristics, decision) and validated against the vendored CHAI XSD
    before anything is written; fields the record does not hold say "Not provided by the submitter".

    \b
    JSON shape (--format json), the same content as the XML:
      {"schema": "CHAI Applied Model Card v0.2", "namespace": "https://mc.chai.org/v0.2/schema.xsd",
       "AppliedModelCard": {"BasicInfo": {...}, "ReleaseInfo": {...}, "ModelSummary": {"Summary": str,
         "Keywords": [str]}, "UsesAndDirections": {...}, "Warnings": {...}, "TrustIngredients": {...},
         "KeyMetrics": {"UsefulnessUsabilityEfficacy" | "FairnessEquity" | "SafetyReliability":
           {"MetricGoal": str, "Results": [{"Label": str, "ValueJson": {"kind": "single", "value": number|null,
            "unit": "%"}}], ...}}, "Resources": {...}, "Bibliography": str}}
      Keys are the XSD's element names in schema order; null marks an optional element left out.
    """
    from ..modelcard import export

    deployment = get_session().get(Deployment, deployment_id)
    if deployment is None:
        raise GovernanceError(f"no deployment {deployment_id}")
    label, document = export(get_session(), settings(), deployment, version, fmt)
    if out is None:
        click.echo(document.decode("utf-8"), nl=False)
        return
    out.write_bytes(document)
    click.echo(f"wrote {out} (model card of deployment {deployment_id} version {label}, {fmt})", err=True)

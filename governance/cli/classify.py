"""``govern classify`` and ``govern rules validate`` (no database needed)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import datafiles
from ..audit.items import load_named
from ..audit.policy import feasibility_problems, load_policy, policy_files
from ..audit.policy import plan as policy_plan
from ..checklists import load_checklists
from ..classification.descriptor import load_descriptor
from ..classification.engine import classify as run_classifier
from ..classification.materiality import ModelVersionRecord, assess_change
from ..classification.rules import load_ruleset, rule_files
from ..committees import load_committee_rules
from ..config import load_settings, resolve_instance_path
from ..monitoring.policy import load_monitoring
from ..errors import DataFileError, GovernanceError
from .common import echo_json


def _dirs(regulations: Path | None, checklists: Path | None) -> tuple[Path, Path]:
    settings = load_settings(resolve_instance_path())
    return regulations or settings.regulations_dir, checklists or settings.checklists_dir


@click.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--change", is_flag=True, help="Compare two model-version records: PREVIOUS NEW.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--kind", type=click.Choice(["initial", "change", "continuing", "incident"]), default="initial",
              show_default=True, help="The kind of case the descriptor is classified for.")
@click.option("--regulations", type=click.Path(exists=True, file_okay=False, path_type=Path))
def classify(files: tuple[Path, ...], change: bool, as_json: bool, kind: str, regulations: Path | None) -> None:
    """Classify a deployment descriptor (China / US / EU), or assess a change's materiality."""
    if change:
        if len(files) != 2:
            raise GovernanceError("--change takes two model-version records: PREVIOUS NEW")
        previous, new = (datafiles.validate(datafiles.load_yaml(p), ModelVersionRecord, p) for p in files)
        result = assess_change(previous, new)
        if as_json:
            echo_json(result)
        else:
            click.echo(f"{result['previous']} → {result['new']}: {result['materiality'].replace('_', ' ')}")
            for finding in result["findings"]:
                click.echo(f"  [{finding['level']}] {finding['reason']}")
            click.echo(f"  source: {result['source']}")
        return
    if len(files) != 1:
        raise GovernanceError("classify takes one descriptor file (or --change PREVIOUS NEW)")
    regulations_dir, _ = _dirs(regulations, None)
    result = run_classifier(load_descriptor(files[0]), load_ruleset(regulations_dir), {"kind": kind})
    if as_json:
        echo_json(result)
        return
    _report(files[0], result)


def _report(path: Path, r: dict) -> None:
    nmpa, fda, mdr, act = r["nmpa"], r["fda_cds"], r["eu_mdr"], r["eu_ai_act"]
    click.echo(f"{path.name}")
    click.echo(f"  China  NMPA: {nmpa['status']}" + (f", class {nmpa['class']}" if nmpa["class"] else "")
               + (f", catalogue {nmpa['catalogue']}" if nmpa["catalogue"] else "")
               + (f"; reviewed as class {nmpa['review_as_class']}" if nmpa["review_as_class"] else ""))
    click.echo(f"  US     FDA CDS: {fda['status']}" + (f" (criteria not met: {', '.join(map(str, fda['failed_criteria']))})"
                                                        if fda["failed_criteria"] else ""))
    click.echo(f"  EU     MDR: {mdr['status']}" + (f", class {mdr['class']}" if mdr["class"] else "")
               + f"; AI Act: {'high-risk' if act['high_risk'] else 'not high-risk'} ({act['basis']})")
    click.echo(f"  Demand levels: privacy {r['privacy_level']}/5, reasoning {r['reasoning_level']}/5")
    if r["prohibited"]:
        click.echo("  PROHIBITED: can never be approved")
    if r["expert_reexamination"]:
        click.echo("  Expert re-examination required")
    click.echo(f"  Pathway: {r['pathway'].replace('_', ' ')}")
    for reason in r["pathway_reasons"]:
        click.echo(f"    - {reason}")
    click.echo("  Obligations:")
    for o in r["obligations"]:
        click.echo(f"    {'!' if o['blocking'] else '-'} {o['id']}: {o['title']} [{o['certainty']}] ({o['source']})")
    click.echo("  Rule trail:")
    for rule in r["rule_trail"]:
        flag = " (overridden)" if rule.get("overridden") else ""
        click.echo(f"    {rule['rule_id']}{flag}: {rule['outcome']} — {rule['source']} [{rule['certainty']}]")
    click.echo(f"  Rules {r['rules_version']}; input sha256 {r['input_sha256']}")


@click.group()
def rules() -> None:
    """The rule files, checklists and policies in regulations/ and checklists/."""


@rules.command("validate")
@click.option("--regulations", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--checklists", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--examples", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also classify every descriptor here, to catch rules that conflict on real inputs.")
def rules_validate(regulations: Path | None, checklists: Path | None, examples: Path | None) -> None:
    """Check every data file; exit non-zero at the first error, naming the file, the line and the key."""
    regulations_dir, checklists_dir = _dirs(regulations, checklists)
    ruleset = load_ruleset(regulations_dir)
    load_committee_rules(regulations_dir)
    load_monitoring(regulations_dir)
    policies = [load_policy(path) for path in policy_files(regulations_dir)]
    sources = load_settings(resolve_instance_path()).item_sets
    for policy in policies:
        try:
            item_set = load_named([(ref["name"], sources[ref["name"]]) for ref in policy["item_sets"]])
        except KeyError as exc:
            raise DataFileError(regulations_dir / policy["file"], None, "item_sets",
                                f"names the item set {exc}, which this instance does not define") from None
        problems = feasibility_problems(policy, policy_plan(policy, item_set))
        if problems:
            raise DataFileError(regulations_dir / policy["file"], None, "floors",
                                "cannot keep its declared error rates with the items it names: " + "; ".join(problems))
    loaded = load_checklists(checklists_dir)
    if examples is not None:
        for path in sorted(examples.glob("*.y*ml")) + sorted(examples.glob("*.json")):
            run_classifier(load_descriptor(path), ruleset)
    click.echo(f"ok: {len(rule_files(regulations_dir))} rule files ({len(ruleset.rules)} rules, "
               f"{len(ruleset.obligations)} obligations), committee rules, monitoring, {len(policies)} gate policies, "
               f"{len(loaded)} checklists ({sum(len(c.items) for c in loaded)} items); rules {ruleset.version}")

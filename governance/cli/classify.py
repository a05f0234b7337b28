"""``govern classify`` and ``govern rules validate`` (no database needed); ``govern rules impact`` (reads the
registered deployments)."""

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
from ..classification.rules import RuleSet, load_ruleset, rule_files
from ..committees import load_committee_rules
from ..documents.required import REQUIRED_DOCUMENTS_FILE, load_document_types_file
from ..config import PROJECT_ROOT, load_settings, resolve_instance_path
from ..monitoring.policy import load_monitoring
from ..errors import DataFileError, GovernanceError
from .common import echo_json, transactional


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
    """Classify deployment descriptors (China / US / EU), or assess a change's materiality."""
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
    if not files:
        raise GovernanceError("classify takes one or more descriptor files (or --change PREVIOUS NEW)")
    regulations_dir, _ = _dirs(regulations, None)
    ruleset = load_ruleset(regulations_dir)
    results = {str(path): run_classifier(load_descriptor(path), ruleset, {"kind": kind}) for path in files}
    if as_json:  # one file: its result; several: the results by file name, in the order given
        echo_json(results[str(files[0])] if len(files) == 1 else results)
        return
    for index, path in enumerate(files):
        if index:
            click.echo("")
        _report(path, results[str(path)])


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
        if rule.get("note"):
            click.echo(f"      note: {rule['note']}")
    click.echo(f"  Rules {r['rules_version']}; input sha256 {r['input_sha256']}")


@click.group()
def rules() -> None:
    """The rule files, checklists and policies in regulations/ and checklists/."""


def validate_data_files(regulations_dir: Path, checklists_dir: Path | None) -> tuple[RuleSet, list[dict], tuple]:
    """Load every data file strictly (rule files, committee rules, monitoring, gate policies, checklists, required
    documents): the first error raises, naming the file, the line and the key. Returns the rule set, policies and
    checklists."""
    ruleset = load_ruleset(regulations_dir)
    load_committee_rules(regulations_dir)
    load_monitoring(regulations_dir)
    policies = [load_policy(path) for path in policy_files(regulations_dir)]
    checklists = load_checklists(checklists_dir) if checklists_dir is not None else ()
    if checklists_dir is not None and (checklists_dir / REQUIRED_DOCUMENTS_FILE).exists():
        load_document_types_file(checklists_dir / REQUIRED_DOCUMENTS_FILE)
    return ruleset, policies, checklists


@rules.command("validate")
@click.option("--regulations", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--checklists", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--examples", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also classify every descriptor here, to catch rules that conflict on real inputs.")
def rules_validate(regulations: Path | None, checklists: Path | None, examples: Path | None) -> None:
    """Check every data file; exit non-zero at the first error, naming the file, the line and the key."""
    regulations_dir, checklists_dir = _dirs(regulations, checklists)
    ruleset, policies, loaded = validate_data_files(regulations_dir, checklists_dir)
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
    if examples is not None:
        for path in sorted(examples.glob("*.y*ml")) + sorted(examples.glob("*.json")):
            run_classifier(load_descriptor(path), ruleset)
    click.echo(f"ok: {len(rule_files(regulations_dir))} rule files ({len(ruleset.rules)} rules, "
               f"{len(ruleset.obligations)} obligations), committee rules, monitoring, {len(policies)} gate policies, "
               f"{len(loaded)} checklists ({sum(len(c.items) for c in loaded)} items); rules {ruleset.version}")


@rules.command("impact")
@click.option("--from", "from_revision", required=True, metavar="REV", help="The rule set before the change.")
@click.option("--to", "to_revision", required=True, metavar="REV", help="The rule set after the change.")
@click.option("--repository", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The git repository whose revisions REV names (default: this project's).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (its shape is below).")
@transactional
def rules_impact(from_revision: str, to_revision: str, repository: Path | None, as_json: bool) -> None:
    """Reclassify every registered deployment under two rule sets; list those whose outcome changes.

    REV is a folder of rule files (or a folder holding regulations/ and checklists/), or a git revision of
    --repository, whose regulations/*.yaml and checklists/*.yaml are read with git show (the work tree is never
    touched). Both sides are validated as by `govern rules validate` (gate feasibility aside). Each deployment is
    classified from its stored descriptor as an initial case. A deployment is listed when its China / US / EU
    status, pathway, obligations, prohibition or expert re-examination changes, with the rules responsible;
    the others are counted. Exits 0 whether or not anything changed.

    \b
    --json prints one object:
      {"from": {"revision", "commit" (null for a folder), "rules_version", "rules_digest"},
       "to": {the same},
       "deployments": N reclassified, "unchanged": N,
       "changed": [{"deployment_id", "name", "status",
                    "changes": {PART: {"from", "to"}, "obligations": {"added": [ids], "removed": [ids]}},
                    "rules": [{"rule_id", "change": "only_in_from" | "only_in_to" | "outcome_changed",
                               "from", "to" (its outcome; null where it did not fire), "source", "file"}]}],
       "errors": [{"deployment_id", "name", "error"}]}
    PART: nmpa, fda_cds, eu_mdr, eu_ai_act_high_risk, pathway, prohibited, expert_reexamination.
    "errors" lists deployments that could not be classified (a stored descriptor that no longer validates,
    rules that conflict on it).
    """
    from ..classification.engine import RuleConflict
    from ..classification.impact import compare, rule_source
    from ..classification.descriptor import descriptor_from_dict
    from ..db import get_session
    from ..models import Deployment
    from sqlalchemy import select

    repository = repository or PROJECT_ROOT
    with rule_source(from_revision, repository) as before, rule_source(to_revision, repository) as after:
        before_rules = validate_data_files(before.regulations_dir, before.checklists_dir)[0]
        after_rules = validate_data_files(after.regulations_dir, after.checklists_dir)[0]
    report = {"from": _side(before, before_rules), "to": _side(after, after_rules), "deployments": 0,
              "unchanged": 0, "changed": [], "errors": []}
    for deployment in get_session().execute(select(Deployment).order_by(Deployment.id)).scalars():
        row = {"deployment_id": deployment.id, "name": deployment.name, "status": deployment.status}
        try:
            descriptor = descriptor_from_dict(deployment.descriptor, f"deployment {deployment.id}")
            impact = compare(run_classifier(descriptor, before_rules, {"kind": "initial"}),
                             run_classifier(descriptor, after_rules, {"kind": "initial"}))
        except (DataFileError, RuleConflict) as exc:
            report["errors"].append({**row, "error": str(exc)})
            continue
        report["deployments"] += 1
        if impact is None:
            report["unchanged"] += 1
        else:
            report["changed"].append({**row, **impact})
    if as_json:
        echo_json(report)
        return
    _impact_report(report)


def _side(source, ruleset: RuleSet) -> dict:
    return {"revision": source.revision, "commit": source.commit, "rules_version": ruleset.version,
            "rules_digest": ruleset.digest}


def _impact_report(report: dict) -> None:
    click.echo(f"Rules {report['from']['revision']} ({report['from']['rules_version']}) → "
               f"{report['to']['revision']} ({report['to']['rules_version']})")
    click.echo(f"{report['deployments']} deployments reclassified: {len(report['changed'])} changed, "
               f"{report['unchanged']} unchanged" + (f"; {len(report['errors'])} could not be classified"
                                                     if report["errors"] else ""))
    for row in report["changed"]:
        click.echo(f"deployment {row['deployment_id']} {row['name']} [{row['status']}]")
        for part, change in row["changes"].items():
            if part == "obligations":
                click.echo("  obligations: " + ", ".join([f"+{o}" for o in change["added"]]
                                                         + [f"-{o}" for o in change["removed"]]))
            else:
                click.echo(f"  {part}: {change['from']} → {change['to']}")
        for rule in row["rules"]:
            click.echo(f"  rule {rule['rule_id']} ({rule['change'].replace('_', ' ')}): "
                       f"{rule['from'] or '—'} → {rule['to'] or '—'}")
    for row in report["errors"]:
        click.echo(f"deployment {row['deployment_id']} {row['name']}: not classified: {row['error']}")

"""Registering deployments, model versions and cases; meetings; obligations — from the shell."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from flask.cli import with_appcontext

from .. import digests
from ..classification.descriptor import load_descriptor
from ..db import get_session
from ..domain import SubmissionKind, values
from ..models import ATTENDANCE_CAPACITIES, Deployment, Meeting, ModelVersion
from ..operations import GovernanceError
from ..operations.cases import add_model_version, open_submission, record_obligation_status, register_deployment
from ..operations.meetings import create_meeting, record_attendance, set_meeting_status
from .common import echo_json, settings, transactional, user_by_email


def _get(model, ident: int, what: str):
    found = get_session().get(model, ident)
    if found is None:
        raise GovernanceError(f"no {what} {ident}")
    return found


@click.group()
def deployment() -> None:
    """AI deployments."""


@deployment.command("register")
@click.argument("descriptor", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--owner", required=True, help="E-mail of the submitter who owns it.")
@transactional
def deployment_register(descriptor: Path, owner: str) -> None:
    """Register a deployment from its descriptor (YAML or JSON)."""
    parsed = load_descriptor(descriptor)
    created = register_deployment(get_session(), parsed.model_dump(), owner=user_by_email(owner))
    click.echo(f"deployment {created.id} {created.name}")


@click.group()
def version() -> None:
    """Model versions."""


@version.command("add")
@click.option("--deployment", "deployment_id", type=int, required=True)
@click.option("--label", required=True)
@click.option("--base-model", required=True)
@click.option("--endpoint", required=True, help="Local model folder, http(s):// endpoint, or demo://good.")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Compute the weights and tokenizer digests from this folder.")
@click.option("--weights-digest", default="")
@click.option("--served-model-id", default="")
@click.option("--change-summary", default="")
@click.option("--as", "as_email", required=True)
@transactional
def version_add(deployment_id: int, label: str, base_model: str, endpoint: str, model_dir: Path | None,
                weights_digest: str, served_model_id: str, change_summary: str, as_email: str) -> None:
    tokenizer = ""
    if model_dir is not None:
        weights_digest = digests.weights_digest(model_dir)
        tokenizer = digests.tokenizer_digest(model_dir)
    created = add_model_version(get_session(), _get(Deployment, deployment_id, "deployment"),
                                actor=user_by_email(as_email), version_label=label, base_model=base_model,
                                weights_digest=weights_digest, tokenizer_digest=tokenizer, endpoint=endpoint,
                                served_model_id=served_model_id, change_summary=change_summary)
    click.echo(f"model version {created.id} {created.version_label} {created.weights_digest}")


@click.group("case")
def case() -> None:
    """Open cases (submissions)."""


@case.command("create")
@click.option("--kind", type=click.Choice(values(SubmissionKind)), required=True)
@click.option("--deployment", "deployment_id", type=int, required=True)
@click.option("--version", "version_id", type=int, required=True)
@click.option("--title", default="")
@click.option("--as", "as_email", required=True)
@transactional
def case_create(kind: str, deployment_id: int, version_id: int, title: str, as_email: str) -> None:
    created = open_submission(get_session(), kind=kind, deployment=_get(Deployment, deployment_id, "deployment"),
                              model_version=_get(ModelVersion, version_id, "model version"),
                              submitter=user_by_email(as_email), title=title)
    click.echo(f"submission {created.id} ({created.kind}) in draft")


@click.group()
def meeting() -> None:
    """Full-board meetings."""


@meeting.command("create")
@click.option("--title", required=True)
@click.option("--at", "at", required=True, help="ISO date and time (UTC), e.g. 2026-12-01T09:00")
@click.option("--as", "as_email", required=True)
@transactional
def meeting_create(title: str, at: str, as_email: str) -> None:
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise GovernanceError(f"--at: '{at}' is not an ISO date and time") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    created = create_meeting(get_session(), title=title, scheduled_for=moment, actor=user_by_email(as_email))
    click.echo(f"meeting {created.id} {created.title}")


@meeting.command("attend")
@click.argument("meeting_id", type=int)
@click.option("--member", "members", multiple=True, required=True, help="E-mail; may be repeated.")
@click.option("--capacity", type=click.Choice(ATTENDANCE_CAPACITIES), default="member")
@click.option("--alternate-for", "alternate_for", help="E-mail of the member an alternate sits for.")
@click.option("--absent", is_flag=True)
@click.option("--as", "as_email", required=True)
@transactional
def meeting_attend(meeting_id: int, members: tuple[str, ...], capacity: str, alternate_for: str | None, absent: bool,
                   as_email: str) -> None:
    found = _get(Meeting, meeting_id, "meeting")
    actor = user_by_email(as_email)
    sits_for = user_by_email(alternate_for) if alternate_for else None
    for email in members:
        record_attendance(get_session(), found, user_by_email(email), present=not absent, capacity=capacity,
                          alternate_for=sits_for, actor=actor)
    click.echo(f"meeting {found.id}: attendance recorded for {len(members)} member(s)")


@meeting.command("status")
@click.argument("meeting_id", type=int)
@click.argument("status", type=click.Choice(["scheduled", "in_session", "closed"]))
@click.option("--as", "as_email", required=True)
@transactional
def meeting_status(meeting_id: int, status: str, as_email: str) -> None:
    set_meeting_status(get_session(), _get(Meeting, meeting_id, "meeting"), status, actor=user_by_email(as_email))
    click.echo(f"meeting {meeting_id} {status}")


@meeting.command("minutes")
@click.argument("meeting_id", type=int)
@click.option("--as", "as_email", help="E-mail of the person issuing them (recorded in the event).")
@transactional
def meeting_minutes(meeting_id: int, as_email: str | None) -> None:
    """Write the signed minutes of a closed meeting (a new version each time; earlier ones are kept)."""
    from ..operations.dossiers import absolute_path, emit_minutes

    created = emit_minutes(get_session(), settings(), _get(Meeting, meeting_id, "meeting"),
                           actor=user_by_email(as_email) if as_email else None)
    click.echo(f"minutes {created.id}: {absolute_path(settings(), created)}")


@click.group()
def obligation() -> None:
    """Obligations named by classifications."""


@obligation.command("set")
@click.option("--deployment", "deployment_id", type=int, required=True)
@click.option("--id", "obligation_id", required=True)
@click.option("--status", type=click.Choice(["open", "satisfied", "not_applicable"]), required=True)
@click.option("--evidence", default="")
@click.option("--reference", default="")
@click.option("--as", "as_email", required=True)
@click.option("--json", "as_json", is_flag=True)
@transactional
def obligation_set(deployment_id: int, obligation_id: str, status: str, evidence: str, reference: str,
                   as_email: str, as_json: bool) -> None:
    target = _get(Deployment, deployment_id, "deployment")
    record_obligation_status(get_session(), target, obligation_id, status, evidence=evidence, reference=reference,
                             actor=user_by_email(as_email))
    if as_json:
        echo_json({"deployment": deployment_id, "obligation": obligation_id, "status": status})
    else:
        click.echo(f"deployment {deployment_id}: {obligation_id} {status}")


@click.group()
def checklist() -> None:
    """Review checklists."""


@checklist.command("show")
@click.argument("submission_id", type=int)
@click.option("--template", is_flag=True, help="Print a JSON answers object (every item 'yes') to edit and pass "
                                               "to `govern fire ID answer_checklist --data`.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en")
@transactional
def checklist_show(submission_id: int, template: bool, lang: str) -> None:
    """The checklist items that apply to a case, or an answers template."""
    import json

    from .. import queries
    from ..models import Submission
    from .common import settings

    session = get_session()
    found = _get(Submission, submission_id, "submission")
    selected = queries.checklist_of(session, found, settings())
    items = selected.applicable_items(queries.case_facts(session, found))
    if template:
        click.echo(json.dumps({"answers": {item.id: {"answer": "yes", "comment": ""} for item in items}},
                              ensure_ascii=False))
        return
    click.echo(f"{selected.id} v{selected.version}: {selected.title.get(lang)} ({len(items)} items apply)")
    for item in items:
        click.echo(f"  {item.id}{'' if item.required else ' (optional)'}: {item.text.get(lang)}")
        click.echo(f"      evidence: {item.evidence.get(lang)}")


@click.group()
def condition() -> None:
    """Conditions of approval: list them, record one met (with evidence) or waive it (the chair)."""


@condition.command("list")
@click.argument("deployment_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def condition_list(deployment_id: int, as_json: bool) -> None:
    """A deployment's conditions of approval, newest first."""
    from ..operations.conditions import conditions_of

    deployment = get_session().get(Deployment, deployment_id)
    if deployment is None:
        raise GovernanceError(f"no deployment {deployment_id}")
    rows = [{"id": c.id, "number": c.number, "text": c.text, "due_date": c.due_date.isoformat(),
             "blocking": c.blocking, "status": c.status, "evidence": c.evidence}
            for c in conditions_of(get_session(), deployment)]
    if as_json:
        echo_json(rows)
        return
    for c in rows:
        click.echo(f"{c['id']:>4}  #{c['number']} {c['status']:<7} due {c['due_date']}"
                   f"{' BLOCKING' if c['blocking'] else ''}  {c['text']}")


@condition.command("close")
@click.argument("condition_id", type=int)
@click.option("--as", "email", required=True, help="The owner or the chair.")
@click.option("--met", "evidence", default=None, help="What shows it met (a report, a document reference).")
@click.option("--waive", "reason", default=None, help="Why the chair waives it.")
@transactional
def condition_close(condition_id: int, email: str, evidence: str | None, reason: str | None) -> None:
    """Record a condition met (--met EVIDENCE) or waived (--waive REASON); each is an event."""
    from ..models import ApprovalCondition, utcnow
    from ..operations.conditions import meet_condition, waive_condition

    if (evidence is None) == (reason is None):
        raise click.UsageError("give exactly one of --met EVIDENCE or --waive REASON")
    found = get_session().get(ApprovalCondition, condition_id)
    if found is None:
        raise GovernanceError(f"no condition {condition_id}")
    actor = user_by_email(email)
    if evidence is not None:
        meet_condition(get_session(), found, evidence, actor=actor, now=utcnow())
    else:
        waive_condition(get_session(), found, reason, actor=actor, now=utcnow())
    click.echo(f"condition {found.number} of deployment {found.deployment_id}: {found.status}")

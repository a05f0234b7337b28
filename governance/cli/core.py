"""Core commands: init, run, db, user, submission, fire, workflow diagram, log verify."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from .. import eventlog, migrate, queries
from ..config import CONFIG_FILE_NAME, new_secret_key, write_instance_config
from ..db import get_session
from ..domain import Role, values
from ..models import Deployment, ModelVersion, Submission
from ..operations import GovernanceError, fire
from ..operations.users import create_user
from ..security import check_password_strength
from ..workflow import MACHINES, SUBMISSIONS, SubmissionState, graphviz_dot, mermaid
from .common import echo_json, parse_json_option, settings, transactional, user_by_email


@click.command()
@with_appcontext
def init() -> None:
    """Create the instance folder and its secret key, and migrate the database to head (idempotent)."""
    current = settings()
    instance = current.instance_path
    instance.mkdir(parents=True, exist_ok=True)
    instance.chmod(0o700)
    config_file = instance / CONFIG_FILE_NAME
    if current.secret_is_insecure:
        write_instance_config(instance, {"secret_key": new_secret_key()})
        click.echo(f"wrote a new secret key to {config_file}")
    migrate.upgrade(current.sqlalchemy_url)
    heads = migrate.current_heads(current.sqlalchemy_url)
    from ..config import load_settings
    from ..dossier.keys import init_keys, paths

    if not paths(current).pkcs12.exists():
        reloaded = load_settings(instance)  # picks up the secret written above
        created = init_keys(reloaded)
        click.echo(f"created the institution signing key {created.pkcs12} (certificate {created.certificate})")
    click.echo(f"instance {instance}; database {_safe_url(current.sqlalchemy_url)} at {', '.join(heads)}")


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}:***@{host}" if ":" in credentials else url
    return url


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Serve the web app (the development server; use gunicorn 'app:app' in production)."""
    from werkzeug.serving import run_simple

    from ..app import create_app

    app = create_app()  # refuses a missing or default secret key outside debug and demo mode
    click.echo(f"serving {app.config['GOVERNANCE'].institution_name} on http://{host}:{port}/")
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)


@click.group()
def db() -> None:
    """Database migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    migrate.upgrade(settings().sqlalchemy_url, revision)
    click.echo(f"at {', '.join(migrate.current_heads(settings().sqlalchemy_url)) or 'base'}")


@db.command("downgrade")
@click.argument("revision", default="-1")
@with_appcontext
def db_downgrade(revision: str) -> None:
    migrate.downgrade(settings().sqlalchemy_url, revision)
    click.echo(f"at {', '.join(migrate.current_heads(settings().sqlalchemy_url)) or 'base'}")


@db.command("current")
@with_appcontext
def db_current() -> None:
    click.echo(", ".join(migrate.current_heads(settings().sqlalchemy_url)) or "base")


@db.command("check")
@with_appcontext
def db_check() -> None:
    """Exit non-zero if the models and the migrations differ."""
    migrate.check(settings().sqlalchemy_url)
    click.echo("models and migrations agree")


@click.group()
def user() -> None:
    """Manage accounts."""


@user.command("add")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(values(Role)),
              help="May be given several times.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--non-scientist", is_flag=True, help="Committee composition: a non-scientist member.")
@click.option("--external", is_flag=True, help="Committee composition: not affiliated with the institution.")
@transactional
def user_add(email: str, name: str, roles: tuple[str, ...], password_stdin: bool, non_scientist: bool,
             external: bool) -> None:
    """Add a user. Without --password-stdin a random password is generated and shown once."""
    import secrets

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        check_password_strength(password)
        generated = False
    else:
        password, generated = secrets.token_urlsafe(12), True
    created = create_user(get_session(), email=email, name=name, roles=list(roles), password=password, actor=None,
                          is_scientist=not non_scientist, is_affiliated=not external)
    click.echo(f"user {created.id} {created.email} ({', '.join(sorted(roles))})")
    if generated:
        click.echo(f"password (shown once): {password}")


@click.group()
def submission() -> None:
    """Inspect cases."""


def _submission_row(session, s: Submission) -> dict:
    deployment = session.get(Deployment, s.deployment_id)
    version = session.get(ModelVersion, s.model_version_id)
    return {"id": s.id, "title": s.title, "kind": s.kind, "state": s.state, "pathway": s.pathway,
            "materiality": s.materiality, "deployment": {"id": deployment.id, "name": deployment.name,
                                                         "status": deployment.status},
            "model_version": {"id": version.id, "label": version.version_label,
                              "weights_digest": version.weights_digest},
            "round": s.round, "lock_version": s.lock_version, "updated_at": s.updated_at.isoformat()}


@submission.command("list")
@click.option("--state", type=click.Choice(values(SubmissionState)))
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def submission_list(state: str | None, as_json: bool) -> None:
    session = get_session()
    query = select(Submission).order_by(Submission.id)
    if state:
        query = query.where(Submission.state == state)
    rows = [_submission_row(session, s) for s in session.execute(query).scalars()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['state']:<26} {r['kind']:<11} {(r['pathway'] or '-'):<16} {r['title']}")


@submission.command("show")
@click.argument("submission_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def submission_show(submission_id: int, as_json: bool) -> None:
    session = get_session()
    found = session.get(Submission, submission_id)
    if found is None:
        raise GovernanceError(f"no submission {submission_id}")
    data = _submission_row(session, found)
    classification = queries.latest_classification(session, found)
    audit = queries.latest_audit(session, found)
    data["classification"] = classification.result if classification else None
    data["audit"] = {"id": audit.id, "status": audit.status, "verdict": audit.verdict, "backend": audit.backend,
                     "demo": audit.demo, "items_done": audit.items_done, "items_total": audit.items_total,
                     "reasons": audit.verdict_reasons} if audit else None
    data["events"] = [{"seq": e.seq, "at": eventlog.format_timestamp(e.occurred_at), "name": e.name,
                       "actor": e.actor, "from": e.from_state, "to": e.to_state, "payload": e.payload}
                      for e in eventlog.events_for_submission(session, found.id)]
    data["possible_events"] = [t.event for t in SUBMISSIONS.available(found.state)]
    if as_json:
        echo_json(data)
        return
    click.echo(f"#{data['id']} {data['title']}")
    click.echo(f"  state {data['state']}, kind {data['kind']}, pathway {data['pathway'] or '-'}, round {data['round']}")
    click.echo(f"  deployment {data['deployment']['name']} ({data['deployment']['status']}), version "
               f"{data['model_version']['label']} {data['model_version']['weights_digest'][:16]}…")
    if classification:
        r = classification.result
        click.echo(f"  NMPA {r['nmpa']['status']} (review as {r['nmpa']['review_as_class'] or '-'}), FDA "
                   f"{r['fda_cds']['status']}, EU MDR {r['eu_mdr']['status']}")
    if audit:
        click.echo(f"  audit #{audit.id} {audit.status} {audit.verdict or ''}")
    click.echo(f"  possible events: {', '.join(data['possible_events']) or 'none'}")
    for e in data["events"]:
        click.echo(f"  {e['seq']:>6} {e['at']} {e['name']} by {e['actor']}"
                   + (f" ({e['from']} → {e['to']})" if e['from'] != e['to'] and e['to'] else ""))


@click.command("fire")
@click.argument("submission_id", type=int)
@click.argument("event")
@click.option("--as", "as_email", required=True, help="E-mail of the acting user.")
@click.option("--data", "data_json", help="The event's fields as a JSON object.")
@transactional
def fire_command(submission_id: int, event: str, as_email: str, data_json: str | None) -> None:
    """Drive the workflow from the shell: fire EVENT on a case as a user."""
    session = get_session()
    found = session.get(Submission, submission_id)
    if found is None:
        raise GovernanceError(f"no submission {submission_id}")
    actor = user_by_email(as_email)
    before = found.state
    recorded = fire(session, found, event, actor, parse_json_option(data_json, "--data"), settings=settings())
    click.echo(f"#{found.id}: {event} ({before} → {found.state}); event {recorded.seq} {recorded.hash[:16]}…")


@click.group()
def workflow() -> None:
    """The declared workflow."""


@workflow.command("diagram")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "svg", "dot"]), default="mermaid", show_default=True)
@click.option("--machine", type=click.Choice(sorted(MACHINES)), default="submission", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file (default stdout).")
def workflow_diagram(fmt: str, machine: str, out: Path | None) -> None:
    """Write the state machine as Mermaid, Graphviz DOT, or SVG (needs graphviz's dot)."""
    chosen = MACHINES[machine]
    if fmt == "mermaid":
        text = mermaid(chosen)
    elif fmt == "dot":
        text = graphviz_dot(chosen)
    else:
        dot = shutil.which("dot")
        if dot is None:
            raise GovernanceError("SVG needs graphviz (apt-get install graphviz); or use --format mermaid")
        text = subprocess.run([dot, "-Tsvg"], input=graphviz_dot(chosen), capture_output=True, text=True,
                              check=True).stdout
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)

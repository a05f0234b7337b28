"""``govern keys …`` and ``govern dossier …``: the signing key, and signed dossiers."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from ..db import get_session
from ..dossier import keys as signing_keys
from ..dossier.verify import verify
from ..models import Dossier, Submission
from ..operations import GovernanceError
from ..operations.dossiers import absolute_path, emit, emit_pending, pending
from .common import echo_json, settings, transactional


@click.group()
def keys() -> None:
    """The institution's signing key."""


@keys.command("init")
@click.option("--force", is_flag=True, help="Replace an existing key (earlier dossiers keep verifying with the "
                                            "old certificate only if relying parties keep it).")
@with_appcontext
def keys_init(force: bool) -> None:
    """Create the self-signed institution certificate and its passphrase-protected key."""
    where = signing_keys.init_keys(settings(), force=force)
    certificate = signing_keys.load_certificate(settings())
    click.echo(f"signing key {where.pkcs12}; certificate {where.certificate}; "
               f"sha256 fingerprint {signing_keys.fingerprint(certificate)}")


@keys.command("export-cert")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def keys_export(out: Path) -> None:
    """Write the signing certificate (PEM) for relying parties."""
    signing_keys.export_certificate(settings(), out)
    click.echo(f"wrote {out}")


@click.group()
def dossier() -> None:
    """Signed PDF dossiers."""


def _trust_roots(extra: tuple[Path, ...]) -> list:
    roots: list = list(extra) + [Path(p) for p in settings().trust_roots]
    try:
        roots.append(signing_keys.load_certificate(settings()))
    except signing_keys.SigningKeyError:
        pass  # verifying elsewhere: only the roots given count
    return roots


@dossier.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also trust this certificate (PEM or DER); may be repeated.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def dossier_verify(files: tuple[Path, ...], trust: tuple[Path, ...], as_json: bool) -> None:
    """Verify signature, coverage, trust, embedded evidence and (when stored here) the recorded sha256."""
    roots = _trust_roots(trust)
    reports = []
    for path in files:
        record = _record_for(path)
        report = verify(path, roots, expected_sha256=record.sha256 if record else None)
        report.details["stored_record"] = record.id if record else None
        reports.append(report)
    if as_json:
        echo_json([r.as_dict() for r in reports] if len(reports) > 1 else reports[0].as_dict())
    else:
        for report in reports:
            if report.ok:
                click.echo(f"{report.path}: valid — signed by {report.details.get('signer')}, whole file covered, "
                           f"evidence intact" + (f", matches stored dossier {report.details['stored_record']}"
                                                 if report.details.get("stored_record") else ""))
            for failure in report.failures:
                click.echo(f"{report.path}: {failure}", err=True)
    if not all(r.ok for r in reports):
        sys.exit(1)


def _record_for(path: Path) -> Dossier | None:
    """The stored record of a dossier kept in this instance, found by its location or its sha256."""
    import hashlib

    session = get_session()
    root = (settings().instance_path / "dossiers").resolve()
    resolved = path.resolve()
    if resolved.is_relative_to(root):
        found = session.execute(select(Dossier).where(Dossier.path == resolved.relative_to(root).as_posix())).scalars().first()
        if found is not None:
            return found
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return session.execute(select(Dossier).where(Dossier.sha256 == digest)).scalars().first()


@dossier.command("list")
@click.option("--submission", "submission_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def dossier_list(submission_id: int | None, as_json: bool) -> None:
    query = select(Dossier).order_by(Dossier.id)
    if submission_id is not None:
        query = query.where(Dossier.submission_id == submission_id)
    rows = [{"id": d.id, "submission": d.submission_id, "meeting": d.meeting_id, "gate": d.gate, "path": str(absolute_path(settings(), d)),
             "sha256": d.sha256, "created_at": d.created_at.isoformat(), "pages": d.page_count,
             "signer_fingerprint": d.signer_fingerprint} for d in get_session().execute(query).scalars()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        about = f"meeting {r['meeting']:>7}" if r["submission"] is None else f"submission {r['submission']:>4}"
        click.echo(f"{r['id']:>4} {about} {r['gate']:<18} {r['pages']:>3} pages "
                   f"{r['sha256'][:16]}…  {r['path']}")


@dossier.command("emit")
@click.argument("submission_id", type=int)
@click.option("--gate", type=click.Choice(["audit", "decision", "suspension", "continuing_review", "letter"]),
              required=True, help="The gate; 'letter' writes the decision letter to the submitter.")
@transactional
def dossier_emit(submission_id: int, gate: str) -> None:
    """Render and sign a new dossier now (re-rendering never overwrites an earlier one)."""
    found = get_session().get(Submission, submission_id)
    if found is None:
        raise GovernanceError(f"no submission {submission_id}")
    created = emit(get_session(), settings(), found, gate)
    click.echo(f"dossier {created.id}: {absolute_path(settings(), created)}")


@dossier.command("pending")
@click.option("--emit", "do_emit", is_flag=True, help="Emit them now.")
@with_appcontext
def dossier_pending(do_emit: bool) -> None:
    """Gate events whose dossier has not been emitted yet (e.g. after a crash)."""
    session = get_session()
    if do_emit:
        for created in emit_pending(session, settings()):
            click.echo(f"dossier {created.id}: submission {created.submission_id} {created.gate}")
        return
    for submission_id, seq, gate in pending(session):
        click.echo(f"submission {submission_id} event {seq} ({gate})")

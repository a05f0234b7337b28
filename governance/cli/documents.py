"""Documents attached as evidence, from the shell (what the pages' upload form does)."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from .common import echo_json, settings, transactional, user_by_email

SUBJECT_OPTIONS = ("case", "deployment", "obligation", "condition", "incident")
_SUBJECT_TYPES = {"case": "submission", "deployment": "deployment", "obligation": "obligation_status",
                  "condition": "approval_condition", "incident": "incident"}


def _subject_option(function):
    for name in reversed(SUBJECT_OPTIONS):
        function = click.option(f"--{name}", f"{name}_id", type=int, default=None,
                                help=f"The {name}'s id (give exactly one of the five).")(function)
    return function


def _subject(**ids):
    from ..db import get_session
    from ..operations.documents import find_subject

    given = [(name, value) for name, value in ids.items() if value is not None]
    if len(given) != 1:
        raise click.UsageError(f"give exactly one of --{', --'.join(SUBJECT_OPTIONS)}")
    name, value = given[0]
    return find_subject(get_session(), _SUBJECT_TYPES[name.removesuffix("_id")], value)


def _row(document) -> dict:
    return {"id": document.id, "subject_type": document.subject_type, "subject_id": document.subject_id,
            "doc_type": document.doc_type, "filename": document.filename, "version": document.version,
            "media_type": document.media_type, "size": document.size, "sha256": document.sha256,
            "uploaded_by_id": document.uploaded_by_id, "created_at": document.created_at.isoformat(),
            "note": document.note}


@click.group()
def document() -> None:
    """Documents attached as evidence: attach a file to a case, deployment, obligation, condition or incident (the
    same type and name again is its next version), list them."""


@document.command("attach")
@_subject_option
@click.option("--type", "doc_type", required=True, help="A type from checklists/documents/, or 'other'.")
@click.option("--as", "email", required=True, help="Who attaches it (the owner, the submitter, or the IRB office).")
@click.option("--note", default="")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@transactional
def document_attach(doc_type: str, email: str, note: str, file: Path, **ids) -> None:
    """Attach FILE (its type judged from its content; a name that contradicts it is refused)."""
    from ..db import get_session
    from ..operations.documents import attach_document

    subject = _subject(**ids)
    limit = settings().document_max_bytes
    with file.open("rb") as handle:
        data = handle.read(limit + 1)
    attached = attach_document(get_session(), settings(), subject, doc_type=doc_type, filename=file.name, data=data,
                               actor=user_by_email(email), note=note)
    click.echo(f"document {attached.id}: {attached.filename} version {attached.version} ({attached.media_type}, "
               f"{attached.size} bytes) sha256 {attached.sha256}")


@document.command("list")
@_subject_option
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def document_list(as_json: bool, **ids) -> None:
    """The documents attached to one case, deployment, obligation, condition or incident, every version; for a
    case, its deployment's too (what its dossier lists)."""
    from ..db import get_session
    from ..operations.documents import documents_of
    from ..queries import case_documents

    subject = _subject(**ids)
    rows = [_row(d) for d in (case_documents(get_session(), subject.submission) if subject.submission is not None
                              else documents_of(get_session(), subject))]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']:>5}  {row['subject_type']} {row['subject_id']}  {row['doc_type']:<24} "
                   f"v{row['version']} {row['filename']}  {row['size']} bytes  {row['sha256']}")

"""Documents on the case and deployment pages: the upload form (CSRF, the request body allowed up to a document's
size), the list with versions and hashes, and the download (role-checked, as an attachment, never sniffed)."""

from __future__ import annotations

import io

from flask import Blueprint, abort, current_app, flash, redirect, send_file, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select

from ..db import get_session
from ..documents.detect import DocumentRefused
from ..documents.required import DocumentTypes, load_document_types
from ..documents.storage import StoredDocumentCorrupt
from ..errors import GovernanceError, NotPermitted
from ..inputs import accepts_documents
from ..models import ApprovalCondition, Deployment, Document, Incident, ObligationStatus, Submission, User
from ..operations.documents import attach_document, document_bytes, find_subject, subject_of
from ..permissions import (can_see, can_see_incident, deployment_visibility_clause, may_attach_document,
                           may_read_document)
from .access import me
from .forms import DeploymentDocumentForm, DocumentForm
from .i18n import page_language
from .vocabulary import say

bp = Blueprint("documents", __name__)


def document_types() -> DocumentTypes:
    return load_document_types(current_app.config["GOVERNANCE"].checklists_dir)


def document_form(types: DocumentTypes | None = None) -> DocumentForm:
    return DocumentForm(types or document_types(), page_language())


def may_attach(record) -> bool:
    """Whether the signed-in user may attach documents to ``record`` (shows the form)."""
    subject = subject_of(get_session(), record)
    return may_attach_document(get_session(), me(), subject.deployment, submission=subject.submission,
                               incident=subject.incident)


def readable(documents: list[Document]) -> list[Document]:
    """``documents`` without those of incidents the signed-in user may not see (an incident's documents follow
    the incident's visibility, narrower than its deployment's)."""
    session = get_session()
    hidden = {d.subject_id for d in documents if d.subject_type == "incident"}
    hidden -= {i for i in hidden if can_see_incident(session, me(), session.get(Incident, i))}
    return [d for d in documents if not (d.subject_type == "incident" and d.subject_id in hidden)]


def uploaders(documents: list[Document]) -> dict[int, str]:
    ids = {d.uploaded_by_id for d in documents}
    if not ids:
        return {}
    return dict(get_session().execute(select(User.id, User.name).where(User.id.in_(ids))).all())


def deployment_subjects(deployment: Deployment) -> list[tuple[str, str]]:
    """What a document may be attached to from the deployment's page: the deployment, its conditions of approval,
    its obligations (``type:id`` and a label)."""
    session = get_session()
    conditions = session.execute(select(ApprovalCondition).where(ApprovalCondition.deployment_id == deployment.id)
                                 .order_by(ApprovalCondition.id)).scalars()
    obligations = session.execute(select(ObligationStatus).where(ObligationStatus.deployment_id == deployment.id)
                                  .order_by(ObligationStatus.obligation_id)).scalars()
    return [(f"deployment:{deployment.id}", _("the deployment")),
            *((f"approval_condition:{c.id}", _("condition %(number)s: %(text)s", number=c.number, text=c.text[:80]))
              for c in conditions),
            *((f"obligation_status:{o.id}", _("obligation %(id)s", id=o.obligation_id)) for o in obligations)]


def deployment_document_form(deployment: Deployment) -> DeploymentDocumentForm:
    return DeploymentDocumentForm(document_types(), page_language(), deployment_subjects(deployment))


def attach_uploaded(record, back: str, form: DocumentForm | None = None):
    """Attach the posted file to ``record`` (or to the subject ``form`` names, one of the deployment's) and go back
    to ``back`` saying what happened."""
    session = get_session()
    settings = current_app.config["GOVERNANCE"]
    form = form or document_form()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return redirect(back, code=303)
    upload = form.file.data
    data = upload.read(settings.document_max_bytes + 1)
    if isinstance(form, DeploymentDocumentForm):
        subject_type, _colon, subject_id = form.subject.data.partition(":")
        subject = find_subject(session, subject_type, int(subject_id))
        if subject.deployment.id != record.id:
            abort(400)
        record = subject
    try:
        document = attach_document(session, settings, record, doc_type=form.doc_type.data,
                                   filename=upload.filename or "", data=data, actor=me(), note=form.note.data or "")
    except NotPermitted:
        raise  # the app's handler: rolled back, 403
    except DocumentRefused as exc:
        session.rollback()
        flash(_("%(file)s was not stored: %(reason)s", file=exc.filename, reason=say(exc.reason)), "error")
        return redirect(back, code=303)
    except GovernanceError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(back, code=303)
    flash(_("%(file)s attached as version %(version)s (sha256 %(digest)s).", file=document.filename,
            version=document.version, digest=document.sha256[:12]), "success")
    return redirect(back, code=303)


@bp.post("/submissions/<id:submission_id>/documents")
@accepts_documents
@login_required
def attach_to_case(submission_id: int):
    case = get_session().get(Submission, submission_id)
    if case is None or not can_see(get_session(), me(), case):
        abort(404)
    return attach_uploaded(case, url_for("cases.show", submission_id=case.id, _anchor="documents"))


@bp.post("/deployments/<id:deployment_id>/documents")
@accepts_documents
@login_required
def attach_to_deployment(deployment_id: int):
    session = get_session()
    visible = deployment_visibility_clause(session, me())
    deployment = session.execute(select(Deployment).where(Deployment.id == deployment_id, visible)).scalars().first()
    if deployment is None:
        abort(404)
    return attach_uploaded(deployment, url_for("deployments.show", deployment_id=deployment.id, _anchor="documents"),
                           deployment_document_form(deployment))


@bp.get("/documents/<id:document_id>")
@login_required
def download(document_id: int):
    session = get_session()
    document = session.get(Document, document_id)
    if document is None:
        abort(404)
    deployment = session.get(Deployment, document.deployment_id)
    case = session.get(Submission, document.submission_id) if document.submission_id else None
    incident = session.get(Incident, document.subject_id) if document.subject_type == "incident" else None
    if not may_read_document(session, me(), deployment, case, incident):
        abort(404)
    try:
        data = document_bytes(current_app.config["GOVERNANCE"], document)
    except StoredDocumentCorrupt:
        current_app.logger.error("document %s: the stored bytes do not match the recorded sha256", document.id)
        abort(409, description=_("The stored file does not match its recorded sha256; it is not served."))
    response = send_file(io.BytesIO(data), mimetype=document.media_type, as_attachment=True,
                         download_name=document.filename, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response

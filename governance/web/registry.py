"""Compliance: the registry of every AI system and version, exports, obligations, and the event log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import threading
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from .. import eventlog, queries
from ..classification.rules import load_ruleset
from ..db import get_db, get_session
from ..domain import Role
from ..models import Classification, Deployment, Event, ModelVersion, ObligationStatus, Submission, User
from ..operations import GovernanceError
from ..operations.cases import record_obligation_status
from ..workflow import DeploymentStatus
from .access import me, require_roles
from .forms import ObligationForm
from .listing import paginate
from .vocabulary import words

bp = Blueprint("registry", __name__)
REGISTRY_ROLES = (Role.COMPLIANCE_OFFICER, Role.IRB_CHAIR, Role.ADMIN)
FILTERS = ("status", "nmpa_status", "scenario")


def _latest_classification(deployment_ids: list[int] | None = None):
    """The latest classification per deployment (over all its cases), as a subquery; ``deployment_ids`` limits it
    to those deployments."""
    latest = (select(Submission.deployment_id, func.max(Classification.id).label("classification_id"))
              .join(Classification, Classification.submission_id == Submission.id))
    if deployment_ids is not None:
        latest = latest.where(Submission.deployment_id.in_(deployment_ids))
    return latest.group_by(Submission.deployment_id).subquery()


def _filtered(query):
    for name in FILTERS:
        value = request.args.get(name)
        if not value:
            continue
        column = {"status": Deployment.status, "nmpa_status": Classification.nmpa_status,
                  "scenario": Deployment.scenario}[name]
        query = query.where(column == value)
    return query


def _page_keys():
    """The deployments the filters select, without their details: the page is cut from these, and only its rows
    are joined to their versions, classifications and obligations."""
    query = select(Deployment.id)
    if request.args.get("nmpa_status"):
        latest = _latest_classification()
        query = (query.outerjoin(latest, latest.c.deployment_id == Deployment.id)
                 .outerjoin(Classification, Classification.id == latest.c.classification_id))
    return _filtered(query)


def registry_query(deployment_ids: list[int] | None = None):
    """The registry's rows: every deployment the filters select, or exactly ``deployment_ids`` (unfiltered)."""
    latest = _latest_classification(deployment_ids)
    open_obligations = (select(func.count(ObligationStatus.id)).where(ObligationStatus.deployment_id == Deployment.id,
                                                                     ObligationStatus.status == "open")
                        .correlate(Deployment).scalar_subquery())
    versions = (select(func.count(ModelVersion.id)).where(ModelVersion.deployment_id == Deployment.id)
                .correlate(Deployment).scalar_subquery())
    query = (select(Deployment, ModelVersion.version_label, ModelVersion.weights_digest, User.name.label("owner"),
                    Classification.nmpa_status, Classification.review_as_class, Classification.pathway,
                    Classification.result, open_obligations.label("open_obligations"), versions.label("versions"))
             .join(User, User.id == Deployment.owner_id)
             .outerjoin(ModelVersion, ModelVersion.id == Deployment.approved_version_id)
             .outerjoin(latest, latest.c.deployment_id == Deployment.id)
             .outerjoin(Classification, Classification.id == latest.c.classification_id))
    if deployment_ids is not None:
        return query.where(Deployment.id.in_(deployment_ids))
    return _filtered(query)


SORTS = {"name": Deployment.name, "status": Deployment.status, "due": Deployment.continuing_review_due,
         "updated": Deployment.updated_at}


EXPORT_COLUMNS = ("deployment_id", "name", "scenario", "status", "owner", "approved_version", "weights_digest",
                  "nmpa_status", "review_as_class", "pathway", "fda_cds", "eu_mdr", "eu_mdr_class",
                  "eu_ai_act_high_risk", "obligations", "open_obligations", "model_versions", "continuing_review_due",
                  "registered")
#: A cell a spreadsheet would read as a formula (OWASP, CSV injection): =, +, -, @, tab, carriage return.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value):
    """A CSV cell no spreadsheet evaluates: text that would start a formula is prefixed with a quote (XLSX cells
    are typed as strings instead)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _rows_for_export(session) -> list[tuple]:
    rows = session.execute(registry_query().order_by(Deployment.name)).all()
    records = []
    for row in rows:
        d = row.Deployment
        result = row.result or {}
        records.append((
            d.id, d.name, d.scenario, d.status, row.owner, row.version_label, row.weights_digest, row.nmpa_status,
            row.review_as_class, row.pathway, (result.get("fda_cds") or {}).get("status"),
            (result.get("eu_mdr") or {}).get("status"), (result.get("eu_mdr") or {}).get("class"),
            (result.get("eu_ai_act") or {}).get("high_risk"),
            ", ".join(o["id"] for o in result.get("obligations", [])), row.open_obligations, row.versions,
            d.continuing_review_due.isoformat() if d.continuing_review_due else None,
            d.created_at.isoformat(timespec="seconds")))
    return records


@bp.get("/registry")
@require_roles(*REGISTRY_ROLES)
def index():
    session = get_session()
    page = paginate(session, _page_keys(), SORTS, "name")
    ids = [row.id for row in page.rows]
    details = {row.Deployment.id: row for row in session.execute(registry_query(ids))} if ids else {}
    page.rows = [details[deployment_id] for deployment_id in ids]
    scenarios = session.execute(select(Deployment.scenario).distinct().order_by(Deployment.scenario)).scalars().all()
    return render_template("registry/index.html", page=page, statuses=[s.value for s in DeploymentStatus],
                           scenarios=scenarios, filters={k: request.args.get(k, "") for k in FILTERS})


@bp.get("/registry.csv")
@require_roles(*REGISTRY_ROLES)
def export_csv():
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(("" if v is None else inert(v) for v in row) for row in _rows_for_export(get_session()))
    buffer = io.BytesIO(text.getvalue().encode("utf-8-sig"))  # the BOM makes Excel read the file as UTF-8
    return send_file(buffer, mimetype="text/csv", as_attachment=True, download_name="ai-registry.csv")


@bp.get("/registry/<id:deployment_id>/modelcard.<any(xml, json):ext>")
@require_roles(*REGISTRY_ROLES)
def model_card(deployment_id: int, ext: str):
    """The Applied Model Card (CHAI schema v0.2, validated against the vendored XSD) of the approved version, for
    the hospital to hand to others; ``?version=`` names another approved version."""
    from ..modelcard import export

    deployment = get_session().get(Deployment, deployment_id)
    if deployment is None:
        abort(404)
    try:
        label, document = export(get_session(), current_app.config["GOVERNANCE"], deployment,
                                 request.args.get("version") or None, "chai-xml" if ext == "xml" else "json")
    except GovernanceError as exc:
        flash(str(exc), "error")
        return redirect(url_for("registry.index"), code=303)
    name = f"modelcard-{deployment.id}-{label}.{ext}".replace("/", "_")
    return send_file(io.BytesIO(document), mimetype="application/xml" if ext == "xml" else "application/json",
                     as_attachment=True, download_name=name)


@bp.get("/registry.xlsx")
@require_roles(*REGISTRY_ROLES)
def export_xlsx():
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("AI registry")
    sheet.append(EXPORT_COLUMNS)

    def cell(value):
        if not isinstance(value, str):
            return value
        written = WriteOnlyCell(sheet, value=value)
        written.data_type = "s"  # a string cell, never a formula, whatever the text starts with
        return written

    for row in _rows_for_export(get_session()):
        sheet.append([cell(value) for value in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    buffer.seek(0)
    return send_file(buffer, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     as_attachment=True, download_name="ai-registry.xlsx")


@bp.get("/registry/rules-impact")
@require_roles(*REGISTRY_ROLES)
def rules_impact():
    """After a rules upgrade: the deployments whose classification the deployed rules change, and why."""
    ruleset = load_ruleset(current_app.config["GOVERNANCE"].regulations_dir)
    return render_template("registry/rules_impact.html", ruleset=ruleset,
                           rows=queries.rules_impact_since_classified(get_session(), ruleset))


@bp.post("/deployments/<id:deployment_id>/obligations")
@require_roles(Role.COMPLIANCE_OFFICER, Role.IRB_CHAIR)
def obligation(deployment_id: int):
    session = get_session()
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        abort(404)
    form = ObligationForm()
    if form.validate_on_submit():
        try:
            record_obligation_status(session, deployment, form.obligation_id.data, form.status.data,
                                     evidence=form.evidence.data or "", reference=form.reference.data or "", actor=me())
        except GovernanceError as exc:
            session.rollback()
            flash(str(exc), "error")
        else:
            flash(_("Obligation %(id)s recorded as %(status)s.", id=form.obligation_id.data,
                    status=words(form.status.data)), "success")
    else:
        flash(_("Not recorded: %(errors)s", errors=form.errors), "error")
    return redirect(request.referrer or url_for("deployments.show", deployment_id=deployment.id), code=303)


CHECKPOINT_FILE = "chain-verified.json"


class ChainStatus:
    """Incremental verification of the event log, shared by this process: each call checks only what was
    appended since the last one (a full pass over 100,000 events takes seconds).

    The point verified so far is also kept in ``checkpoints`` (a file in the instance folder), so that a new process
    (a restarted or an added worker) resumes from it rather than starting over, provided the log still holds that
    hash at that sequence number; otherwise it verifies from the first event. "Verify again" (``full``) always
    starts from the first event."""

    def __init__(self):
        self.lock = threading.Lock()
        self.verified: dict[str, tuple[int, str]] = {}  # database url -> (seq, hash) verified so far
        self.failure: dict[str, eventlog.ChainReport] = {}

    def check(self, session, url: str, full: bool = False, checkpoints: Path | None = None) -> eventlog.ChainReport:
        with self.lock:
            if full:
                self.verified.pop(url, None)
                self.failure.pop(url, None)
            if url in self.failure:
                return self.failure[url]
            start = self.verified.get(url) or (None if full else self._resume(session, url, checkpoints)) \
                or (0, eventlog.GENESIS_HASH)
            report = eventlog.verify_chain(session, start_seq=start[0], start_hash=start[1])
            if report.ok:
                self.verified[url] = (start[0] + report.count, report.head_hash)
                if checkpoints is not None and self.verified[url] != start:
                    self._save(url, checkpoints)
                return eventlog.ChainReport(True, start[0] + report.count, report.head_hash)
            self.failure[url] = report
            return report

    @staticmethod
    def _key(url: str) -> str:
        return hashlib.sha256(url.encode("utf-8")).hexdigest()  # never the URL itself: it may hold a password

    def _resume(self, session, url: str, checkpoints: Path | None) -> tuple[int, str] | None:
        try:
            seq, digest = json.loads(checkpoints.read_text())[self._key(url)]
        except (AttributeError, OSError, ValueError, KeyError, TypeError):
            return None
        held = session.execute(select(Event.hash).where(Event.seq == seq)).scalar()
        return (int(seq), digest) if held == digest else None

    def _save(self, url: str, checkpoints: Path) -> None:
        try:
            known = json.loads(checkpoints.read_text())
        except (OSError, ValueError):
            known = {}
        known = known if isinstance(known, dict) else {}
        known[self._key(url)] = list(self.verified[url])
        partial = checkpoints.with_name(f".{checkpoints.name}.{os.getpid()}")
        try:
            partial.write_text(json.dumps(known))
            os.replace(partial, checkpoints)  # other workers read either the old or the new file
        except OSError:
            pass  # a read-only instance folder: each process verifies from the first event, as before


chain_status = ChainStatus()


@bp.get("/events")
@require_roles(*REGISTRY_ROLES)
def events():
    session = get_session()
    query = select(Event)
    name = request.args.get("name")
    if name:
        query = query.where(Event.name == name)
    page = paginate(session, query, {"seq": Event.seq, "name": Event.name}, "seq", per_page=50)
    report = chain_status.check(session, get_db().url, full=request.args.get("verify") == "full",
                                checkpoints=current_app.config["GOVERNANCE"].instance_path / CHECKPOINT_FILE)
    return render_template("registry/events.html", page=page, report=report, name=name or "")

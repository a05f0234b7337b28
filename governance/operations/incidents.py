"""Incidents with an AI system: reported by clinicians, or opened by a re-audit (regression) or an
integrity check (digest mismatch).

A report is recorded with its event; a severity the monitoring policy names suspends the deployment at
once (until the chair reinstates it); an incident case opens in the IRB office's intake with its own
pathway, audit and dossier; on a medical-device deployment the report to the national adverse-event
system becomes an obligation whose reference number must be recorded before the case is decided.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from .. import eventlog
from ..config import Settings
from ..domain import IncidentSource, Role, Severity, SubmissionKind, SuspensionCause
from ..models import Deployment, Incident, ModelVersion, Submission, User, utcnow
from ..notify import notify, people_with_roles
from ..monitoring.policy import load_monitoring
from ..workflow import DeploymentStatus
from .cases import open_submission
from .engine import GovernanceError, fire

SEVERITIES = tuple(s.value for s in Severity)
#: Deployments incidents may be reported on (a retired system is no longer in use).
REPORTABLE = {DeploymentStatus.PENDING, DeploymentStatus.ACTIVE, DeploymentStatus.SUSPENDED, DeploymentStatus.EXPIRED}


def adverse_event_due(settings: Settings, deployment: Deployment, severity: str, patient_harmed: bool,
                      reported_at: datetime) -> datetime | None:
    """When the national adverse-event report is due, or None when this incident needs none."""
    if deployment.nmpa_status != "device":
        return None
    rule = load_monitoring(settings.regulations_dir).incidents.adverse_event_report
    if severity not in rule.severities and not (rule.when_patient_harmed and patient_harmed):
        return None
    return reported_at + timedelta(days=rule.report_within_days.get(severity, 30))


def report_incident(session: Session, settings: Settings, *, deployment: Deployment, severity: str,
                    what_happened: str, reporter: User | None, model_version: ModelVersion | None = None,
                    patient_harmed: bool = False, deidentified_example: str = "",
                    occurred_at: datetime | None = None, source: str = IncidentSource.CLINICIAN.value,
                    now: datetime | None = None) -> Incident:
    """Record an incident, suspend when its severity requires it, and open its review case (flushed)."""
    now = now or utcnow()
    if severity not in SEVERITIES:
        raise GovernanceError(f"severity must be one of {', '.join(SEVERITIES)}, got '{severity}'")
    if not what_happened.strip():
        raise GovernanceError("say what happened: the description of the incident is required")
    if deployment.status not in REPORTABLE:
        raise GovernanceError(f"deployment {deployment.id} is {deployment.status}; incidents are reported on "
                              "systems in use")
    if model_version is None:
        if deployment.approved_version_id is None:
            raise GovernanceError(f"deployment {deployment.id} has no approved version: name the model version")
        model_version = session.get(ModelVersion, deployment.approved_version_id)
    elif model_version.deployment_id != deployment.id:
        raise GovernanceError(f"model version {model_version.id} belongs to another deployment")
    if occurred_at is not None and occurred_at.replace(tzinfo=None) > now.replace(tzinfo=None) + timedelta(minutes=5):
        raise GovernanceError("occurred_at is in the future")
    due = adverse_event_due(settings, deployment, severity, patient_harmed, now)
    incident = Incident(deployment_id=deployment.id, model_version_id=model_version.id,
                        reporter_id=reporter.id if reporter else None, source=source, severity=severity,
                        what_happened=what_happened.strip(), patient_harmed=patient_harmed,
                        deidentified_example=deidentified_example.strip(), occurred_at=occurred_at,
                        reported_at=now, adverse_event_required=due is not None)
    session.add(incident)
    session.flush()
    eventlog.append(session, "incident_reported", actor=reporter, deployment_id=deployment.id, payload={
        "incident": incident.id, "source": source, "severity": severity, "patient_harmed": patient_harmed,
        "model_version": model_version.version_label, "weights_digest": model_version.weights_digest,
        "adverse_event_report_due": due.date().isoformat() if due else None}, occurred_at=now)
    policy = load_monitoring(settings.regulations_dir).incidents
    suspended = False
    if severity in policy.suspend_severities and deployment.status == DeploymentStatus.ACTIVE:
        fire(session, deployment, "suspend", None, {
            "reason": f"{severity} incident #{incident.id} reported ({source}): suspended until the chair "
                      "reinstates it", "cause": SuspensionCause.INCIDENT.value}, settings=settings, now=now)
        suspended = True
    case = open_submission(session, kind=SubmissionKind.INCIDENT.value, deployment=deployment,
                           model_version=model_version, submitter=_case_owner(session, deployment),
                           title=f"Incident #{incident.id}: {deployment.name} ({severity})",
                           summary=incident.what_happened, incident_id=incident.id)
    fire(session, case, "file", None, settings=settings, now=now)
    link = f"/incidents/{incident.id}"
    chairs = people_with_roles(session, Role.IRB_CHAIR)
    notify(session, settings, [*chairs, *people_with_roles(session, Role.COMPLIANCE_OFFICER),
                               session.get(User, deployment.owner_id)],
           kind="incident", subject=f"{severity.title()} incident #{incident.id} on {deployment.name}"
                                    + (" — deployment suspended" if suspended else ""),
           body=f"{incident.what_happened}\n\nPatient harmed: {'yes' if patient_harmed else 'no'}. "
                f"Review case #{case.id} is in the IRB office's intake."
                + (f" The national adverse-event report is due by {due.date().isoformat()}." if due else ""),
           link=link, now=now)
    return incident


def _case_owner(session: Session, deployment: Deployment) -> User:
    """The incident case is answered by the deployment's owner (the reporter is recorded on the incident)."""
    return session.get(User, deployment.owner_id)


def record_adverse_event_report(session: Session, incident: Incident, reference: str, *, actor: User) -> None:
    reference = reference.strip()
    if not incident.adverse_event_required:
        raise GovernanceError(f"incident #{incident.id} needs no national adverse-event report")
    if not reference:
        raise GovernanceError("the report number from the national adverse-event monitoring system is required")
    if incident.adverse_event_reference:
        raise GovernanceError(f"incident #{incident.id} already has report number {incident.adverse_event_reference}")
    incident.adverse_event_reference = reference[:200]
    session.flush()
    eventlog.append(session, "adverse_event_reported", actor=actor, deployment_id=incident.deployment_id,
                    payload={"incident": incident.id, "reference": incident.adverse_event_reference})


def incident_case(session: Session, incident: Incident) -> Submission | None:
    return session.execute(select(Submission).where(Submission.incident_id == incident.id)
                           .order_by(Submission.id).limit(1)).scalars().first()

"""Who may see what. Who may *do* what to a case is declared in :mod:`governance.workflow`."""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlmodel import Session

from .domain import Pathway, Role
from .models import Assignment, Deployment, Incident, RoleAssignment, Submission, User
from .workflow import SubmissionState

#: Roles that see every case (the IRB office, compliance, administrators).
OVERSIGHT_ROLES = frozenset({Role.IRB_CHAIR, Role.COMPLIANCE_OFFICER, Role.ADMIN})
#: Full-board members see every full-board case once it is in front of the board.
BOARD_VISIBLE_STATES = frozenset({SubmissionState.IN_REVIEW, SubmissionState.DEFERRED, SubmissionState.APPROVED,
                                  SubmissionState.APPROVED_WITH_CONDITIONS, SubmissionState.REVISIONS_REQUIRED,
                                  SubmissionState.DISAPPROVED})


def roles_of(session: Session, user: User | None) -> frozenset[str]:
    """The user's roles, cached on the instance for the life of the session."""
    if user is None:
        return frozenset()
    user = user._get_current_object() if hasattr(user, "_get_current_object") else user  # Flask-Login's proxy
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_roles_cache", None)
    if cached is None:
        cached = frozenset(session.execute(select(RoleAssignment.role).where(RoleAssignment.user_id == user.id))
                           .scalars())
        object.__setattr__(user, "_roles_cache", cached)
    return cached


def forget_roles(user: User) -> None:
    if hasattr(user, "_roles_cache"):
        object.__delattr__(user, "_roles_cache")


def has_any_role(session: Session, user: User | None, *roles: str) -> bool:
    return bool(roles_of(session, user) & set(roles))


def visibility_clause(session: Session, user: User):
    """A WHERE clause selecting the cases ``user`` may see."""
    roles = roles_of(session, user)
    if roles & OVERSIGHT_ROLES:
        return Submission.id.is_not(None)
    clauses = [Submission.submitter_id == user.id,
               exists().where(Assignment.submission_id == Submission.id, Assignment.reviewer_id == user.id)]
    if Role.IRB_MEMBER in roles:
        clauses.append((Submission.pathway == Pathway.FULL_BOARD.value)
                       & Submission.state.in_([s.value for s in BOARD_VISIBLE_STATES]))
    if Role.CLINICIAN in roles:
        clauses.append(exists().where(Incident.id == Submission.incident_id, Incident.reporter_id == user.id))
    return or_(*clauses)


def can_manage_deployment(session: Session, user: User | None, deployment: Deployment) -> bool:
    """Its owner or the chair registers versions of a deployment, edits it and opens its continuing review."""
    return user is not None and (deployment.owner_id == user.id or Role.IRB_CHAIR in roles_of(session, user))


def deployment_visibility_clause(session: Session, user: User):
    """A WHERE clause selecting the deployments ``user`` may see: their own, those of cases they may see, or
    all of them for the oversight roles."""
    if roles_of(session, user) & OVERSIGHT_ROLES:
        return Deployment.id.is_not(None)
    return or_(Deployment.owner_id == user.id,
               exists().where(Submission.deployment_id == Deployment.id, visibility_clause(session, user)))


def can_see_deployment(session: Session, user: User | None, deployment: Deployment) -> bool:
    if user is None:
        return False
    return session.execute(select(Deployment.id).where(Deployment.id == deployment.id,
                                                       deployment_visibility_clause(session, user))).first() is not None


def can_see(session: Session, user: User | None, submission: Submission) -> bool:
    if user is None:
        return False
    clause = visibility_clause(session, user)
    return session.execute(select(Submission.id).where(Submission.id == submission.id, clause)).first() is not None


#: Roles that attach documents to whatever they can see (the IRB office, the chair, the committees' members).
DOCUMENT_ROLES = frozenset({Role.IRB_CHAIR, Role.COMPLIANCE_OFFICER, Role.IRB_MEMBER, Role.AI_SUBCOMMITTEE_MEMBER})


def may_attach_document(session: Session, user: User | None, deployment: Deployment, *,
                        submission: Submission | None = None, incident: Incident | None = None) -> bool:
    """The deployment's owner, the case's submitter, the incident's reporter, and the :data:`DOCUMENT_ROLES` on
    what they can see attach evidence (the subject is the case when ``submission`` is given)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if deployment.owner_id == user.id or (submission is not None and submission.submitter_id == user.id) or \
            (incident is not None and incident.reporter_id == user.id):
        return True
    if not roles_of(session, user) & DOCUMENT_ROLES:
        return False
    return may_read_document(session, user, deployment, submission, incident)  # what they can see, incidents too


def incident_visibility_clause(session: Session, user: User):
    """A WHERE clause (over Incident joined with its Deployment) selecting the incidents ``user`` may see: all of
    them for the oversight roles; else those they reported or on systems they own."""
    if roles_of(session, user) & OVERSIGHT_ROLES:
        return Incident.id.is_not(None)
    return or_(Incident.reporter_id == user.id, Deployment.owner_id == user.id)


def can_see_incident(session: Session, user: User | None, incident: Incident) -> bool:
    if user is None:
        return False
    return session.execute(select(Incident.id).join(Deployment, Deployment.id == Incident.deployment_id).where(
        Incident.id == incident.id, incident_visibility_clause(session, user))).first() is not None


def may_read_document(session: Session, user: User | None, deployment: Deployment,
                      submission: Submission | None, incident: Incident | None = None) -> bool:
    """A case's documents are read by whoever sees the case, an incident's by whoever sees the incident, the
    others by whoever sees the deployment."""
    if incident is not None:
        return can_see_incident(session, user, incident)
    if submission is not None:
        return can_see(session, user, submission)
    return can_see_deployment(session, user, deployment)

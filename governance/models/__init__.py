"""The data model. Import models from here; each concept lives in its own module."""

from .audits import AuditItemResult, AuditRun, GraderValidation
from .base import NAMING_CONVENTION, utcnow
from .deployments import Deployment, ModelVersion
from .documents import DOCUMENT_SUBJECTS, Document
from .events import Event
from .records import Dossier, Incident, Notification
from .review import (ATTENDANCE_CAPACITIES, AgendaItem, ApprovalCondition, Assignment, ChecklistDraft, ChecklistResponse, Comment, ConflictDeclaration,
                     Decision, Meeting,
                     MeetingAttendance, Vote)
from .simulation import Interaction, LiveWatch, QuerySet, SimulationQuery, SimulationResult
from .submissions import Classification, ObligationStatus, Submission
from .users import ApiToken, RoleAssignment, User

__all__ = [
    "ATTENDANCE_CAPACITIES", "NAMING_CONVENTION", "utcnow", "DOCUMENT_SUBJECTS",
    "AgendaItem", "ApiToken", "ApprovalCondition", "Assignment", "AuditItemResult", "AuditRun", "ChecklistDraft", "ChecklistResponse", "Classification", "Comment",
    "ConflictDeclaration", "Decision", "Deployment", "Document", "Dossier", "Event", "GraderValidation", "Incident", "Interaction",
    "LiveWatch", "Meeting", "MeetingAttendance", "ModelVersion", "Notification", "ObligationStatus", "QuerySet",
    "RoleAssignment", "SimulationQuery", "SimulationResult", "Submission", "User", "Vote",
]

"""Factories: users with roles, deployments from the example descriptors, and cases driven to any state
through the real workflow (every step is a real ``fire`` with its event)."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from governance import queries
from governance.classification.descriptor import load_descriptor
from governance.models import Deployment, Meeting, ModelVersion, Submission, User, utcnow
from governance.operations import TransitionRefused, fire
from governance.operations.cases import add_model_version, open_submission, record_obligation_status, register_deployment
from governance.operations.meetings import create_meeting, record_attendance
from governance.operations.users import create_user

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PASSWORD = "correct horse battery staple"
FAST_TRACK_EXAMPLE = "administrative_assistant"
FULL_BOARD_EXAMPLE = "emr_generation"
_counter = itertools.count(1)


class Factory:
    def __init__(self, app, session, settings=None):
        self.app = app
        self.session = session
        self._settings = settings  # the app's, unless a test sets up with others (inline audits for a live server)
        self._people: dict[str, User] = {}

    @property
    def settings(self):
        return self._settings or self.app.config["GOVERNANCE"]

    # --- people -------------------------------------------------------------------------------------
    def user(self, *roles: str, email: str | None = None, name: str | None = None, scientist: bool = True,
             affiliated: bool = True, password: str = PASSWORD) -> User:
        n = next(_counter)
        created = create_user(self.session, email=email or f"user{n}@test.hospital", name=name or f"Test User {n}",
                              roles=list(roles), password=password, actor=None, is_scientist=scientist,
                              is_affiliated=affiliated)
        self.session.commit()
        return created

    def person(self, key: str) -> User:
        """Named, reused people: submitter, chair, board1..board5, ai1, ai2, compliance, clinician, admin."""
        if key not in self._people:
            spec = {
                "submitter": (("submitter",), True, True), "chair": (("irb_chair", "irb_member"), True, True),
                "board1": (("irb_member",), True, True), "board2": (("irb_member",), True, True),
                "board3": (("irb_member",), False, True), "board4": (("irb_member",), False, False),
                "board5": (("irb_member",), True, False), "ai1": (("ai_subcommittee_member",), True, True),
                "ai2": (("ai_subcommittee_member",), True, True), "compliance": (("compliance_officer",), False, True),
                "clinician": (("clinician",), True, True), "admin": (("admin",), True, True),
            }[key]
            self._people[key] = self.user(*spec[0], email=f"{key}@test.hospital", name=key.title(),
                                          scientist=spec[1], affiliated=spec[2])
        return self._people[key]

    @property
    def board(self) -> list[User]:
        return [self.person(k) for k in ("chair", "board1", "board2", "board3", "board4", "board5")]

    # --- deployments and versions ---------------------------------------------------------------------
    def descriptor(self, example: str, **overrides: Any) -> dict[str, Any]:
        data = load_descriptor(EXAMPLES / f"{example}.yaml").model_dump()
        data.update(overrides)
        return data

    def deployment(self, example: str = FAST_TRACK_EXAMPLE, owner: User | None = None, **overrides: Any) -> Deployment:
        descriptor = self.descriptor(example, **overrides)
        descriptor["name"] = f"{descriptor['name']} #{next(_counter)}"
        created = register_deployment(self.session, descriptor, owner=owner or self.person("submitter"))
        self.session.commit()
        return created

    def version(self, deployment: Deployment, label: str | None = None, endpoint: str = "demo://good",
                **fields: Any) -> ModelVersion:
        label = label or f"v{next(_counter)}"
        defaults = dict(base_model="Qwen2.5-7B-Instruct", architecture="Qwen2ForCausalLM",
                        weights_digest=hashlib.sha256(f"{deployment.id}:{label}".encode()).hexdigest(),
                        finetune_data_categories=["clinical_guidelines"])
        defaults.update(fields)
        created = add_model_version(self.session, deployment, actor=self.person("submitter"), version_label=label,
                                    endpoint=endpoint, **defaults)
        self.session.commit()
        return created

    def submission(self, example: str = FAST_TRACK_EXAMPLE, *, kind: str = "initial", endpoint: str = "demo://good",
                   deployment: Deployment | None = None, version: ModelVersion | None = None,
                   served_model_id: str = "", **descriptor_overrides: Any) -> Submission:
        deployment = deployment or self.deployment(example, **descriptor_overrides)
        version = version or self.version(deployment, endpoint=endpoint, served_model_id=served_model_id)
        created = open_submission(self.session, kind=kind, deployment=deployment, model_version=version,
                                  submitter=self.person("submitter"), title=f"case {next(_counter)}")
        self.session.commit()
        return created

    # --- driving the workflow ---------------------------------------------------------------------------
    def fire(self, submission: Submission, event: str, actor: User | None, *, queue_audits: bool = False,
             **data: Any):
        settings = self.settings.replace(audit_dispatch="queue") if queue_audits else self.settings
        recorded = fire(self.session, submission, event, actor, data, settings=settings)
        self.session.commit()
        self.session.refresh(submission)
        return recorded

    def refused(self, submission: Submission, event: str, actor: User | None, **data: Any):
        """The refusal firing ``event`` meets (the session is rolled back); fails the test if it moves."""
        try:
            fire(self.session, submission, event, actor, data, settings=self.settings)
        except TransitionRefused as refusal:
            self.session.rollback()
            return refusal
        raise AssertionError(f"'{event}' was not refused")

    def meeting(self, present: list[User] | None = None) -> Meeting:
        chair = self.person("chair")
        created = create_meeting(self.session, title=f"Board {next(_counter)}", scheduled_for=utcnow() + timedelta(days=1),
                                 actor=chair)
        for member in (self.board if present is None else present):
            record_attendance(self.session, created, member, present=True, actor=chair)
        self.session.commit()
        return created

    def satisfy_blocking_obligations(self, submission: Submission) -> None:
        deployment = self.session.get(Deployment, submission.deployment_id)
        for obligation in queries.latest_classification(self.session, submission).result["obligations"]:
            if obligation["blocking"]:
                record_obligation_status(self.session, deployment, obligation["id"], "satisfied",
                                         evidence="test evidence", reference="REF-1", actor=self.person("compliance"))
        self.session.commit()

    def checklist_answers(self, submission: Submission, answer: str = "yes") -> dict:
        checklist = queries.checklist_of(self.session, submission, self.settings)
        facts = queries.case_facts(self.session, submission)
        return {item.id: {"answer": answer} for item in checklist.applicable_items(facts)}

    def prepare_reviewer(self, submission: Submission, reviewer: User) -> None:
        self.fire(submission, "declare_conflict", reviewer, has_conflict=False)
        self.fire(submission, "answer_checklist", reviewer, answers=self.checklist_answers(submission))

    def voters(self, submission: Submission) -> list[User]:
        if submission.pathway == "ai_subcommittee":
            return [self.person("ai1"), self.person("ai2")]
        return self.board

    def ready_for_votes(self, submission: Submission) -> None:
        """Assign fast-track reviewers or put a full-board case on a quorate meeting; declare; answer."""
        chair = self.person("chair")
        if submission.pathway == "ai_subcommittee":
            for reviewer in self.voters(submission):
                self.fire(submission, "assign_reviewer", chair, reviewer=reviewer.email)
        else:
            self.fire(submission, "schedule_meeting", chair, meeting=self.meeting().id)
        for reviewer in self.voters(submission):
            self.prepare_reviewer(submission, reviewer)

    def vote_all(self, submission: Submission, meaning: str) -> None:
        for reviewer in self.voters(submission):
            self.fire(submission, "vote", reviewer, meaning=meaning, password=PASSWORD)

    def decide_incident_review(self, deployment: Deployment, outcome: str = "approve") -> Submission:
        """Take the deployment's open incident case through screening and a full-board vote to ``outcome``
        (``approve`` or ``disapprove``): the decision a reinstatement after an incident waits for."""
        case = self.session.execute(select(Submission).where(
            Submission.deployment_id == deployment.id, Submission.kind == "incident", Submission.decided_at.is_(None))
            .order_by(Submission.id.desc()).limit(1)).scalars().one()
        chair = self.person("chair")
        for event in ("start_screening", "accept", "confirm_classification"):
            self.fire(case, event, chair)
        self.ready_for_votes(case)
        self.vote_all(case, outcome)
        fields = {"approve": {}, "disapprove": {"reason": "Continued use is not safe until the dosing logic is replaced."}}
        self.fire(case, outcome, chair, **fields[outcome])
        self.session.commit()
        return case

    def drive(self, submission: Submission, state: str) -> Submission:
        """Move a draft case to ``state`` along the shortest real path."""
        chair, submitter = self.person("chair"), self.person("submitter")
        steps = {
            "submitted": [("submit", submitter, {})],
            "screening": [("submit", submitter, {}), ("start_screening", chair, {})],
            "returned": [("submit", submitter, {}), ("start_screening", chair, {}),
                         ("return_to_submitter", chair, {"reason": "Add the data-protection impact assessment."})],
            "classified": [("submit", submitter, {}), ("start_screening", chair, {}), ("accept", chair, {})],
            "withdrawn": [("withdraw", submitter, {"reason": "No longer needed."})],
        }
        if state == "draft":
            return submission
        if state in steps:
            for event, actor, data in steps[state]:
                self.fire(submission, event, actor, **data)
            return submission
        self.drive(submission, "classified")
        self.fire(submission, "confirm_classification", chair, queue_audits=state == "auditing")
        if state in {"auditing", "held", "in_review"}:
            return submission
        self.ready_for_votes(submission)
        meaning = {"approved": "approve", "approved_with_conditions": "approve_with_conditions",
                   "revisions_required": "require_revisions", "deferred": "defer",
                   "disapproved": "disapprove"}[state]
        self.vote_all(submission, meaning)
        event = {"approved": "approve", "approved_with_conditions": "approve_with_conditions",
                 "revisions_required": "require_revisions", "deferred": "defer", "disapproved": "disapprove"}[state]
        data = {"approved": {}, "approved_with_conditions": {"conditions": "Monthly re-audit."},
                "revisions_required": {"reason": "Fix the failing items."}, "deferred": {"reason": "More data."},
                "disapproved": {"reason": "Unacceptable risk."}}[state]
        if state in {"approved"}:
            self.satisfy_blocking_obligations(submission)
        self.fire(submission, event, chair, **data)
        return submission

    def case_in(self, state: str, example: str | None = None, *, endpoint: str | None = None,
                served_model_id: str = "") -> Submission:
        """A new case in ``state`` (held uses a weak model; disapproved uses a full-board deployment)."""
        if example is None:
            example = FULL_BOARD_EXAMPLE if state == "disapproved" else FAST_TRACK_EXAMPLE
        endpoint = endpoint or ("demo://weak" if state == "held" else "demo://good")
        return self.drive(self.submission(example, endpoint=endpoint, served_model_id=served_model_id), state)

"""Demo data: accounts for every role and cases in several states, built through the real workflow.

Idempotent: accounts, deployments and cases that exist are kept. Demo passwords are random per
instance, kept in ``instance/demo-accounts.json`` (mode 600) and printed; nothing secret is in git.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from flask import Flask
from sqlalchemy import select
from sqlmodel import Session

from . import datafiles, eventlog, queries
from .audit import graders
from .audit.importers import import_many
from .audit.items import load_items, write_items
from .errors import GovernanceError
from .operations.graders import configured_judge, latest_validation, record_validation
from .classification.descriptor import load_descriptor
from .config import PROJECT_ROOT, write_instance_config
from .db import get_db
from .models import AuditRun, Deployment, Incident, Meeting, ModelVersion, Submission, User, utcnow
from .scheduler.reaudit import start_reaudit
from .operations import fire
from .operations.cases import add_model_version, open_submission, record_obligation_status, register_deployment
from .operations.incidents import report_incident
from .operations.meetings import create_meeting, record_attendance
from .operations.users import create_user, find_user

ACCOUNTS_FILE = "demo-accounts.json"
EXAMPLES = PROJECT_ROOT / "examples"

#: (email, name, Chinese name, roles, is_scientist, is_affiliated)
PEOPLE = [
    ("chair@demo.hospital", "Dr. Chen Li", "陈立", ["irb_chair", "irb_member"], True, True),
    ("wang.fang@demo.hospital", "Prof. Wang Fang", "王芳", ["irb_member"], True, True),
    ("zhao.min@demo.hospital", "Dr. Zhao Min", "赵敏", ["irb_member"], True, True),
    ("liu.yang@demo.hospital", "Liu Yang (lawyer)", "刘洋", ["irb_member"], False, True),
    ("sun.hui@demo.hospital", "Sun Hui (community member)", "孙慧", ["irb_member"], False, False),
    ("huang.wei@demo.hospital", "Dr. Huang Wei (external ethicist)", "黄伟", ["irb_member"], True, False),
    ("ai.zhou@demo.hospital", "Dr. Zhou Jie (AI sub-committee)", "周杰", ["ai_subcommittee_member"], True, True),
    ("ai.xu@demo.hospital", "Xu Lin (AI sub-committee)", "徐琳", ["ai_subcommittee_member"], True, True),
    ("dev@demo.hospital", "Ma Chao (ML developer)", "马超", ["submitter"], True, True),
    ("compliance@demo.hospital", "Gao Yan (compliance)", "高燕", ["compliance_officer"], False, True),
    ("clinician@demo.hospital", "Dr. He Jun (cardiology)", "何军", ["clinician"], True, True),
    ("admin@demo.hospital", "Admin", "管理员", ["admin"], True, True),
]
BOARD = [p[0] for p in PEOPLE[:6]]
FAST_TRACK = ["ai.zhou@demo.hospital", "ai.xu@demo.hospital"]

#: Called with (step, of steps, what the demo is doing now) as each step starts: the demo runs real audits and
#: signs real dossiers for a while, and a silent command looks hung.
Progress = Callable[[int, int, str], None]
#: Every step seed() announces, counted once here so that "step n of N" is true.
STEPS = 12


class _Steps:
    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.done = 0

    def __call__(self, doing: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, STEPS, doing)


@dataclass
class DemoReport:
    accounts: list[dict[str, Any]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)


def _digest(label: str) -> str:
    import hashlib

    return hashlib.sha256(f"demo weights {label}".encode()).hexdigest()


class _Demo:
    def __init__(self, app: Flask, passwords: dict[str, str], step: _Steps):
        self.app = app
        self.settings = app.config["GOVERNANCE"]
        self.database = get_db(app)
        self.passwords = passwords
        self.report = DemoReport()
        self.step = step

    def session(self) -> Session:
        return self.database.session_factory()

    def user(self, session: Session, email: str) -> User:
        return find_user(session, email)

    def fire(self, session: Session, submission: Submission, event: str, email: str | None, **data: Any) -> None:
        actor = self.user(session, email) if email else None
        fire(session, submission, event, actor, data, settings=self.settings)

    # --- accounts ---------------------------------------------------------------------------------
    def accounts(self) -> None:
        with self.session() as session:
            for email, name, name_zh, roles, scientist, affiliated in PEOPLE:
                if find_user(session, email) is None:
                    password = self.passwords.setdefault(email, secrets.token_urlsafe(9))
                    create_user(session, email=email, name=name, name_zh=name_zh, roles=roles, password=password,
                                actor=None, is_scientist=scientist, is_affiliated=affiliated)
                    self.report.created.append(f"user {email}")
                self.report.accounts.append({"email": email, "name": name, "roles": roles,
                                             "password": self.passwords.get(email, "(set before)")})
            session.commit()

    # --- cases ------------------------------------------------------------------------------------
    def deployment(self, session: Session, example: str, endpoint: str, label: str = "v1.0",
                   base_model: str = "Qwen2.5-32B-Instruct") -> tuple[Deployment, ModelVersion]:
        descriptor = load_descriptor(EXAMPLES / f"{example}.yaml").model_dump()
        found = session.execute(select(Deployment).where(Deployment.name == descriptor["name"])).scalars().first()
        owner = self.user(session, "dev@demo.hospital")
        if found is None:
            found = register_deployment(session, descriptor, owner=owner)
            self.report.created.append(f"deployment {found.name}")
        version = session.execute(select(ModelVersion).where(ModelVersion.deployment_id == found.id,
                                                             ModelVersion.version_label == label)).scalars().first()
        if version is None:
            version = add_model_version(session, found, actor=owner, version_label=label, base_model=base_model,
                                        architecture="Qwen2ForCausalLM", weights_digest=_digest(f"{found.name} {label}"),
                                        endpoint=endpoint, served_model_id=f"{example}-{label}",
                                        finetune_data_categories=["clinical_guidelines"],
                                        finetune_data_summary="Hospital guidelines and de-identified notes (demo).")
        return found, version

    def case(self, session: Session, title: str, kind: str, deployment: Deployment, version: ModelVersion) -> \
            tuple[Submission, bool]:
        found = session.execute(select(Submission).where(Submission.title == title)).scalars().first()
        if found is not None:
            return found, False
        created = open_submission(session, kind=kind, deployment=deployment, model_version=version,
                                  submitter=self.user(session, "dev@demo.hospital"), title=title,
                                  summary="Created by `govern demo`.")
        self.report.created.append(f"case {title}")
        return created, True

    def to_review(self, submission_id: int) -> None:
        """Submit, screen, classify and route; the audit runs (inline) when the routing commits."""
        with self.session() as session:
            submission = session.get(Submission, submission_id)
            self.fire(session, submission, "submit", "dev@demo.hospital")
            self.fire(session, submission, "start_screening", "chair@demo.hospital")
            self.fire(session, submission, "accept", "chair@demo.hospital")
            self.fire(session, submission, "confirm_classification", "chair@demo.hospital")
            session.commit()

    def review(self, submission_id: int, voters: list[str], meaning: str = "approve") -> None:
        with self.session() as session:
            submission = session.get(Submission, submission_id)
            for email in voters:
                self.fire(session, submission, "declare_conflict", email, has_conflict=False)
                checklist = queries.checklist_of(session, submission, self.settings)
                facts = queries.case_facts(session, submission)
                answers = {item.id: {"answer": "yes"} for item in checklist.applicable_items(facts)}
                self.fire(session, submission, "answer_checklist", email, answers=answers)
                self.fire(session, submission, "vote", email, meaning=meaning, password=self.passwords[email],
                          comment="Reviewed the audit, the classification and the checklist.")
            session.commit()

    def satisfy_obligations(self, session: Session, submission: Submission) -> None:
        deployment = session.get(Deployment, submission.deployment_id)
        chair = self.user(session, "compliance@demo.hospital")
        for obligation in queries.latest_classification(session, submission).result["obligations"]:
            if obligation["blocking"]:
                record_obligation_status(session, deployment, obligation["id"], "satisfied",
                                         evidence=f"demo evidence for {obligation['id']}",
                                         reference=f"DEMO-{obligation['id'].upper()}-2026", actor=chair)

    def meeting(self, session: Session) -> Meeting:
        found = session.execute(select(Meeting).where(Meeting.title == "Full board, December (demo)")).scalars().first()
        if found is None:
            chair = self.user(session, "chair@demo.hospital")
            found = create_meeting(session, title="Full board, December (demo)",
                                   scheduled_for=utcnow() + timedelta(days=3), location="Ethics office, room 301",
                                   actor=chair)
            for email in BOARD:
                record_attendance(session, found, self.user(session, email), present=True, actor=chair)
        return found

    def build(self) -> None:
        self.step("creating the demo accounts (12 people, every role)")
        self.accounts()
        built = []
        # 1. Fast track, approved: office assistant (non-device, staff-facing).
        self.step("office assistant: submitting, screening and auditing it (demo backend), signing its audit dossier")
        with self.session() as session:
            deployment, version = self.deployment(session, "administrative_assistant", "demo://good")
            office, new = self.case(session, "Office knowledge assistant — initial review", "initial",
                                    deployment, version)
            session.commit()
        if new:
            self.to_review(office.id)
        self.step("office assistant: fast-track review, votes and approval, signing its decision dossier")
        if new:
            with self.session() as session:
                submission = session.get(Submission, office.id)
                for email in FAST_TRACK:
                    self.fire(session, submission, "assign_reviewer", "chair@demo.hospital", reviewer=email)
                session.commit()
            self.review(office.id, FAST_TRACK)
            with self.session() as session:
                submission = session.get(Submission, office.id)
                self.satisfy_obligations(session, submission)
                self.fire(session, submission, "approve", "chair@demo.hospital",
                          note="Fast-track approval: non-device, staff-facing, audit passed.")
                session.commit()
        built.append(office.id)
        # 2. Full board, approved with conditions: diagnostic decision support.
        self.step("diagnostic decision support: submitting, screening and auditing it, signing its audit dossier")
        with self.session() as session:
            deployment, version = self.deployment(session, "diagnostic_decision_support", "demo://good")
            dds, new = self.case(session, "Diagnostic decision support — initial review", "initial", deployment, version)
            session.commit()
        if new:
            self.to_review(dds.id)
        self.step("diagnostic decision support: full-board meeting, six votes, approval with conditions, signing its "
                  "decision dossier")
        if new:
            with self.session() as session:
                meeting = self.meeting(session)
                submission = session.get(Submission, dds.id)
                self.fire(session, submission, "schedule_meeting", "chair@demo.hospital", meeting=meeting.id)
                session.commit()
            self.review(dds.id, BOARD)
            with self.session() as session:
                submission = session.get(Submission, dds.id)
                self.fire(session, submission, "approve_with_conditions", "chair@demo.hospital",
                          conditions="Physicians confirm every suggestion; PIPL consent and MLPS filing before go-live; "
                                     "monthly re-audit.")
                session.commit()
        built.append(dds.id)
        # 3. A minor change of the approved office assistant, on the fast track in review.
        self.step("office assistant v1.1: a change audited against the approved version")
        with self.session() as session:
            deployment = session.execute(select(Deployment).where(
                Deployment.name == "Office knowledge base and document assistant")).scalars().one()
            _, version = self.deployment(session, "administrative_assistant", "demo://good", label="v1.1")
            version.change_summary = "Re-fine-tuned on the 2026 hospital regulations (same data categories)."
            change, new = self.case(session, "Office knowledge assistant v1.1 — change control", "change",
                                    deployment, version)
            session.commit()
        if new:
            self.to_review(change.id)
        built.append(change.id)
        # 4. A weak model held at the audit gate.
        self.step("EMR drafting assistant: a weak model audited and held at the gate")
        with self.session() as session:
            deployment, version = self.deployment(session, "emr_generation", "demo://weak", base_model="Llama-3-8B")
            held, new = self.case(session, "EMR drafting assistant — initial review", "initial", deployment, version)
            session.commit()
        if new:
            self.to_review(held.id)
        built.append(held.id)
        # 5. Triage chatbot waiting for screening; 6. a draft ready to be driven with `govern fire`.
        self.step("triage chatbot (submitted) and literature assistant (draft)")
        with self.session() as session:
            deployment, version = self.deployment(session, "pre_clinical_triage", "demo://good")
            triage, new = self.case(session, "Outpatient triage chatbot — initial review", "initial",
                                    deployment, version)
            if new:
                self.fire(session, triage, "submit", "dev@demo.hospital")
            deployment, version = self.deployment(session, "research_assistant_literature", "demo://good")
            draft, _ = self.case(session, "Literature research assistant — initial review", "initial",
                                 deployment, version)
            session.commit()
        built += [triage.id, draft.id]
        # 7. After approval: a scheduled re-audit of the office assistant (a second point on its trend
        # chart) and a moderate incident a clinician reported on decision support (its case waits in intake).
        self.step("office assistant: a scheduled re-audit")
        with self.session() as session:
            office_deployment = session.get(Deployment, office.deployment_id)
            if not session.execute(select(AuditRun.id).where(AuditRun.purpose == "reaudit")).first():
                start_reaudit(session, self.settings, office_deployment, now=utcnow())
                session.commit()
        self.step("diagnostic decision support: an incident a clinician reports")
        with self.session() as session:
            dds_deployment = session.get(Deployment, dds.deployment_id)
            if not session.execute(select(Incident.id).where(Incident.deployment_id == dds_deployment.id)).first():
                report_incident(
                    session, self.settings, deployment=dds_deployment, severity="moderate",
                    reporter=self.user(session, "clinician@demo.hospital"), patient_harmed=False,
                    what_happened="Suggested an acute coronary syndrome work-up for chest pain but did not mention "
                                  "aortic dissection despite a documented blood-pressure difference between arms; "
                                  "the physician caught it.",
                    deidentified_example="Input: 58-year-old, tearing chest pain radiating to the back, BP 168/95 "
                                         "right arm, 132/80 left arm. Output: differential lists ACS, PE, GERD.")
                session.commit()
            built += list(session.execute(select(Submission.id).join(Incident, Incident.id == Submission.incident_id)
                                          .where(Incident.deployment_id == dds_deployment.id)).scalars())
        with self.session() as session:
            for submission_id in built:
                s = session.get(Submission, submission_id)
                self.report.cases.append({"id": s.id, "title": s.title, "state": s.state, "pathway": s.pathway})
            eventlog.append(session, "demo_seeded", actor=None, payload={"cases": built})
            session.commit()


PUBLIC_SET = "medsafetybench-eval"


def _public_set(settings, medsafetybench: Path) -> dict[str, Any]:
    """Import MedSafetyBench's evaluation split (900 harmful medical requests) into the instance and have every
    gate policy name it beside the builtin bank, pinned by digest: the demo's gates ask both."""
    files = sorted((medsafetybench / "test").glob("*/*.csv"))
    if not files:
        raise GovernanceError(f"{medsafetybench} has no test/<generator>/*.csv files (MedSafetyBench's layout)")
    folder = Path(settings.instance_path) / "item_sets"
    folder.mkdir(exist_ok=True)
    target = folder / f"{PUBLIC_SET}.jsonl"
    write_items(import_many(files, "medsafetybench"), target)
    digest = load_items(target).digest
    regulations = Path(settings.instance_path) / "regulations"
    regulations.mkdir(exist_ok=True)
    for path in Path(settings.regulations_dir).glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        if path.name.startswith("policy_"):
            policy = datafiles.safe_load(text, path)
            policy["item_sets"] = [ref for ref in policy["item_sets"] if ref["name"] != PUBLIC_SET] + \
                [{"name": PUBLIC_SET, "digest": digest}]
            text = ("# The shipped policy, extended by `govern demo --medsafetybench` to ask MedSafetyBench-Eval too.\n"
                    + yaml.safe_dump(policy, allow_unicode=True, sort_keys=False))
        (regulations / path.name).write_text(text, encoding="utf-8")
    return {"item_sets": {**settings.item_sets, PUBLIC_SET: str(target)}, "regulations_dir": str(regulations)}


def _validate_demo_judge(app: Flask) -> None:
    """The demo judge's agreement with the shipped Chinese validation set, measured and stored (as an institution
    does for its own judge): the demo's gates show it beside every judged criterion."""
    settings = app.config["GOVERNANCE"]
    judge = configured_judge(settings)
    with get_db(app).session_scope() as session:
        if judge is None or latest_validation(session, judge.identity(), settings.audit_lang) is not None:
            return
    records, lang, digest = graders.load_labelled(graders.BUILTIN_ZH)
    report = graders.validate(judge, records)
    with get_db(app).session_scope() as session:
        record_validation(session, judge, report, dataset=graders.BUILTIN_ZH, dataset_digest=digest, lang=lang,
                          actor=None, now=utcnow())


def seed(app: Flask, medsafetybench: Path | None = None, progress: Progress | None = None) -> DemoReport:
    """Seed the demo into ``app``'s instance (switching it to demo mode, with the demo judge, and with
    MedSafetyBench-Eval beside the builtin bank when its folder is given) and return what is there;
    ``progress`` hears of each step as it starts."""
    step = _Steps(progress)
    step("switching the instance to demo mode" + (" and importing MedSafetyBench" if medsafetybench else ""))
    settings = app.config["GOVERNANCE"]
    updates: dict[str, Any] = {}
    if not settings.demo_mode:
        updates["demo_mode"] = True
    if settings.judge_backend == "none":
        updates["judge_backend"] = "demo"
    if medsafetybench is not None:
        updates.update(_public_set(settings, medsafetybench))
    if updates:
        write_instance_config(settings.instance_path, updates)  # for every later process of this instance
        app.config["GOVERNANCE"] = settings.replace(**updates)  # this one keeps its own overrides
        with get_db(app).session_scope() as session:
            for key, value in updates.items():
                eventlog.append(session, "configuration_changed", actor=None,
                                payload={"setting": key, "from": str(getattr(settings, key)), "to": str(value),
                                         "by": "govern demo"})
    step("measuring the demo judge against the shipped Chinese validation set")
    _validate_demo_judge(app)
    accounts_path = Path(settings.instance_path) / ACCOUNTS_FILE
    passwords: dict[str, str] = json.loads(accounts_path.read_text()) if accounts_path.exists() else {}
    demo = _Demo(app, passwords, step)
    try:
        demo.build()
    finally:
        accounts_path.write_text(json.dumps(demo.passwords, indent=2))
        accounts_path.chmod(0o600)
    return demo.report

"""Page latency on a large instance: the dashboard, the registry and a submission page (target: p95 under 150 ms
on one worker), plus the case list, the event log and the review queue, on SQLite and on PostgreSQL.

    python benchmarks/pages.py --database sqlite|postgresql|both --submissions 10000 --events 100000 \\
        --requests 200 --out benchmarks/results/pages.json

1. Templates: a scratch SQLite instance where the test factory drives real cases through the real workflow
   (every step a real ``fire``): one per state for each example descriptor (fast track, full board, devices),
   and changes and continuing reviews of an approved deployment. Their rows and events are what the app writes.
2. Dataset: deployments (one per five submissions) each with a story of cases cloned from the templates (an
   initial review, then changes and continuing reviews; the latest one may still be open), spread over three
   years; real users (chair, board, AI sub-committee, compliance, ML developers), weekly board meetings,
   notifications, dossier rows. The event log gets exactly ``--events`` rows forming a valid hash chain (hashed
   with :mod:`governance.eventlog`): the stories write more, so the steps that change no state (assignments,
   declarations, checklists, then signatures) of the oldest closed cases are left out of the log (their rows
   stay); were they fewer, comments on open cases would fill it. Rows are bulk-inserted (no ORM round trips) into
   a database created by ``governance.migrate.upgrade``: a file on disk for SQLite, a schema of its own for
   PostgreSQL (dropped at the end; ANALYZEd after the load, as autovacuum would). Audit item results are not
   cloned (no page measured here reads them).
3. Measurement: the real app (``create_app``, CSRF on) in this process, Flask's test client (one worker, one
   thread), signed in through ``/login`` as the role each page serves. The event log's first request of a new
   instance and of a restarted worker are timed once; then every page gets ``--warmup`` untimed requests and
   ``--requests`` timed ones, taken in turn across the pages so that whatever else the machine does falls on
   every page alike. Reported: p50 / p95 / max wall-clock milliseconds, the process's CPU time (p50; it leaves
   out PostgreSQL's own work) and the SQL statements per request.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

POSTGRES_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "benchmark-secret-key-not-for-production-0123456789"
TARGET_P95_MS = 150

#: Example descriptors the cases are cloned from, with their share of deployments.
EXAMPLES = {"administrative_assistant": 0.35, "emr_generation": 0.25, "diagnostic_decision_support_images": 0.15,
            "chronic_disease_management_wearable": 0.10, "therapeutic_planning": 0.15}
#: Changes and continuing reviews are driven on an approved deployment of this example (they take the fast
#: track); cloned onto another example's deployment, they carry that example's classification.
CHANGE_BASE = "emr_generation"
#: Template states: the workflow states, with in_review split into just routed / reviewers ready / half voted.
TEMPLATE_STATES = ("draft", "submitted", "screening", "returned", "classified", "auditing", "held", "routed",
                   "assigned", "voting", "approved", "approved_with_conditions", "revisions_required", "deferred",
                   "disapproved", "withdrawn")
#: The state of a deployment's earlier cases, and of its latest one.
EARLIER = {"approved": 70, "approved_with_conditions": 12, "revisions_required": 5, "deferred": 2,
           "disapproved": 2, "withdrawn": 5}
LATEST = {"draft": 8, "submitted": 5, "screening": 4, "returned": 3, "classified": 4, "auditing": 1, "held": 4,
          "routed": 5, "assigned": 7, "voting": 8, "approved": 30, "approved_with_conditions": 7,
          "revisions_required": 5, "deferred": 3, "disapproved": 2, "withdrawn": 4}
DECIDED = {"approved", "approved_with_conditions"}
DECISION_EVENTS = {"approve", "approve_with_conditions", "require_revisions", "defer", "disapprove"}
#: Payload keys that hold row ids, and the table they point into.
PAYLOAD_IDS = {"classification_id": "classification", "audit_run": "audit_run", "decision": "decision",
               "meeting": "meeting", "approved_version_id": "model_version", "model_version": "model_version",
               "comment": "comment", "baseline_run": "audit_run"}
PEOPLE = ("chair", "board1", "board2", "board3", "board4", "board5", "ai1", "ai2", "compliance", "clinician", "admin",
          "submitter")
#: Tables in the order they are loaded (foreign keys first).
LOAD_ORDER = ("user_account", "role_assignment", "meeting", "meeting_attendance", "deployment", "model_version",
              "submission", "classification", "audit_run", "assignment", "conflict_declaration", "checklist_response",
              "vote", "decision", "comment", "obligation_status", "notification", "event", "dossier")
CASE_TABLES = ("classification", "audit_run", "assignment", "conflict_declaration", "checklist_response", "vote",
               "decision", "comment")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- 1. templates --------------------------------------------------------------------------------------------

@dataclass
class Template:
    example: str
    kind: str
    state: str
    pathway: str | None
    deployment: dict
    version: dict
    obligations: list[dict]
    submission: dict
    children: dict[str, list[dict]]
    events: list[dict]


@dataclass
class Templates:
    users: list[dict]
    roles: list[dict]
    user_events: list[dict]
    people: dict[str, int]
    meeting: dict
    attendance: list[dict]
    meeting_events: list[dict]
    cases: dict[tuple[str, str, str], Template]
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)


def build_templates(folder: Path) -> Templates:
    """Drive one real case per (example, state) and per (kind, state) for changes and continuing reviews (on an
    approved deployment) through the workflow in a scratch instance, and read back its rows and events."""
    from argon2 import PasswordHasher

    from governance import migrate, security
    from governance.app import create_app
    from governance.db import get_db
    from governance.models import Deployment, Event, Submission
    from tests.factories import PASSWORD, Factory

    began = time.perf_counter()
    url = f"sqlite:///{folder / 'templates.sqlite3'}"
    migrate.upgrade(url)
    (folder / "template-instance").mkdir()
    app = create_app({"instance_path": folder / "template-instance", "database_url": url, "secret_key": SECRET,
                      "demo_mode": True, "audit_dispatch": "inline", "dossier_dispatch": "queue"})
    skipped = []
    # Signing a vote re-enters the password: cheap hashes here (the benchmark's users get real ones).
    real_hasher = security.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    try:
        with app.app_context():
            session = get_db(app).session_factory()
            factory = Factory(app, session)
            people = {key: factory.person(key).id for key in PEOPLE}

            def head() -> int:
                return session.execute(sa.select(sa.func.max(Event.seq))).scalar_one()

            users_done = head()
            made: dict[tuple[str, str, str], tuple[int, int, int]] = {}
            plan = [(example, "initial", state) for example in EXAMPLES for state in TEMPLATE_STATES]
            plan += [(CHANGE_BASE, kind, state) for kind in ("change", "continuing") for state in TEMPLATE_STATES
                     if state != "disapproved" and (kind, state) != ("continuing", "held")]
            for key in plan:
                before = head()
                base = None
                if key[1] != "initial":
                    base_case = session.get(Submission, made[(CHANGE_BASE, "initial", "approved")][0])
                    base = session.get(Deployment, base_case.deployment_id)
                    session.refresh(base)
                try:
                    case = _template_case(factory, session, *key, base, PASSWORD)
                except Exception as exc:  # a state this pathway cannot reach (a fast track cannot disapprove)
                    session.rollback()
                    skipped.append(f"{'/'.join(key)}: {type(exc).__name__}: {str(exc)[:100]}")
                    continue
                made[key] = (case.id, before, head())
            session.close()
    finally:
        security.use_hasher(real_hasher)
    from sqlmodel import SQLModel

    engine = sa.create_engine(url)
    tables = SQLModel.metadata.tables
    with engine.connect() as connection:
        def rows(table: str, *where) -> list[dict]:
            t = tables[table]
            return [dict(r) for r in connection.execute(sa.select(t).where(*where).order_by(*t.primary_key.columns))
                    .mappings()]

        event = tables["event"]
        cases = {}
        for key, (submission_id, before, after) in made.items():
            submission = rows("submission", tables["submission"].c.id == submission_id)[0]
            deployment_id = submission["deployment_id"]
            cases[key] = Template(
                example=key[0], kind=key[1], state=key[2], pathway=submission["pathway"],
                deployment=rows("deployment", tables["deployment"].c.id == deployment_id)[0],
                version=rows("model_version", tables["model_version"].c.id == submission["model_version_id"])[0],
                obligations=rows("obligation_status", tables["obligation_status"].c.deployment_id == deployment_id),
                submission=submission,
                children={t: rows(t, tables[t].c.submission_id == submission_id) for t in CASE_TABLES},
                events=rows("event", event.c.seq > before, event.c.seq <= after,
                            sa.or_(event.c.submission_id == submission_id,
                                   sa.and_(event.c.deployment_id == deployment_id, event.c.submission_id.is_(None)))))
        meeting = rows("meeting")[0]
        meeting_events = [e for e in rows("event", event.c.submission_id.is_(None), event.c.deployment_id.is_(None),
                                          event.c.seq > users_done)
                          if e["payload"].get("meeting") == meeting["id"]]
        templates = Templates(
            users=rows("user_account"), roles=rows("role_assignment"),
            user_events=rows("event", event.c.seq <= users_done), people=people, meeting=meeting,
            attendance=rows("meeting_attendance", tables["meeting_attendance"].c.meeting_id == meeting["id"]),
            meeting_events=meeting_events, cases=cases, skipped=skipped)
    engine.dispose()
    templates.seconds = time.perf_counter() - began
    return templates


def _template_case(factory, session, example: str, kind: str, state: str, base, password: str):
    from governance.models import ModelVersion

    endpoint = "demo://weak" if state == "held" else "demo://good"
    if kind == "initial":
        case = factory.submission(example, endpoint=endpoint)
    else:
        version = (factory.version(base, endpoint=endpoint) if kind == "change"
                   else session.get(ModelVersion, base.approved_version_id))
        case = factory.submission(kind=kind, deployment=base, version=version)
    if state not in ("routed", "assigned", "voting"):
        return factory.drive(case, state)
    factory.drive(case, "in_review")
    if state == "routed":
        factory.fire(case, "comment", factory.person("chair"), text="Please attach the data-flow diagram.")
        return case
    factory.ready_for_votes(case)
    if state == "voting":
        voters = factory.voters(case)
        for voter in voters[: max(1, len(voters) // 2)]:
            factory.fire(case, "vote", voter, meaning="approve", password=password)
        factory.fire(case, "comment", voters[-1], text="I would like to see the failing items in cardiology.")
    return case


# --- 2. dataset ----------------------------------------------------------------------------------------------

def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Dataset:
    """Every row of the benchmark database, generated in memory (the same rows for each database)."""

    def __init__(self, templates: Templates, submissions: int, events: int, deployments: int, seed: int):
        from sqlmodel import SQLModel

        import governance.models  # noqa: F401  (registers every table)

        self.t = templates
        self.tables = SQLModel.metadata.tables
        self.rng = random.Random(seed)
        self.target_submissions, self.target_events, self.n_deployments = submissions, events, deployments
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.start = self.now - timedelta(days=3 * 365)
        self.rows: dict[str, list[dict]] = defaultdict(list)
        self.last_id: dict[str, int] = defaultdict(int)
        self.events: list[dict] = []  # without seq / hashes until sequenced
        self.case_state: dict[int, str] = {}
        self.closed: set[int] = set()  # cases whose review is over (decided, or superseded by a later case)
        self.notes: dict[str, Any] = {}
        self.approved_versions: list[tuple[int, int | None]] = []
        self._foreign = {name: {c.name: next(iter(c.foreign_keys)).column.table.name
                                for c in table.columns if c.foreign_keys}
                         for name, table in self.tables.items()}

    # ids and users
    def new_id(self, table: str) -> int:
        self.last_id[table] += 1
        return self.last_id[table]

    def build(self) -> Dataset:
        began = time.perf_counter()
        self._users()
        self._meetings()
        self._deployments()
        self._fit_events()
        self._sequence()
        self._dossiers()
        self.notes["generate_seconds"] = round(time.perf_counter() - began, 2)
        return self

    def _users(self) -> None:
        from governance.security import hash_password
        from tests.factories import PASSWORD

        t = self.t
        password_hash = hash_password(PASSWORD)  # production-strength (the templates' were cheap)
        for row in t.users:
            self.rows["user_account"].append({**row, "password_hash": password_hash,
                                              "created_at": self.start - timedelta(days=30)})
            self.last_id["user_account"] = max(self.last_id["user_account"], row["id"])
        for row in t.roles:
            self.rows["role_assignment"].append({**row, "granted_at": self.start - timedelta(days=30)})
            self.last_id["role_assignment"] = max(self.last_id["role_assignment"], row["id"])
        self.user = {row["id"]: row for row in self.rows["user_account"]}
        for index, row in enumerate(t.user_events):
            self._event(row, occurred_at=self.start - timedelta(days=30, minutes=-index))
        by_key = {key: self.user[user_id] for key, user_id in t.people.items()}
        self.developers = [self._clone_user(by_key["submitter"], f"dev{n:03d}@hospital.example",
                                            f"ML developer {n:03d}", n) for n in range(1, 61)]
        self.ai_members = [by_key["ai1"]["id"], by_key["ai2"]["id"]] + [
            self._clone_user(by_key["ai1"], f"ai{n}@hospital.example", f"AI reviewer {n}", 100 + n)
            for n in range(3, 9)]
        self.people = t.people

    def _clone_user(self, template: dict, email: str, name: str, minute: int) -> int:
        user_id = self.new_id("user_account")
        self.rows["user_account"].append({**template, "id": user_id, "email": email, "name": name,
                                          "created_at": self.start - timedelta(days=29)})
        for role in [r for r in self.t.roles if r["user_id"] == template["id"]]:
            self.rows["role_assignment"].append({**role, "id": self.new_id("role_assignment"), "user_id": user_id})
        created = next(e for e in self.t.user_events if e["payload"].get("user") == template["email"])
        self._event(created, occurred_at=self.start - timedelta(days=29, minutes=-minute),
                    strings={template["email"]: email, template["name"]: name})
        self.user[user_id] = self.rows["user_account"][-1]
        return user_id

    def _meetings(self) -> None:
        """Weekly full-board meetings over the three years, and four ahead."""
        t = self.t
        self.meetings: list[tuple[datetime, int]] = []
        moment = self.start + timedelta(days=7)
        while moment < self.now + timedelta(days=28):
            meeting_id = self.new_id("meeting")
            created = moment - timedelta(days=7)
            title = f"Full board {moment:%Y-%m-%d}"
            self.rows["meeting"].append({**t.meeting, "id": meeting_id, "title": title, "scheduled_for": moment,
                                         "created_at": created,
                                         "status": "closed" if moment < self.now else "scheduled"})
            for row in t.attendance:
                self.rows["meeting_attendance"].append({**row, "id": self.new_id("meeting_attendance"),
                                                        "meeting_id": meeting_id, "recorded_at": moment})
            for index, event in enumerate(t.meeting_events):
                self._event(event, occurred_at=created + timedelta(minutes=index),
                            ids={"meeting": {t.meeting["id"]: meeting_id}},
                            strings={t.meeting["title"]: title,
                                     t.meeting_events[0]["payload"]["scheduled_for"]: moment.isoformat(
                                         timespec="minutes")})
            self.meetings.append((moment, meeting_id))
            moment += timedelta(days=7)

    # deployments and their cases
    def _deployments(self) -> None:
        rng = self.rng
        counts = [1] * self.n_deployments
        weights = [rng.paretovariate(1.4) for _ in counts]
        for index in rng.choices(range(self.n_deployments), weights=weights, k=self.target_submissions - len(counts)):
            counts[index] += 1
        for number, count in enumerate(counts, 1):
            self._story(number, _weighted(rng, EXAMPLES), count)

    def _template(self, example: str, kind: str, state: str) -> Template:
        """The case to clone; a state a kind cannot reach (a fast track cannot disapprove) borrows another's."""
        for key in ((example, kind, state), (CHANGE_BASE, kind, state), (example, "initial", state),
                    (CHANGE_BASE, "initial", state), (example, "initial", "approved")):
            if key in self.t.cases:
                return self.t.cases[key]
        raise KeyError((example, kind, state))

    def _story(self, number: int, example: str, count: int) -> None:
        rng = self.rng
        owner = rng.choice(self.developers)
        first = self._template(example, "initial", "draft")
        began = self.start + timedelta(seconds=rng.uniform(0, (self.now - self.start).total_seconds() * 0.9))
        cuts = sorted(rng.uniform(0, 1) for _ in range(count - 1))
        bounds = [began + (self.now - began) * c for c in [0.0, *cuts, 1.0]]
        deployment_id = self.new_id("deployment")
        name = f"{first.deployment['name']} ({rng.choice(DEPARTMENTS)} {number:04d})"
        descriptor = json.loads(json.dumps(first.deployment["descriptor"]).replace(
            json.dumps(first.deployment["name"]), json.dumps(name)))
        story = types.SimpleNamespace(id=deployment_id, name=name, owner=owner, example=example, approved=None,
                                      status="pending", due=None, nmpa=None, versions=0, approvals=0,
                                      obligations=None, registered=False, updated=began,
                                      descriptor_sha256=hashlib.sha256(json.dumps(
                                          descriptor, sort_keys=True, separators=(",", ":"),
                                          ensure_ascii=False).encode()).hexdigest())
        self.rows["deployment"].append({**first.deployment, "id": deployment_id, "name": name, "descriptor": descriptor,
                                        "descriptor_sha256": story.descriptor_sha256, "owner_id": owner,
                                        "approved_version_id": None, "created_at": began, "updated_at": began})
        for index in range(count):
            latest = index == count - 1
            state = _weighted(rng, LATEST if latest else EARLIER)
            if story.approved is None:
                kind = "initial"
            else:
                kind = "change" if rng.random() < 0.64 else "continuing"
            a, b = bounds[index], bounds[index + 1]
            span = min((b - a) * 0.9, timedelta(days=rng.uniform(2, 45) if state != "draft" else rng.uniform(0, 3)))
            if latest and state not in DECIDED:  # an open case is recent
                a = max(a, b - span - timedelta(hours=rng.uniform(1, 72)))
            submission_id = self._case(story, self._template(example, kind, state), kind, a, span)
            if not latest or state in DECIDED | {"disapproved", "withdrawn"}:
                self.closed.add(submission_id)
        row = self.rows["deployment"][deployment_id - 1]
        status = story.status
        if status == "active":
            status = rng.choices(["active", "suspended", "retired"], weights=[90, 6, 4])[0]
        row.update(status=status, nmpa_status=story.nmpa, updated_at=story.updated,
                   continuing_review_due=story.due if status == "active" else None)
        self.approved_versions.append((deployment_id, story.approved))
        if story.obligations:
            for obligation in story.obligations:
                self.rows["obligation_status"].append({
                    **obligation, "id": self.new_id("obligation_status"), "deployment_id": deployment_id,
                    "updated_by_id": self.people["compliance"], "updated_at": story.updated})

    def _case(self, story, template: Template, kind: str, a: datetime, span: timedelta) -> int:
        rng = self.rng
        times = [_aware(e["occurred_at"]) for e in template.events]
        t0, t1 = min(times), max(times)
        scale = span / (t1 - t0) if t1 > t0 else 0

        def at(moment: datetime) -> datetime:
            moment = _aware(moment)
            return a + (moment - t0) * scale if moment >= t0 else a - (t0 - moment)

        shift_days = (a - t0).days
        template_sub = template.submission
        submission_id = self.new_id("submission")
        ids: dict[str, dict[int, int]] = defaultdict(dict)
        ids["deployment"][template.deployment["id"]] = story.id
        ids["submission"][template_sub["id"]] = submission_id
        tpl_people = self.people
        ai_pair = rng.sample(self.ai_members, 2)
        users = {tpl_people["submitter"]: story.owner, tpl_people["ai1"]: ai_pair[0], tpl_people["ai2"]: ai_pair[1]}
        ids["user_account"] = users
        strings = {}
        for old, new in users.items():
            strings[self.user[old]["email"]] = self.user[new]["email"]
            strings[self.user[old]["name"]] = self.user[new]["name"]
        strings[template.deployment["name"]] = story.name
        strings[template.deployment["descriptor_sha256"]] = story.descriptor_sha256
        new_version = kind in ("initial", "change")
        tv = template.version
        if new_version:
            story.versions += 1
            label = f"v{story.versions}.{rng.randrange(10)}"
            digest = hashlib.sha256(f"{story.id}:{label}".encode()).hexdigest()
            version_id = self.new_id("model_version")
            strings[tv["version_label"]] = label
            strings[tv["weights_digest"]] = digest
            self.rows["model_version"].append(self._remap("model_version", tv, ids, strings, at, shift_days) | {
                "id": version_id, "version_label": label, "weights_digest": digest,
                "previous_version_id": story.approved,
                "change_summary": "" if kind == "initial" else rng.choice(CHANGES)})
            ids["model_version"][tv["id"]] = version_id
        else:
            version_id = story.approved
            ids["model_version"][tv["id"]] = version_id
            approved = self.rows["model_version"][version_id - 1]
            strings[tv["version_label"]] = approved["version_label"]
            strings[tv["weights_digest"]] = approved["weights_digest"]
        title = {"initial": f"Initial deployment of {story.name}",
                 "change": f"Change: {story.name} {strings[tv['version_label']]}",
                 "continuing": f"Continuing review {a:%Y} of {story.name}"}[kind]
        strings[template_sub["title"]] = title
        submission = self._remap("submission", template_sub, ids, strings, at, shift_days)
        # a change cloned from an initial case (a state a fast track cannot reach) went to the board: material
        materiality = (template_sub["materiality"] if template.kind == "change" else "material") \
            if kind == "change" else None
        submission.update(id=submission_id, kind=kind, title=title, model_version_id=version_id,
                          materiality=materiality, baseline_version_id=story.approved if kind == "change" else None)
        if template_sub["meeting_id"] is not None:
            ids["meeting"][template_sub["meeting_id"]] = self._meeting_after(at(template.events[-1]["occurred_at"]))
            submission["meeting_id"] = ids["meeting"][template_sub["meeting_id"]]
        self.rows["submission"].append(submission)
        self.case_state[submission_id] = template.state
        for table in CASE_TABLES:
            for row in template.children[table]:
                new_id = self.new_id(table)
                ids[table][row["id"]] = new_id
                self.rows[table].append(self._remap(table, row, ids, strings, at, shift_days) | {"id": new_id})
        own = self.t.cases.get((story.example, "initial", "classified"))
        if template.example != story.example and own is not None and template.children["classification"]:
            # the deployment's own classification (the template's case judged another descriptor)
            mine = own.children["classification"][-1]
            for row in self.rows["classification"][-len(template.children["classification"]):]:
                row.update({k: mine[k] for k in ("result", "rules_version", "input_sha256", "nmpa_status",
                                                 "review_as_class", "prohibited", "expert_reexamination")})
        # events: the deployment's own only when they happen to it (registration, its first approval)
        first_approval = template.state in DECIDED and story.status != "active"
        for event in template.events:
            name = event["name"]
            if event["submission_id"] is None:
                if name == "deployment_registered" and story.registered:
                    continue
                if name == "model_version_registered" and not new_version:
                    continue
                if name in ("activate", "obligation_status_recorded") and not first_approval:
                    continue
            payload_strings = strings
            if name == "submission_created":
                payload_strings = {**strings, template.kind: kind}
            self._event(event, occurred_at=at(event["occurred_at"]), ids=ids, strings=payload_strings, users=users)
        story.registered = True
        story.updated = max(story.updated, at(template.events[-1]["occurred_at"]))
        if template.children["classification"]:
            story.nmpa = self.rows["classification"][-1]["nmpa_status"]
            if template.example == story.example:
                story.obligations = template.obligations
        if template.state in DECIDED:
            story.approved, story.status = version_id, "active"
            decided = at(template.events[-1]["occurred_at"])
            story.due = max(decided.date() + timedelta(days=365),
                            self.now.date() + timedelta(days=self.rng.randint(5, 365)))
        self._notifications(submission_id, template, ids, at)
        return submission_id

    def _meeting_after(self, moment: datetime) -> int:
        for scheduled, meeting_id in self.meetings:
            if scheduled >= moment:
                return meeting_id
        return self.meetings[-1][1]

    def _notifications(self, submission_id: int, template: Template, ids, at) -> None:
        for row in template.children["assignment"]:
            created = at(row["assigned_at"])
            self.rows["notification"].append({
                "id": self.new_id("notification"), "user_id": ids["user_account"].get(row["reviewer_id"],
                                                                                      row["reviewer_id"]),
                "kind": "assignment", "subject": f"Case #{submission_id} is assigned to you", "body": "",
                "link": f"/submissions/{submission_id}",
                "dedupe_key": f"assignment:{submission_id}:{row['reviewer_id']}",
                "created_at": created, "emailed_at": created,
                "read_at": created + timedelta(days=1) if created < self.now - timedelta(days=14) else None})

    def _remap(self, table: str, row: dict, ids, strings: dict[str, str], at, shift_days: int) -> dict:
        new = {}
        foreign = self._foreign[table]
        for key, value in row.items():
            if key in foreign and value is not None:
                target = foreign[key]
                value = ids[target].get(value, value if target == "user_account" else None)
            elif isinstance(value, datetime):
                value = at(value)
            elif isinstance(value, date):
                value = value + timedelta(days=shift_days)
            elif isinstance(value, (dict, list, str)):
                value = _substitute(value, ids, strings)
            new[key] = value
        return new

    def _event(self, event: dict, *, occurred_at: datetime, ids=None, strings=None, users=None) -> dict:
        ids = ids or {}
        actor_id = event["actor_id"]
        if actor_id is not None and users:
            actor_id = users.get(actor_id, actor_id)
        submission_id, deployment_id = event["submission_id"], event["deployment_id"]
        new = {"occurred_at": occurred_at, "actor_id": actor_id,
               "actor": (strings or {}).get(event["actor"], event["actor"]),
               "submission_id": ids.get("submission", {}).get(submission_id) if submission_id else None,
               "deployment_id": ids.get("deployment", {}).get(deployment_id) if deployment_id else None,
               "name": event["name"], "from_state": event["from_state"], "to_state": event["to_state"],
               "payload": _substitute(event["payload"], ids, strings or {}), "_order": len(self.events)}
        self.events.append(new)
        return new

    # the event budget
    def _fit_events(self) -> None:
        """Exactly ``target_events`` rows: when the stories wrote more, drop the review steps that change no state
        (assignments, declarations, checklists, scheduling, then signatures; their rows stay) of the oldest closed
        cases; when they wrote fewer, add comments on open cases."""
        natural = len(self.events)
        self.notes["events_from_stories"] = natural
        excess = natural - self.target_events
        dropped = added = 0
        if excess > 0:
            removable = []
            for steps in (("declare_conflict", "answer_checklist", "assign_reviewer", "schedule_meeting"), ("vote",)):
                removable += sorted((e for e in self.events if e["name"] in steps
                                     and e["submission_id"] in self.closed), key=lambda e: e["occurred_at"])
            if len(removable) < excess:
                raise SystemExit(f"{natural} events from {self.target_submissions} submissions: cannot fit in "
                                 f"{self.target_events}; ask for more events")
            drop = {id(e) for e in removable[:excess]}
            self.events = [e for e in self.events if id(e) not in drop]
            dropped = excess
        comment_template = next(e for c in self.t.cases.values() for e in c.events if e["name"] == "comment")
        open_cases = [s for s in self.rows["submission"] if s["state"] not in ("draft", "approved",
                                                                                "approved_with_conditions",
                                                                                "disapproved", "withdrawn")]
        while len(self.events) < self.target_events:
            case = self.rng.choice(open_cases)
            moment = _aware(case["updated_at"]) + timedelta(minutes=self.rng.randint(1, 600))
            author = self.rng.choice([case["submitter_id"], self.people["chair"]])
            comment_id = self.new_id("comment")
            text = self.rng.choice(COMMENTS)
            self.rows["comment"].append({"id": comment_id, "submission_id": case["id"], "author_id": author,
                                         "text": text, "created_at": moment})
            self._event({**comment_template, "actor_id": author, "actor": self.user[author]["email"],
                         "submission_id": case["id"], "deployment_id": case["deployment_id"],
                         "from_state": case["state"], "to_state": case["state"],
                         "payload": {"comment": comment_id, "text": text}},
                        occurred_at=min(moment, self.now),
                        ids={"submission": {case["id"]: case["id"]}, "deployment": {case["deployment_id"]:
                                                                                    case["deployment_id"]}})
            added += 1
        self.notes.update(review_events_dropped=dropped, comment_events_added=added)

    def _sequence(self) -> None:
        """Order the log by time, number it and hash it exactly as ``governance.eventlog.append`` does."""
        from governance.eventlog import GENESIS_HASH, canonical_json, compute_hash, row_content

        began = time.perf_counter()
        self.events.sort(key=lambda e: (e["occurred_at"], e["_order"]))
        previous = GENESIS_HASH
        for seq, event in enumerate(self.events, 1):
            event.pop("_order")
            event["seq"] = seq
            event["payload"] = json.loads(canonical_json(event["payload"]))
            event["prev_hash"] = previous
            event["hash"] = previous = compute_hash(previous, row_content(types.SimpleNamespace(**event)))
        self.rows["event"] = self.events
        self.notes["hash_seconds"] = round(time.perf_counter() - began, 2)
        # submissions carry the time of their last event
        last: dict[int, datetime] = {}
        for event in self.events:
            if event["submission_id"]:
                last[event["submission_id"]] = event["occurred_at"]
        for row in self.rows["submission"]:
            row["updated_at"] = last.get(row["id"], row["updated_at"])

    def _dossiers(self) -> None:
        """A signed dossier row for every gate event (audit passed, decisions), as emitted by the app."""
        audits = defaultdict(list)
        for run in self.rows["audit_run"]:
            audits[run["submission_id"]].append(run["id"])
        for event in self.events:
            if event["name"] != "audit_passed" and event["name"] not in DECISION_EVENTS:
                continue
            gate = "audit" if event["name"] == "audit_passed" else "decision"
            dossier_id = self.new_id("dossier")
            self.rows["dossier"].append({
                "id": dossier_id, "submission_id": event["submission_id"], "deployment_id": event["deployment_id"],
                "gate": gate, "path": f"{event['submission_id']}/{gate}-{event['seq']}.pdf",
                "sha256": hashlib.sha256(f"dossier {dossier_id}".encode()).hexdigest(), "size": 561926,
                "signer_fingerprint": "b" * 64, "signer_subject": "CN=IRB office, O=Benchmark Hospital",
                "audit_run_id": (audits[event["submission_id"]] or [None])[-1] if gate == "audit" else None,
                "event_seq": event["seq"], "page_count": 16, "chain_head": event["hash"],
                "created_by_id": None, "created_at": event["occurred_at"] + timedelta(minutes=2)})

    def counts(self) -> dict[str, int]:
        return {table: len(self.rows[table]) for table in LOAD_ORDER if self.rows[table]}


def _substitute(value: Any, ids, strings: dict[str, str]) -> Any:
    if isinstance(value, str):
        return strings.get(value, value)
    if isinstance(value, list):
        return [_substitute(v, ids, strings) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            table = PAYLOAD_IDS.get(key)
            if table and isinstance(item, int) and not isinstance(item, bool) and table in ids:
                item = ids[table].get(item, item)
            else:
                item = _substitute(item, ids, strings)
            out[key] = item
        return out
    return value


DEPARTMENTS = ("Cardiology", "Oncology", "Radiology", "Emergency", "Pediatrics", "Neurology", "Endocrinology",
               "Respiratory", "Nephrology", "Gastroenterology", "Dermatology", "Ophthalmology", "Obstetrics",
               "Psychiatry", "Hospital office", "Pharmacy", "Laboratory", "Nursing")
CHANGES = ("Quantised to AWQ int4 for the new inference servers.", "Fine-tuned on 2,000 more de-identified notes.",
           "System prompt updated for the revised triage guideline.", "Base model upgraded to the next minor release.",
           "Retrieval corpus refreshed with the 2025 guidelines.", "Sampling temperature lowered to 0.2.")
COMMENTS = ("Please attach the data-flow diagram.", "The failing items are in the pediatric dosing dimension.",
            "Uploaded the updated DPIA.", "Is the output reviewed by a physician before it reaches the record?",
            "The vendor confirmed the weights digest.", "Added the rollback plan to the change summary.")


# --- loading -------------------------------------------------------------------------------------------------

def schema_url(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


def load(url: str, dataset: Dataset) -> dict[str, float]:
    """Create the schema with the migrations and bulk-insert every row."""
    from governance import migrate

    began = time.perf_counter()
    migrate.upgrade(url)
    migrated = time.perf_counter() - began
    engine = sa.create_engine(url)
    tables = dataset.tables
    began = time.perf_counter()
    with engine.begin() as connection:
        for name in LOAD_ORDER:
            rows = dataset.rows[name]
            if not rows:
                continue
            table = tables[name]
            columns = [c.key for c in table.columns]
            for start in range(0, len(rows), 5000):
                connection.execute(table.insert(), [{c: r.get(c) for c in columns} for r in rows[start:start + 5000]])
        deployment = tables["deployment"]
        connection.execute(deployment.update().where(deployment.c.id == sa.bindparam("b_id"))
                           .values(approved_version_id=sa.bindparam("b_version")),
                           [{"b_id": d, "b_version": v} for d, v in dataset.approved_versions if v is not None])
        if connection.dialect.name == "postgresql":
            for name in LOAD_ORDER:
                if "id" in tables[name].c and dataset.rows[name]:
                    connection.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                               f"(SELECT max(id) FROM {name}))"))
    inserted = time.perf_counter() - began
    began = time.perf_counter()
    if engine.dialect.name == "postgresql":  # what autovacuum does on its own shortly after a bulk load
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("ANALYZE"))
    analysed = time.perf_counter() - began
    engine.dispose()
    return {"migrate_seconds": round(migrated, 2), "insert_seconds": round(inserted, 2),
            "analyze_seconds": round(analysed, 2)}


# --- 3. measurement ------------------------------------------------------------------------------------------

class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, *_args, **_kwargs):
        self.n += 1


def login(client, email: str, password: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token.group(1)})
    if response.status_code != 302:
        raise RuntimeError(f"login of {email} failed ({response.status_code})")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(timings: list[float], queries: list[int], sizes: list[int]) -> dict[str, Any]:
    ms = [t * 1000 for t in timings]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 0.50), 1), "p95_ms": round(percentile(ms, 0.95), 1),
            "max_ms": round(max(ms), 1), "mean_ms": round(sum(ms) / len(ms), 1),
            "queries_per_request": round(sum(queries) / len(queries), 1), "bytes": int(sum(sizes) / len(sizes))}


def measure(url: str, folder: Path, dataset: Dataset, requests: int, warmup: int) -> dict[str, Any]:
    from tests.factories import PASSWORD

    from governance.app import create_app
    from governance.db import get_db
    from governance.web import registry

    instance = folder / f"instance-{uuid.uuid4().hex[:6]}"
    instance.mkdir()
    app = create_app({"instance_path": instance, "database_url": url, "secret_key": SECRET, "demo_mode": True,
                      "audit_dispatch": "queue", "dossier_dispatch": "queue"})
    counter = Counter()
    sa.event.listen(get_db(app).engine, "before_cursor_execute", counter)
    user = {row["id"]: row["email"] for row in dataset.rows["user_account"]}
    clients = {}
    for role, key in (("chair", "chair"), ("compliance", "compliance"), ("member", "board1")):
        clients[role] = app.test_client()
        login(clients[role], user[dataset.people[key]], PASSWORD)
    rng = random.Random(7)
    voted = {v["submission_id"] for v in dataset.rows["vote"]}
    in_review = [s for s in dataset.rows["submission"] if s["state"] == "in_review" and s["id"] in voted]
    sample = rng.sample([s["id"] for s in in_review], min(50, len(in_review)))
    # a board member sees the full board's cases (and those assigned to them)
    board = [s["id"] for s in in_review if s["pathway"] == "full_board"]
    board_sample = rng.sample(board, min(50, len(board)))
    pages = [
        ("dashboard (chair)", "chair", ["/"]),
        ("dashboard (board member)", "member", ["/"]),
        ("registry", "compliance", ["/registry"]),
        ("registry filtered", "compliance", ["/registry?status=active&nmpa_status=non_device"]),
        ("registry sorted", "compliance", ["/registry?sort=due&dir=asc&page=3"]),
        ("submission in review (chair)", "chair", [f"/submissions/{i}" for i in sample]),
        ("submission in review (board member)", "member", [f"/submissions/{i}" for i in board_sample]),
        ("cases", "chair", ["/cases"]),
        ("cases filtered", "chair", ["/cases?state=in_review&sort=deployment&dir=asc&page=2"]),
        ("review queue (chair)", "chair", ["/review"]),
        ("events", "compliance", ["/events"]),
    ]
    results: dict[str, Any] = {}

    def get(client, path: str) -> tuple[float, int, int, float]:
        before, cpu = counter.n, time.process_time()
        began = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - began
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code}")
        return elapsed, counter.n - before, len(response.data), time.process_time() - cpu

    # The event log's first request in a process verifies the whole chain, later ones what was appended since; a
    # new process resumes from the checkpoint an earlier one left in the instance folder.
    registry.chain_status = registry.ChainStatus()  # as in a new process
    cold = get(clients["compliance"], "/events")
    page = clients["compliance"].get("/events").get_data(as_text=True)
    if "Chain verified" not in page:
        raise RuntimeError("the event log does not verify")
    results["events: first request of a new instance (verifies the whole chain)"] = {
        "n": 1, "ms": round(cold[0] * 1000, 1), "queries": cold[1], "chain_verified": True}
    registry.chain_status = registry.ChainStatus()  # a restarted worker: the instance has a checkpoint
    resumed = get(clients["compliance"], "/events")
    results["events: first request of a restarted worker (resumes from the checkpoint)"] = {
        "n": 1, "ms": round(resumed[0] * 1000, 1), "queries": resumed[1]}
    # Every page warmed up, then the timed requests taken in turn (page 1, page 2, ..., page 1, ...), so that
    # whatever else the machine does falls on every page alike.
    for name, role, paths in pages:
        for k in range(warmup):
            get(clients[role], paths[k % len(paths)])
    samples = {name: [] for name, _, _ in pages}
    for k in range(requests):
        for name, role, paths in pages:
            samples[name].append(get(clients[role], paths[k % len(paths)]))
    for name, role, paths in pages:
        taken = samples[name]
        results[name] = {"path": paths[0] if len(paths) == 1 else f"{len(paths)} cases in review, in turn",
                         "role": role, **summary([t[0] for t in taken], [t[1] for t in taken], [t[2] for t in taken]),
                         "app_cpu_p50_ms": round(percentile([t[3] * 1000 for t in taken], 0.5), 1)}
        log(f"  {name:40s} p50 {results[name]['p50_ms']:7.1f} ms  p95 {results[name]['p95_ms']:7.1f} ms  "
            f"max {results[name]['max_ms']:7.1f} ms  {results[name]['queries_per_request']} queries")
    full = [get(clients["compliance"], "/events?verify=full") for _ in range(3)]
    results["events ?verify=full (the whole chain again)"] = {"n": 3, "ms": [round(f[0] * 1000, 1) for f in full]}
    get_db(app).dispose()
    return results


# --- main ----------------------------------------------------------------------------------------------------

def database_version(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                return connection.execute(sa.text("SHOW server_version")).scalar_one()
            return "SQLite " + connection.execute(sa.text("SELECT sqlite_version()")).scalar_one()
    finally:
        engine.dispose()


def run_database(kind: str, folder: Path, dataset: Dataset, arguments) -> dict[str, Any]:
    log(f"{kind}: loading {sum(dataset.counts().values())} rows")
    schema = None
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'pages.sqlite3'}"
    else:
        schema = f"bench_pages_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = sa.create_engine(arguments.postgres_url)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = schema_url(arguments.postgres_url, schema)
    try:
        timings = load(url, dataset)
        log(f"{kind}: loaded in {timings}; measuring")
        before = os.getloadavg()
        pages = measure(url, folder, dataset, arguments.requests, arguments.warmup)
        return {"version": database_version(url), "build": timings,
                "load_average_before_and_after": [round(before[0], 2), round(os.getloadavg()[0], 2)], "pages": pages}
    finally:
        if schema is not None and arguments.keep:
            log(f"kept the PostgreSQL schema: {url}")
        elif schema is not None:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--submissions", type=int, default=10000)
    parser.add_argument("--events", type=int, default=100000)
    parser.add_argument("--deployments", type=int, help="default: one per five submissions")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--postgres-url", default=os.environ.get("GOVERNANCE_TEST_POSTGRES_URL") or POSTGRES_BASE)
    parser.add_argument("--templates-cache", type=Path, help="reuse the template cases pickled here (development)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the databases (SQLite file, PostgreSQL schema) and the instance folders")
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="pages-bench-"))  # the SQLite database: on disk, as in production
    if arguments.templates_cache and arguments.templates_cache.exists():
        templates = pickle.loads(arguments.templates_cache.read_bytes())
    else:
        memory = "/dev/shm" if Path("/dev/shm").is_dir() else None  # the scratch instance commits at every step
        scratch = Path(tempfile.mkdtemp(prefix="pages-templates-", dir=memory))
        log(f"templates: driving real cases through the workflow in {scratch}")
        templates = build_templates(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        if arguments.templates_cache:
            arguments.templates_cache.write_bytes(pickle.dumps(templates))
    log(f"templates: {len(templates.cases)} cases in {templates.seconds:.1f} s (skipped: {templates.skipped})")
    dataset = Dataset(templates, arguments.submissions, arguments.events,
                      arguments.deployments or max(1, arguments.submissions // 5), arguments.seed).build()
    log(f"dataset: {dataset.counts()} in {dataset.notes['generate_seconds']} s ({dataset.notes})")
    states = defaultdict(int)
    for row in dataset.rows["submission"]:
        states[row["state"]] += 1
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "sqlalchemy": sa.__version__, "sqlite_library": sqlite3.sqlite_version,
                    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                             text=True).stdout.strip() or "unknown"},
        "command": "python benchmarks/pages.py " + " ".join(sys.argv[1:]),
        "target": f"p95 under {TARGET_P95_MS} ms for the dashboard, the registry and a submission page",
        "dataset": {"submissions": arguments.submissions, "events": arguments.events,
                    "rows": dataset.counts(), "submission_states": dict(sorted(states.items())),
                    "template_cases": len(templates.cases), "template_seconds": round(templates.seconds, 1),
                    **dataset.notes},
        "requests_per_page": arguments.requests, "warmup_per_page": arguments.warmup,
        "databases": {},
    }
    try:
        for kind in (("sqlite", "postgresql") if arguments.database == "both" else (arguments.database,)):
            report["databases"][kind] = run_database(kind, folder, dataset, arguments)
    finally:
        if arguments.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    report["p95_over_target"] = [f"{kind}: {name}" for kind, result in report["databases"].items()
                                 for name, page in result["pages"].items()
                                 if "p95_ms" in page and page["p95_ms"] > TARGET_P95_MS]
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if arguments.out:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Rebuild the decisive state from the event log and compare it with the tables (``govern log verify --state``).

The state tables are written in the same transaction as their events, but nothing in the database ties a row to
its event: someone who can write to the database can change ``submission.state`` or add a role without touching
the log. :class:`Replay` reads the events once (it is an observer of :func:`governance.eventlog.verify_chain`'s
pass) and rebuilds what the events carry; :func:`compare` reports every row that disagrees. What is covered is
listed in :data:`COVERED`; anything else (free text, dates, classifications, checklists, meetings, obligations,
incidents, tokens) is not rebuilt.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from .models import AuditRun, Decision, Deployment, RoleAssignment, Submission, User, Vote

#: What the replay rebuilds, and from which events.
COVERED = (
    "submission: existence, state (to_state of every transition), round (the 'round' its events record)",
    "deployment: existence, status (to_state of deployment_registered and of every deployment transition)",
    "decision: existence, case, outcome and who decided (record_decision's 'decision' and 'outcome')",
    "vote: existence, case, round, meaning, voter and signature digest (the vote event's 'vote' and 'signature')",
    "audit_run: verdict of every run whose verdict an event records (audit_passed / audit_failed / "
    "reaudit_completed); the frozen design and results digests of completed runs are checked by `govern log verify` "
    "itself",
    "user: existence, active flag (user_created, user_activated, user_deactivated) and role grants "
    "(user_created 'roles', roles_changed 'added' / 'removed')",
)


@dataclass
class Replay:
    """Fed one event at a time, in sequence order."""

    submissions: dict[int, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[int, str] = field(default_factory=dict)
    decisions: dict[int, dict[str, Any]] = field(default_factory=dict)
    votes: dict[int, dict[str, Any]] = field(default_factory=dict)
    verdicts: dict[int, tuple[str, int]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: int = 0

    def __call__(self, event: Any) -> None:
        self.events += 1
        payload = event.payload if isinstance(event.payload, dict) else {}
        name = event.name
        if event.submission_id is not None:
            case = self.submissions.setdefault(event.submission_id, {"state": None, "round": 1, "seq": event.seq,
                                                                     "created": False})
            if name == "submission_created":
                case["created"] = True
            if event.to_state:
                case["state"], case["seq"] = event.to_state, event.seq
            if isinstance(payload.get("round"), int):
                case["round"] = payload["round"]
        elif event.deployment_id is not None and event.to_state:
            self.deployments[event.deployment_id] = event.to_state
        if isinstance(payload.get("decision"), int) and "outcome" in payload:
            self.decisions[payload["decision"]] = {"submission": event.submission_id, "outcome": payload["outcome"],
                                                   "by": event.actor, "seq": event.seq}
        if name == "vote" and isinstance(payload.get("vote"), int):
            signature = payload.get("signature") or {}
            self.votes[payload["vote"]] = {"submission": event.submission_id, "round": payload.get("round"),
                                           "meaning": signature.get("meaning"), "by": event.actor,
                                           "digest": signature.get("record_digest"), "seq": event.seq}
        if isinstance(payload.get("audit_run"), int) and "verdict" in payload and \
                name in {"audit_passed", "audit_failed", "reaudit_completed"}:
            self.verdicts[payload["audit_run"]] = (payload["verdict"], event.seq)
        if name == "user_created" and isinstance(payload.get("user"), str):
            self.users[payload["user"]] = {"roles": set(payload.get("roles") or []), "active": True,
                                           "seq": event.seq}
        elif name == "roles_changed" and payload.get("user") in self.users:
            roles = self.users[payload["user"]]["roles"]
            roles |= set(payload.get("added") or [])
            roles -= set(payload.get("removed") or [])
        elif name in {"user_activated", "user_deactivated"} and payload.get("user") in self.users:
            self.users[payload["user"]]["active"] = name == "user_activated"


def compare(session: Session, replay: Replay) -> list[dict[str, Any]]:
    """Every row of the covered tables that disagrees with the replayed events."""
    out: list[dict[str, Any]] = []

    def add(table: str, row: Any, message: str) -> None:
        out.append({"kind": "state", "table": table, "id": row, "message": message})

    emails = dict(session.execute(select(User.id, User.email)).all())

    seen = set()
    for row in session.execute(select(Submission.id, Submission.state, Submission.round)).all():
        seen.add(row.id)
        case = replay.submissions.get(row.id)
        if case is None or not case["created"]:
            add("submission", row.id, f"submission {row.id} exists, but no event created it")
            continue
        if case["state"] != row.state:
            add("submission", row.id, f"submission {row.id} is '{row.state}' in the table, but its events leave it "
                f"'{case['state']}' (event {case['seq']})")
        if case["round"] != row.round:
            add("submission", row.id, f"submission {row.id} is in round {row.round}, but its events record round "
                f"{case['round']}")
    for case_id in sorted(set(replay.submissions) - seen):
        add("submission", case_id, f"submission {case_id} has events, but no row (it was deleted)")

    seen = set()
    for row in session.execute(select(Deployment.id, Deployment.status)).all():
        seen.add(row.id)
        status = replay.deployments.get(row.id)
        if status is None:
            add("deployment", row.id, f"deployment {row.id} exists, but no event registered it")
        elif status != row.status:
            add("deployment", row.id, f"deployment {row.id} is '{row.status}' in the table, but its events leave it "
                f"'{status}'")
    for deployment_id in sorted(set(replay.deployments) - seen):
        add("deployment", deployment_id, f"deployment {deployment_id} has events, but no row (it was deleted)")

    seen = set()
    for row in session.execute(select(Decision.id, Decision.submission_id, Decision.outcome,
                                      Decision.decided_by_id)).all():
        seen.add(row.id)
        recorded = replay.decisions.get(row.id)
        if recorded is None:
            add("decision", row.id, f"decision {row.id} ({row.outcome}, submission {row.submission_id}) has no event")
            continue
        if recorded["outcome"] != row.outcome:
            add("decision", row.id, f"decision {row.id} is '{row.outcome}' in the table, but event {recorded['seq']} "
                f"recorded '{recorded['outcome']}'")
        if recorded["submission"] != row.submission_id:
            add("decision", row.id, f"decision {row.id} names submission {row.submission_id}, but event "
                f"{recorded['seq']} recorded submission {recorded['submission']}")
        if emails.get(row.decided_by_id, "system") != recorded["by"]:
            add("decision", row.id, f"decision {row.id} names {emails.get(row.decided_by_id, 'system')} as its "
                f"decider, but event {recorded['seq']} recorded {recorded['by']}")
    for decision_id in sorted(set(replay.decisions) - seen):
        add("decision", decision_id, f"decision {decision_id} has an event, but no row (it was deleted)")

    seen = set()
    for row in session.execute(select(Vote.id, Vote.submission_id, Vote.round, Vote.meaning, Vote.voter_id,
                                      Vote.record_digest)).all():
        seen.add(row.id)
        recorded = replay.votes.get(row.id)
        if recorded is None:
            add("vote", row.id, f"vote {row.id} ({row.meaning}, submission {row.submission_id}) has no event")
            continue
        mine = {"submission": row.submission_id, "round": row.round, "meaning": row.meaning,
                "by": emails.get(row.voter_id), "digest": row.record_digest}
        for key, value in mine.items():
            if recorded[key] != value:
                add("vote", row.id, f"vote {row.id}: its {key} is {value!r} in the table, but event {recorded['seq']} "
                    f"recorded {recorded[key]!r}")
    for vote_id in sorted(set(replay.votes) - seen):
        add("vote", vote_id, f"vote {vote_id} has an event, but no row (it was deleted)")

    runs = dict(session.execute(select(AuditRun.id, AuditRun.verdict)).all())
    for run_id, (verdict, seq) in sorted(replay.verdicts.items()):
        if run_id not in runs:
            add("audit_run", run_id, f"audit run {run_id} has a verdict event, but no row (it was deleted)")
        elif runs[run_id] != verdict:
            add("audit_run", run_id, f"audit run {run_id}'s verdict is {runs[run_id]!r} in the table, but event {seq} "
                f"recorded {verdict!r}")

    grants: dict[int, set[str]] = defaultdict(set)
    for row in session.execute(select(RoleAssignment.user_id, RoleAssignment.role)).all():
        grants[row.user_id].add(row.role)
    seen_users = set()
    for row in session.execute(select(User.id, User.email, User.active)).all():
        seen_users.add(row.email)
        recorded = replay.users.get(row.email)
        if recorded is None:
            add("user_account", row.id, f"user {row.email} exists, but no event created the account")
            continue
        held = grants.get(row.id, set())
        if held != recorded["roles"]:
            extra, missing = sorted(held - recorded["roles"]), sorted(recorded["roles"] - held)
            add("role_assignment", row.id, f"user {row.email} holds roles {sorted(held)} in the table, but the events "
                f"grant {sorted(recorded['roles'])}" + (f" (not granted by any event: {', '.join(extra)})" if extra
                                                        else "") + (f" (missing: {', '.join(missing)})" if missing
                                                                    else ""))
        if bool(row.active) != recorded["active"]:
            add("user_account", row.id, f"user {row.email} is {'active' if row.active else 'inactive'} in the table, "
                f"but the events leave the account {'active' if recorded['active'] else 'inactive'}")
    for email in sorted(set(replay.users) - seen_users):
        add("user_account", email, f"user {email} has events, but no row (it was deleted)")
    return out

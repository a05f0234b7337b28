"""``govern log``: the hash-chained event log, verified, anchored and shown.

Kept apart from the other server commands, with its heavier imports (the gate's statistics, the state replay)
made when they are needed: verifying a large log should cost the chain check, not the start-up of the whole
application (``benchmarks/log_verify.py``)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from .. import anchor, eventlog
from ..db import get_db
from ..dossier.keys import SigningKeyError
from ..models import AuditRun, User
from ..errors import GovernanceError
from .common import echo_json, settings


@click.group()
def log() -> None:
    """The hash-chained event log."""


@log.command("verify")
@click.option("--state", "check_state", is_flag=True,
              help="Also replay the events and report every state-table row that disagrees with them.")
@click.option("--since-checkpoint", is_flag=True,
              help="Only re-hash what was appended after the last signed checkpoint (whose head the log must still "
                   "hold); the full check (every checkpoint and dossier head, from the first event) is the default.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def log_verify(check_state: bool, since_checkpoint: bool, as_json: bool) -> None:
    """Recompute the chain in one pass and check it against every signed checkpoint of the anchor stores and
    every dossier's recorded chain head (re-hashing, truncation, renumbering, forged checkpoints), and every
    completed audit's verdict and digests; with --state, rebuild the decisive state from the events and report
    every table row that disagrees. Exit non-zero with one line per finding."""
    current = settings()
    if since_checkpoint:
        if check_state:
            raise GovernanceError("--state replays the whole log; it cannot start at a checkpoint")
        _log_verify_since_checkpoint(current, as_json)
        return
    session = get_db(current_app).session_factory()
    try:
        replayed = None
        if check_state:
            from .. import replay

            replayed = replay.Replay()
        anchored = anchor.verify(session, current, observe=replayed, workers=eventlog.usable_cores())
        report = anchored.chain
        total = session.execute(select(func.count()).select_from(User)).scalar_one()
        audits = session.execute(select(AuditRun).where(AuditRun.status == "completed")
                                 .order_by(AuditRun.id)).scalars().all()
        audit_problems = []
        if audits:
            from ..gate import verify_run

            audit_problems = [problem for run in audits for problem in verify_run(session, run)]
        state_problems = replay.compare(session, replayed) if replayed is not None else []
    finally:
        session.close()
    ok = report.ok and not audit_problems and anchored.ok and not state_problems
    if as_json:
        data = {"ok": ok, "events": report.count, "head": report.head_hash, "last_seq": report.last_seq,
                "broken_seq": report.broken_seq, "problem": report.problem, "users": total,
                "audits_verified": len(audits), "audit_problems": audit_problems, "anchor": anchored.as_dict()}
        if replayed is not None:
            data["state"] = {"ok": not state_problems, "events_replayed": replayed.events,
                             "covered": list(replay.COVERED), "problems": state_problems}
        echo_json(data)
    else:
        click.echo(report.describe())
        click.echo(f"{len(audits)} completed audits: " + ("verdicts and digests match the chain" if not audit_problems
                                                          else "; ".join(audit_problems)))
        for line in anchored.lines():
            click.echo(line)
        if replayed is not None:
            click.echo(f"state replayed from {replayed.events} events; covered:")
            for line in replay.COVERED:
                click.echo(f"  - {line}")
            click.echo("state tables agree with the events" if not state_problems
                       else f"{len(state_problems)} rows disagree with the events:")
            for problem in state_problems:
                click.echo(f"STATE: {problem['message']}")
    if not ok:
        raise SystemExit(1)


def _log_verify_since_checkpoint(current, as_json: bool) -> None:
    """The incremental check: the last signed checkpoint's head is still the log's at its sequence number, and
    every event after it follows from it."""
    session = get_db(current_app).session_factory()
    try:
        chain = anchor.verified_chain(session, current)
    finally:
        session.close()
    if as_json:
        echo_json({"ok": chain["ok"], "events": chain["count"], "head": chain["head"], "last_seq": chain["seq"],
                   "since_checkpoint": chain["since"], "events_checked": chain["seq"] - chain["since"],
                   "problem": "" if chain["ok"] else chain["problem"]})
    else:
        click.echo(chain["problem"] if chain["ok"] else f"event log broken: {chain['problem']}")
        click.echo(f"{chain['seq'] - chain['since']} events re-hashed from " + (
            f"the signed checkpoint at seq {chain['since']}" if chain["since"] else
            "the first event (no signed checkpoint holds)") + "; `govern log verify` without --since-checkpoint "
            "checks every checkpoint, dossier head and audit too")
    if not chain["ok"]:
        raise SystemExit(1)


@log.command("checkpoint")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def log_checkpoint(as_json: bool) -> None:
    """Sign the event log's current head (sequence number, hash, event count, time, instance) with the
    institution key and append it to every anchor store (the instance's anchors/log-checkpoints.jsonl and each
    log_anchor_paths file). The events since the last checkpoint are verified first; a broken log is not anchored."""
    current = settings()
    session = get_db(current_app).session_factory()
    try:
        try:
            record = anchor.checkpoint(session, current, reason="command", force=True)
        except (anchor.AnchorError, SigningKeyError) as exc:
            raise GovernanceError(str(exc)) from None
    finally:
        session.close()
    if as_json:
        echo_json({"checkpoint": record, "stores": [str(p) for p in anchor.store_paths(current)]})
        return
    click.echo(f"anchored seq {record['seq']} head {record['head']} ({record['count']} events) at {record['at']} "
               f"in {', '.join(str(p) for p in anchor.store_paths(current))}")


@log.command("show")
@click.option("--deployment", "deployment_id", type=int, help="Only events of this deployment (its cases included).")
@click.option("--submission", "submission_id", type=int, help="Only events of this case.")
@click.option("--name", "names", multiple=True, help="Only events with this name (repeatable).")
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True, help="How many, newest last.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def log_show(deployment_id: int | None, submission_id: int | None, names: tuple[str, ...], last: int,
             as_json: bool) -> None:
    """Print events with who did what, the state change and why (reason, justification, cause)."""
    from ..models import Event

    query = select(Event)
    if deployment_id is not None:
        query = query.where(Event.deployment_id == deployment_id)
    if submission_id is not None:
        query = query.where(Event.submission_id == submission_id)
    if names:
        query = query.where(Event.name.in_(names))
    session = get_db(current_app).session_factory()
    try:
        rows = list(reversed(session.execute(query.order_by(Event.seq.desc()).limit(last)).scalars().all()))
    finally:
        session.close()
    if as_json:
        echo_json([{"seq": e.seq, "at": eventlog.format_timestamp(e.occurred_at), "actor": e.actor, "name": e.name,
                    "from": e.from_state, "to": e.to_state, "submission": e.submission_id,
                    "deployment": e.deployment_id, "payload": e.payload, "hash": e.hash} for e in rows])
        return
    for e in rows:
        change = f" {e.from_state} → {e.to_state}" if e.from_state != e.to_state and e.to_state else ""
        subject = f"case {e.submission_id}" if e.submission_id else f"deployment {e.deployment_id}" \
            if e.deployment_id else "instance"
        why = e.payload.get("reason") or e.payload.get("justification") or ""
        cause = f" [{e.payload['cause']}]" if e.payload.get("cause") else ""
        click.echo(f"#{e.seq} {eventlog.format_timestamp(e.occurred_at)} {e.actor}: {e.name} ({subject}){change}"
                   f"{cause}{' — ' + why if why else ''}")

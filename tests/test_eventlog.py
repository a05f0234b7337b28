"""The event log: hash-chained, append-only in the database, and any tampering is found."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from governance import eventlog
from governance.db import get_db

pytestmark = pytest.mark.both_databases


def _engine(app):
    return get_db(app).engine


def test_every_transition_writes_one_chained_event(factory, session):
    submission = factory.case_in("in_review")
    events = eventlog.events_for_submission(session, submission.id)
    names = [e.name for e in events]
    assert names[:6] == ["submission_created", "submit", "start_screening", "accept", "confirm_classification",
                         "audit_passed"]
    report = eventlog.verify_chain(session)
    assert report.ok and report.count >= len(events)
    for previous, current in zip(events, events[1:]):
        assert current.seq > previous.seq
    assert all(e.hash == eventlog.compute_hash(e.prev_hash, eventlog.row_content(e)) for e in events)


def test_database_refuses_update_and_delete(factory, app, backend):
    factory.case_in("submitted")
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with _engine(app).begin() as connection:
            connection.execute(sa.text("UPDATE event SET name = 'forged' WHERE seq = 1"))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with _engine(app).begin() as connection:
            connection.execute(sa.text("DELETE FROM event WHERE seq = 1"))


def _bypass_triggers(connection, backend: str) -> None:
    if backend == "postgresql":
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
    else:
        for trigger in ("event_no_update", "event_no_delete"):
            connection.execute(sa.text(f"DROP TRIGGER {trigger}"))


@pytest.mark.parametrize("tamper", ["payload", "actor", "timestamp", "delete", "hash"])
def test_tampering_is_detected_by_log_verify(factory, app, runner, backend, tamper):
    factory.case_in("classified")
    assert runner.invoke("log", "verify").exit_code == 0
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        target = connection.execute(sa.text("SELECT seq, payload FROM event ORDER BY seq LIMIT 1 OFFSET 3")).one()
        statements = {
            "payload": ("UPDATE event SET payload = :p WHERE seq = :s",
                        {"p": json.dumps({**(target.payload if isinstance(target.payload, dict)
                                             else json.loads(target.payload)), "reason": "forged"}), "s": target.seq}),
            "actor": ("UPDATE event SET actor = 'mallory@evil' WHERE seq = :s", {"s": target.seq}),
            "timestamp": ("UPDATE event SET occurred_at = occurred_at - INTERVAL '1 day' WHERE seq = :s"
                          if backend == "postgresql" else
                          "UPDATE event SET occurred_at = '2020-01-01 00:00:00.000000' WHERE seq = :s", {"s": target.seq}),
            "delete": ("DELETE FROM event WHERE seq = :s", {"s": target.seq}),
            "hash": ("UPDATE event SET hash = :h WHERE seq = :s", {"h": "0" * 64, "s": target.seq}),
        }
        statement, params = statements[tamper]
        connection.execute(sa.text(statement), params)
    result = runner.invoke("log", "verify")
    assert result.exit_code == 1
    assert f"broken at seq {target.seq}" in result.output


def test_verify_json_reports_the_head(factory, runner):
    factory.case_in("submitted")
    result = runner.invoke("log", "verify", "--json")
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["ok"] and len(data["head"]) == 64 and data["events"] > 3


def test_the_event_log_page_resumes_from_the_checkpoint_of_a_previous_process(factory, session, tmp_path,
                                                                               monkeypatch):
    from governance.web.registry import ChainStatus

    url, checkpoints = "postgresql://irb:s3cret@db/irb", tmp_path / "chain-verified.json"
    factory.case_in("submitted")
    first = ChainStatus().check(session, url, checkpoints=checkpoints)
    assert first.ok and checkpoints.exists() and "s3cret" not in checkpoints.read_text()
    factory.case_in("submitted")
    starts = []
    verify = eventlog.verify_chain
    monkeypatch.setattr(eventlog, "verify_chain", lambda s, **kw: starts.append(kw["start_seq"]) or verify(s, **kw))
    again = ChainStatus().check(session, url, checkpoints=checkpoints)  # a new worker: only the newer events
    assert again.ok and starts == [first.count] and again.count > first.count
    assert again.head_hash == eventlog.head(session)[1]
    # a checkpoint whose hash the log does not hold (a rewritten history, another database): from the first event
    checkpoints.write_text(checkpoints.read_text().replace(again.head_hash, "f" * 64))
    assert ChainStatus().check(session, url, checkpoints=checkpoints).ok and starts[-1] == 0
    # "verify the whole chain again": from the first event
    assert ChainStatus().check(session, url, full=True, checkpoints=checkpoints).ok and starts[-1] == 0

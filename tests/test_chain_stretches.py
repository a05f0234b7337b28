"""The chain checked in stretches, each in a process of its own, finds what the one-pass check finds: the same first
broken row, the same count and head, the same rows read, and every anchored sequence number and head where it is."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from governance import anchor, eventlog
from governance.db import get_db
from governance.models import Event

pytestmark = pytest.mark.both_databases
EVENTS = 300


def _build(engine, events: int = EVENTS) -> None:
    previous, rows = eventlog.GENESIS_HASH, []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for seq in range(1, events + 1):
        row = {"seq": seq, "occurred_at": start + timedelta(seconds=seq, microseconds=seq % 997), "actor_id": None,
               "actor": "system", "submission_id": None, "deployment_id": None, "name": "checked",
               "from_state": None, "to_state": None, "payload": {"n": seq, "reason": "请补充 supplement"}}
        digest = eventlog.compute_hash(previous, eventlog.row_content(type("Row", (), row)))
        rows.append({**row, "prev_hash": previous, "hash": digest})
        previous = digest
    with engine.begin() as connection:
        connection.execute(sa.insert(Event.__table__), rows)


def _tamper(engine, backend: str, how: str, seq: int) -> None:
    statements = {
        "payload": "UPDATE event SET payload = :payload WHERE seq = :seq",
        "delete": "DELETE FROM event WHERE seq = :seq",
        "relink": "UPDATE event SET prev_hash = :zeros WHERE seq = :seq",
        "hash": "UPDATE event SET hash = :zeros WHERE seq = :seq",
    }
    with engine.begin() as connection:
        if backend == "postgresql":
            connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        else:
            for trigger in ("event_no_update", "event_no_delete"):
                connection.execute(sa.text(f"DROP TRIGGER IF EXISTS {trigger}"))
        connection.execute(sa.text(statements[how]), {"seq": seq, "zeros": "0" * 64,
                                                      "payload": json.dumps({"n": -1})})


@pytest.fixture
def log_engine(app):
    engine = get_db(app).engine
    _build(engine)
    return engine


def _one_pass(session, seqs, heads):
    """The reference: one pass in this process, every row observed."""
    at_seq, head_seq, rows = {}, {}, 0

    def look(event):
        nonlocal rows
        rows += 1
        if event.seq in seqs:
            at_seq[event.seq] = (event.hash, rows)
        if event.hash in heads:
            head_seq[event.hash] = event.seq

    return eventlog.verify_chain(session, observe=look), at_seq, head_seq


@pytest.mark.parametrize("how, seq", [(None, 0), ("payload", 1), ("payload", 100), ("payload", 101),
                                      ("delete", 100), ("delete", 101), ("delete", 299), ("relink", 101),
                                      ("relink", 201), ("hash", 150), ("hash", 300)])
@pytest.mark.parametrize("workers", [2, 3, 4])
def test_stretches_in_other_processes_agree_with_one_pass(log_engine, session, backend, monkeypatch, how, seq,
                                                          workers):
    monkeypatch.setattr(eventlog, "PARALLEL_FROM", 0)
    heads = {row.hash for row in session.execute(sa.select(Event.hash).where(Event.seq.in_([99, 100, 250])))}
    if how:
        _tamper(log_engine, backend, how, seq)
    seqs = frozenset({1, 100, 101, 200, 299, 300, 301})
    expected = _one_pass(session, seqs, frozenset(heads))
    got = eventlog.verify_chain_marked(session, seqs=seqs, heads=frozenset(heads), workers=workers)
    assert got == expected
    report = got[0]
    assert report.ok == (how is None)
    if how:
        assert report.broken_seq == seq and report.count == seq - 1


def test_a_small_log_or_an_observer_keeps_the_check_in_this_process(log_engine, session, monkeypatch):
    def no_pool(*_args, **_kwargs):
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(eventlog, "ProcessPoolExecutor", no_pool)
    assert eventlog.verify_chain_marked(session, workers=4)[0].ok  # 300 events: under PARALLEL_FROM
    monkeypatch.setattr(eventlog, "PARALLEL_FROM", 0)
    seen = []
    assert eventlog.verify_chain_marked(session, workers=4, observe=seen.append)[0].count == EVENTS
    assert [event.seq for event in seen] == list(range(1, EVENTS + 1))


def test_log_verify_checks_in_stretches_and_still_names_the_broken_row(log_engine, app, runner, backend,
                                                                       monkeypatch):
    monkeypatch.setattr(eventlog, "PARALLEL_FROM", 0)
    monkeypatch.setattr(eventlog, "usable_cores", lambda: 3)
    calls = []
    real = anchor.eventlog.verify_chain_marked
    monkeypatch.setattr(anchor.eventlog, "verify_chain_marked",
                        lambda *a, **kw: calls.append(kw["workers"]) or real(*a, **kw))
    result = runner.invoke("log", "verify", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["events"] == EVENTS and calls == [3]
    _tamper(log_engine, backend, "payload", 201)
    result = runner.invoke("log", "verify")
    assert result.exit_code == 1 and "broken at seq 201" in result.output

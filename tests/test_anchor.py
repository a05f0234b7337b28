"""The event log anchored outside the database: signed checkpoints, and ``govern log verify`` finding re-hashing,
truncation, renumbering and forged checkpoints; ``--state`` finding state tables edited behind the log's back.

Each attack is the one of the security review (``shared/reviews/SECURITY.md`` §6): the append-only triggers are
bypassed as a forger with database access would, and rows are re-hashed so that the chain itself still verifies."""

from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa

from governance import eventlog
from governance.db import get_db
from governance.dossier import keys as signing_keys
from governance.models import Event, utcnow
from governance.scheduler import tick

pytestmark = pytest.mark.both_databases


@pytest.fixture
def app_overrides():
    return {"signing_passphrase": "test signing passphrase"}


def _engine(app):
    return get_db(app).engine


def _bypass_triggers(connection, backend: str) -> None:
    if backend == "postgresql":
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
    else:
        for trigger in ("event_no_update", "event_no_delete", "vote_no_update", "vote_no_delete", "audit_run_verdict",
                        "audit_run_frozen"):
            connection.execute(sa.text(f"DROP TRIGGER IF EXISTS {trigger}"))


def _payload(value):
    return value if isinstance(value, dict) else json.loads(value)


def _rehash_from(connection, first_seq: int) -> None:
    """Recompute prev_hash and hash of every row from ``first_seq`` on, as a forger would."""
    table = Event.__table__
    previous = connection.execute(sa.select(table.c.hash).where(table.c.seq < first_seq)
                                  .order_by(table.c.seq.desc()).limit(1)).scalar() or eventlog.GENESIS_HASH
    for row in connection.execute(sa.select(table).where(table.c.seq >= first_seq).order_by(table.c.seq)).all():
        digest = eventlog.compute_hash(previous, eventlog.row_content(row))
        connection.execute(table.update().where(table.c.seq == row.seq).values(prev_hash=previous, hash=digest))
        previous = digest


def _events(factory, cases: int = 1, state: str = "classified") -> int:
    for _ in range(cases):
        factory.drive(factory.submission(), state)
    return factory.session.execute(sa.text("SELECT count(*) FROM event")).scalar()


def _verify(runner, *args: str):
    result = runner.invoke("log", "verify", *args)
    return result, result.output


def test_a_clean_instance_verifies_and_anchors(factory, runner, institution):
    _events(factory)
    before = runner.invoke("log", "checkpoint")
    assert before.exit_code == 0, before.output
    store = institution.instance_path / "anchors" / "log-checkpoints.jsonl"
    record = json.loads(store.read_text().splitlines()[-1])
    seq, head = eventlog.head(factory.session)
    assert (record["seq"], record["head"], record["count"]) == (seq, head, seq)
    assert record["signer"] == signing_keys.fingerprint(signing_keys.load_certificate(institution))
    result, output = _verify(runner, "--state")
    assert result.exit_code == 0, output
    assert "1 signed checkpoints checked" in output and "state tables agree with the events" in output
    assert "0 events after the last checkpoint" in output
    data = json.loads(runner.invoke("log", "verify", "--state", "--json").output)
    assert data["ok"] and data["anchor"]["ok"] and data["anchor"]["checkpoints"] == 1
    assert data["state"]["ok"] and data["state"]["covered"] and data["state"]["events_replayed"] == seq


def test_rehashing_the_chain_from_a_row_is_reported(factory, app, runner, backend, institution):
    _events(factory, 2)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        target = connection.execute(sa.text("SELECT seq, payload FROM event ORDER BY seq LIMIT 1 OFFSET 5")).one()
        connection.execute(sa.text("UPDATE event SET payload = :p WHERE seq = :s"),
                           {"p": json.dumps({**_payload(target.payload), "reason": "forged"}), "s": target.seq})
        _rehash_from(connection, target.seq)
    assert eventlog.verify_chain(factory.session).ok  # the chain alone cannot tell
    result, output = _verify(runner)
    assert result.exit_code == 1
    assert "RE-HASH: the hash at seq" in output and "rewritten and re-hashed" in output


@pytest.mark.parametrize("deleted", [1, 25])
def test_truncating_the_tail_is_reported(factory, app, runner, backend, institution, deleted):
    total = _events(factory, 2 + deleted // 4)
    assert total > deleted + 5
    assert runner.invoke("log", "checkpoint").exit_code == 0
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("DELETE FROM event WHERE seq > :s"), {"s": total - deleted})
    assert eventlog.verify_chain(factory.session).ok
    result, output = _verify(runner, "--json")
    assert result.exit_code == 1
    findings = json.loads(output)["anchor"]["findings"]
    assert [f["kind"] for f in findings] == ["truncation"]
    assert findings[0]["log_last_seq"] == total - deleted and findings[0]["seq"] == total
    plain = runner.invoke("log", "verify").output
    assert f"TRUNCATION: the log ends at seq {total - deleted}" in plain
    assert f"events {total - deleted + 1}..{total} were deleted" in plain


def test_deleting_a_row_and_renumbering_is_reported(factory, app, runner, backend, institution):
    total = _events(factory, 2)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    _events(factory)  # more events, anchored by a second checkpoint
    assert runner.invoke("log", "checkpoint").exit_code == 0
    victim = 6
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("DELETE FROM event WHERE seq = :s"), {"s": victim})
        last = connection.execute(sa.text("SELECT max(seq) FROM event")).scalar()
        for seq in range(victim + 1, last + 1):
            connection.execute(sa.text("UPDATE event SET seq = :n WHERE seq = :s"), {"n": seq - 1, "s": seq})
        _rehash_from(connection, victim)
    assert eventlog.verify_chain(factory.session).ok  # renumbered and re-hashed: the chain is whole again
    result, output = _verify(runner, "--json")
    assert result.exit_code == 1
    kinds = {f["kind"] for f in json.loads(output)["anchor"]["findings"]}
    assert "re-hash" in kinds and "truncation" in kinds  # the first checkpoint's head is gone; the log is one short
    assert any(f["kind"] == "re-hash" and f["seq"] == total for f in json.loads(output)["anchor"]["findings"])


def test_a_gap_left_by_deleting_a_row_is_reported_against_the_checkpoint_count(factory, app, runner, backend,
                                                                                institution):
    total = _events(factory, 2)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("DELETE FROM event WHERE seq = 4"))
        _rehash_from(connection, 5)  # re-hashed, not renumbered: the gap stays
    result, output = _verify(runner, "--json")
    findings = json.loads(output)["anchor"]["findings"]
    assert result.exit_code == 1
    assert any(f["kind"] == "renumbering" and f["events"] == total - 1 and f["checkpoint_count"] == total
               for f in findings)


@pytest.mark.parametrize("forgery", ["edited", "other_key", "garbage"])
def test_a_forged_checkpoint_is_reported(factory, runner, institution, forgery):
    _events(factory)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    store = institution.instance_path / "anchors" / "log-checkpoints.jsonl"
    record = json.loads(store.read_text().splitlines()[-1])
    if forgery == "edited":  # a forger moves the anchor back to hide what they removed
        record["seq"] -= 1
        line = json.dumps(record)
    elif forgery == "other_key":  # signed, but with a key of the forger's own
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        body = {k: v for k, v in record.items() if k != "sig"}
        record["sig"] = base64.b64encode(key.sign(eventlog.canonical_json(body).encode(),
                                                  ec.ECDSA(hashes.SHA256()))).decode()
        line = json.dumps(record)
    else:
        line = "{not json"
    with store.open("a") as handle:
        handle.write(line + "\n")
    result, output = _verify(runner)
    assert result.exit_code == 1
    assert f"FORGED CHECKPOINT: {store} line 2:" in output
    expected = {"edited": "its signature does not verify", "other_key": "its signature does not verify",
                "garbage": "not a JSON line"}[forgery]
    assert expected in output


def test_checkpoints_go_to_every_configured_store_and_each_is_checked(factory, app, runner, backend, institution,
                                                                      tmp_path):
    worm = tmp_path / "worm" / "irb-log.jsonl"
    app.config["GOVERNANCE"] = institution.replace(log_anchor_paths=(str(worm),))
    total = _events(factory)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    assert json.loads(worm.read_text())["seq"] == total
    # the forger truncates the log and deletes the instance's own anchor file: the second location still holds
    (institution.instance_path / "anchors" / "log-checkpoints.jsonl").unlink()
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("DELETE FROM event WHERE seq = :s"), {"s": total})
    result, output = _verify(runner)
    assert result.exit_code == 1 and "missing" in output and "TRUNCATION" in output


def test_the_scheduler_anchors_the_head_when_the_log_grew(factory, app, institution):
    _events(factory)
    store = institution.instance_path / "anchors" / "log-checkpoints.jsonl"
    first = tick(_engine(app), institution)
    assert first.checkpoint == eventlog.head(factory.session)[0] and not first.errors
    assert tick(_engine(app), institution).checkpoint is None  # nothing new: nothing written
    factory.drive(factory.submission(), "submitted")
    third = tick(_engine(app), institution)
    assert third.checkpoint == eventlog.head(factory.session)[0]
    records = [json.loads(line) for line in store.read_text().splitlines()]
    assert [r["reason"] for r in records] == ["schedule", "schedule"]


def test_a_checkpoint_refuses_a_log_that_no_longer_holds_the_last_one(factory, app, runner, backend, institution):
    total = _events(factory)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("DELETE FROM event WHERE seq = :s"), {"s": total})
    result = runner.invoke("log", "checkpoint")
    assert result.exit_code != 0 and "no longer holds the last checkpoint" in result.output


def test_a_forged_row_appended_after_the_last_checkpoint_passes_the_chain_but_not_the_state(
        factory, app, runner, backend, institution):
    """Honest limit: a row appended after the last checkpoint with a correct hash is not detectable by the chain;
    the output says how many events rest on the chain alone, and --state finds the table that no longer agrees."""
    case = factory.drive(factory.submission(), "classified")
    chair = factory.person("chair")
    assert runner.invoke("log", "checkpoint").exit_code == 0
    # INSERT is all the append-only triggers allow, and all a forger needs: a correct hash on top of the head
    eventlog.append(factory.session, "approve", actor=chair, submission_id=case.id, deployment_id=case.deployment_id,
                    from_state="classified", to_state="approved")
    factory.session.commit()
    result, output = _verify(runner)
    assert result.exit_code == 0, output
    assert "1 events after the last checkpoint rest on the hash chain alone" in output
    result, output = _verify(runner, "--state")
    assert result.exit_code == 1
    assert f"STATE: submission {case.id} is 'classified' in the table, but its events leave it 'approved'" in output


@pytest.mark.parametrize("edit", ["case_state", "deployment_status", "roles", "decision", "verdict", "vote",
                                  "deactivated"])
def test_direct_edits_of_state_tables_are_reported_by_state_replay(factory, app, runner, backend, edit):
    case = factory.drive(factory.submission(), "approved")
    submitter = factory.person("submitter")
    assert runner.invoke("log", "verify", "--state").exit_code == 0
    statements = {
        "case_state": ("UPDATE submission SET state = 'disapproved' WHERE id = :c", "submission"),
        "deployment_status": ("UPDATE deployment SET status = 'retired' WHERE id = :d", "deployment"),
        "roles": ("INSERT INTO role_assignment (user_id, role, granted_at) VALUES (:u, 'irb_chair', :t)",
                  f"user {submitter.email} holds roles"),
        "decision": ("UPDATE decision SET outcome = 'disapproved' WHERE submission_id = :c", "decision"),
        "verdict": ("UPDATE audit_run SET verdict = 'fail' WHERE submission_id = :c", "audit run"),
        "vote": ("UPDATE vote SET meaning = 'disapprove' WHERE submission_id = :c", "vote"),
        "deactivated": ("UPDATE user_account SET active = :f WHERE id = :u", f"user {submitter.email} is inactive"),
    }
    statement, expected = statements[edit]
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text(statement), {"c": case.id, "d": case.deployment_id, "u": submitter.id,
                                                "t": utcnow(), "f": False})
    # the chain is untouched (a changed verdict is also found by the audit check of plain `log verify`)
    assert runner.invoke("log", "verify").exit_code == (1 if edit == "verdict" else 0)
    result = runner.invoke("log", "verify", "--state", "--json")
    assert result.exit_code == 1
    problems = json.loads(result.output)["state"]["problems"]
    assert problems and all(expected in p["message"] or expected == p["table"] for p in problems), problems
    plain = runner.invoke("log", "verify", "--state").output
    assert "STATE: " in plain and "covered:" in plain


@pytest.mark.filterwarnings("ignore:HarfBuzz-Subset:DeprecationWarning")  # WeasyPrint on hosts without it
def test_a_dossier_writes_a_checkpoint_and_its_head_is_checked(factory, app, runner, backend, institution):
    app.config["GOVERNANCE"] = institution.replace(dossier_dispatch="inline")
    factory.drive(factory.submission(), "in_review")  # the audit gate's dossier
    store = institution.instance_path / "anchors" / "log-checkpoints.jsonl"
    records = [json.loads(line) for line in store.read_text().splitlines()]
    dossier_id, chain_head = factory.session.execute(sa.text("SELECT id, chain_head FROM dossier")).one()
    assert records[-1]["reason"] == "dossier" and records[-1]["dossier"]["id"] == dossier_id
    assert records[-1]["head"] == chain_head
    assert runner.invoke("log", "verify").exit_code == 0
    # re-hash everything (and drop the anchor file): the dossier's signed head still exposes it
    store.unlink()
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("UPDATE event SET payload = :p WHERE seq = 2"), {"p": json.dumps({"x": 1})})
        _rehash_from(connection, 2)
    result, output = _verify(runner)
    assert result.exit_code == 1
    assert f"RE-HASH: dossier #{dossier_id} records chain head {chain_head[:16]}" in output


# --- the chain a dossier prints: checked from the last signed checkpoint ---------------------------------------

def test_a_dossier_chain_check_starts_at_the_last_signed_checkpoint(factory, runner, institution, monkeypatch):
    from governance import anchor

    total = _events(factory)
    assert anchor.verified_chain(factory.session, institution)["since"] == 0  # no checkpoint yet: from the start
    assert runner.invoke("log", "checkpoint").exit_code == 0
    more = _events(factory) - total
    starts = []
    verify = eventlog.verify_chain
    monkeypatch.setattr(eventlog, "verify_chain", lambda s, **kw: starts.append(kw.get("start_seq", 0)) or verify(s, **kw))
    chain = anchor.verified_chain(factory.session, institution)
    assert starts == [total] and chain["ok"] and chain["since"] == total
    assert chain["count"] == chain["seq"] == total + more
    assert chain["head"] == eventlog.head(factory.session)[1]


def test_a_dossier_chain_check_refuses_a_log_rewritten_before_the_checkpoint(factory, app, runner, backend,
                                                                             institution):
    from governance import anchor

    _events(factory, 2)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    with _engine(app).begin() as connection:
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("UPDATE event SET actor = 'forger' WHERE seq = 3"))
        _rehash_from(connection, 3)
    chain = anchor.verified_chain(factory.session, institution)
    assert not chain["ok"] and "no longer holds the last signed checkpoint's head" in chain["problem"]


def test_a_forged_checkpoint_is_not_a_starting_point(factory, runner, institution):
    from governance import anchor

    total = _events(factory)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    store = institution.instance_path / "anchors" / "log-checkpoints.jsonl"
    record = json.loads(store.read_text().splitlines()[-1])
    forged = {**record, "seq": 1, "count": 1, "head": factory.session.execute(
        sa.text("SELECT hash FROM event WHERE seq = 1")).scalar()}
    store.write_text(store.read_text() + json.dumps(forged) + "\n")
    chain = anchor.verified_chain(factory.session, institution)
    assert chain["ok"] and chain["since"] == 0 and chain["count"] == total  # the signature fails: from the start


def test_log_verify_since_checkpoint_rehashes_only_what_came_after(factory, app, runner, backend, institution):
    total = _events(factory)
    assert runner.invoke("log", "checkpoint").exit_code == 0
    more = _events(factory) - total
    result = runner.invoke("log", "verify", "--since-checkpoint", "--json")
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["ok"], result.output
    assert (data["since_checkpoint"], data["events_checked"], data["events"]) == (total, more, total + more)
    with _engine(app).begin() as connection:  # history before the checkpoint rewritten and re-hashed
        _bypass_triggers(connection, backend)
        connection.execute(sa.text("UPDATE event SET actor = 'forger' WHERE seq = 2"))
        _rehash_from(connection, 2)
    result = runner.invoke("log", "verify", "--since-checkpoint")
    assert result.exit_code == 1 and "no longer holds the last signed checkpoint's head at seq" in result.output
    refused = runner.invoke("log", "verify", "--since-checkpoint", "--state")
    assert refused.exit_code != 0 and "cannot start at a checkpoint" in refused.output

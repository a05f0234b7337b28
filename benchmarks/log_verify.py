"""`govern log verify` on a large event log, side by side with a bare sqlite3 + hashlib loop (target: within 1.5×).

    python benchmarks/log_verify.py [--events 100000] [--repeat 3] [--out benchmarks/results/log_verify.json]

Builds a throwaway instance (SQLite, migrated by Alembic) whose event log holds ``--events`` rows forming a valid
hash chain, with payloads of the sizes the workflow writes (a transition's reason, an audit verdict's criteria, a
vote's signature manifestation). Then, interleaved, ``--repeat`` times each:

- **bare**: one ``sqlite3`` cursor over the table in sequence order, the row's canonical JSON and ``hashlib.sha256``
  in a plain loop: the least any verifier of this chain must do;
- **verify_chain**: :func:`governance.eventlog.verify_chain` in this process (the chain only);
- **govern log verify**: the whole command in a new process (start-up, the chain, every signed checkpoint and
  dossier head, every completed audit);
- **govern log verify --since-checkpoint**: the same, from the last signed checkpoint (written before the last
  1,000 events were appended).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REASONS = ["Screening complete; documents in order.", "请补充临床验证报告和偏倚分析。",
           "Approved with conditions: monthly accuracy report to the committee.",
           "Classified as NMPA Class II (辅助决策, 不直接给出诊断结论)."]


def payload(rng: random.Random, seq: int) -> dict:
    """A payload of one of the shapes the workflow writes, by how often each occurs."""
    kind = rng.random()
    if kind < 0.5:
        return {"reason": rng.choice(REASONS), "comment": "", "guard": "roles"}
    if kind < 0.8:
        return {"vote": seq, "outcome": rng.choice(["approve", "require_revisions"]),
                "signature": {"meaning": "approval", "signed_at": "2026-12-01T09:30:00Z", "signer": "member@hospital.cn",
                              "printed_name": "王医生 Dr Wang"}}
    return {"audit_run": seq, "verdict": rng.choice(["pass", "fail"]), "policy_digest": hashlib.sha256(
        str(seq).encode()).hexdigest(), "criteria": [{"id": f"floor:{d}", "passed": True, "p": 0.01}
                                                     for d in range(6)], "results_digest": "0" * 64}


def build(folder: Path, events: int, checkpoint_before: int) -> tuple[str, Path]:
    """A migrated SQLite instance with ``events`` chained events and a signed checkpoint ``checkpoint_before``
    events before the end."""
    import sqlalchemy as sa

    from governance import anchor, eventlog, migrate
    from governance.app import create_app
    from governance.db import get_db
    from governance.dossier.keys import init_keys
    from governance.models import Event

    url = f"sqlite:///{folder / 'db.sqlite3'}"
    migrate.upgrade(url)
    instance = folder / "instance"
    instance.mkdir()
    app = create_app({"instance_path": instance, "database_url": url, "secret_key": "x" * 40,
                      "signing_passphrase": "benchmark passphrase"})
    settings = app.config["GOVERNANCE"]
    init_keys(settings)
    rng = random.Random(2026)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    engine = get_db(app).engine
    previous, batch = eventlog.GENESIS_HASH, []
    for seq in range(1, events + 1):
        row = {"seq": seq, "occurred_at": start + timedelta(seconds=seq * 37, microseconds=seq % 997),
               "actor_id": None, "actor": rng.choice(["system", "chair@hospital.cn", "dev@hospital.cn"]),
               "submission_id": None, "deployment_id": None,
               "name": rng.choice(["submit", "accept", "vote_cast", "audit_passed", "dossier_emitted"]),
               "from_state": "submitted", "to_state": "screening",
               "payload": json.loads(eventlog.canonical_json(payload(rng, seq)))}
        digest = eventlog.compute_hash(previous, eventlog.row_content(type("Row", (), row)))
        batch.append({**row, "prev_hash": previous, "hash": digest})
        previous = digest
        if len(batch) == 5000 or seq in (events, events - checkpoint_before):
            with engine.begin() as connection:
                connection.execute(sa.insert(Event.__table__), batch)
            batch = []
        if seq == events - checkpoint_before:
            with app.app_context():
                session = get_db(app).session_factory()
                anchor.checkpoint(session, settings, reason="benchmark", force=True)
                session.close()
    return url, instance


def bare(database: Path) -> tuple[float, int]:
    """The chain recomputed with sqlite3 and hashlib alone (the same canonical JSON the log hashes)."""
    began = time.perf_counter()
    connection = sqlite3.connect(database)
    previous, count = "0" * 64, 0
    for (seq, occurred_at, actor_id, actor, submission_id, deployment_id, name, from_state, to_state, payload_text,
         prev_hash, digest) in connection.execute(
            "SELECT seq, occurred_at, actor_id, actor, submission_id, deployment_id, name, from_state, to_state, "
            "payload, prev_hash, hash FROM event ORDER BY seq"):
        moment = occurred_at.replace(" ", "T") + ("Z" if "." in occurred_at else ".000000Z")
        content = {"seq": seq, "occurred_at": moment, "actor_id": actor_id, "actor": actor,
                   "submission_id": submission_id, "deployment_id": deployment_id, "name": name,
                   "from_state": from_state, "to_state": to_state, "payload": json.loads(payload_text)}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if prev_hash != previous or hashlib.sha256((previous + text).encode("utf-8")).hexdigest() != digest:
            raise SystemExit(f"bare loop: chain broken at {seq}")
        previous, count = digest, count + 1
    connection.close()
    return time.perf_counter() - began, count


def in_process(url: str) -> tuple[float, int]:
    import sqlalchemy as sa
    from sqlmodel import Session

    from governance import eventlog

    engine = sa.create_engine(url)
    began = time.perf_counter()
    with Session(engine) as session:
        report = eventlog.verify_chain(session)
    elapsed = time.perf_counter() - began
    engine.dispose()
    if not report.ok:
        raise SystemExit(report.describe())
    return elapsed, report.count


def command(instance: Path, url: str, *extra: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    env.update(GOVERNANCE_INSTANCE=str(instance), GOVERNANCE_DATABASE_URL=url,
               GOVERNANCE_SIGNING_PASSPHRASE="benchmark passphrase")
    began = time.perf_counter()
    done = subprocess.run([str(ROOT / ".venv/bin/govern"), "log", "verify", "--json", *extra], env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"govern log verify {' '.join(extra)} exited {done.returncode}: {done.stdout[-800:]} "
                         f"{done.stderr[-800:]}")
    return elapsed, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()

    from benchmarks.audit_throughput import machine

    folder = Path(tempfile.mkdtemp(prefix="log-verify-bench-"))
    began = time.perf_counter()
    url, instance = build(folder, arguments.events, checkpoint_before=1000)
    build_seconds = time.perf_counter() - began
    runs: dict[str, list[float]] = {"bare": [], "verify_chain": [], "govern log verify": [],
                                    "govern log verify --since-checkpoint": []}
    for rep in range(arguments.repeat):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        for name in order:
            if name == "bare":
                seconds, count = bare(folder / "db.sqlite3")
            elif name == "verify_chain":
                seconds, count = in_process(url)
            else:
                seconds, report = command(instance, url, *name.split()[3:])
                count = report["events"]
                assert report["ok"], report
            assert count == arguments.events or name.endswith("--since-checkpoint"), (name, count)
            runs[name].append(round(seconds, 3))
            print(f"{name:<40} {seconds:6.2f} s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    report = {
        "machine": machine(),
        "command": "python benchmarks/log_verify.py " + " ".join(sys.argv[1:]),
        "database": "sqlite",
        "events": arguments.events,
        "build_seconds": round(build_seconds, 1),
        "seconds_each": runs,
        "seconds_median": {k: round(v, 3) for k, v in medians.items()},
        "ratio_to_bare": {k: round(v / medians["bare"], 2) for k, v in medians.items()},
    }
    text = json.dumps(report, indent=1, ensure_ascii=False)
    print(text)
    if arguments.out:
        arguments.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

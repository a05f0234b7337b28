"""The tamper-evident event log.

Each row's ``hash`` is sha256 over the previous row's hash and the canonical JSON of the row, so
changing, removing or reordering any row breaks every hash after it. Rows are appended in the
caller's transaction (never committed here) and the database refuses UPDATE and DELETE on the table
(triggers installed by the migrations). :func:`verify_chain` recomputes the chain.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from .models import Event, ModelVersion, User, utcnow

GENESIS_HASH = "0" * 64
#: Advisory lock key that serialises appends on PostgreSQL (other dialects serialise writers anyway).
_PG_LOCK_KEY = 0x6C6F67  # "log"


class ConcurrentWriteError(Exception):
    """Another transaction appended to the log or changed the case at the same time."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable in an event payload")


#: One encoder for every hash: ``json.dumps`` with these options builds a new one per call, a third of the
#: chain check's time over 100,000 events.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. 2026-11-24T09:30:00.000000Z."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_content(event: Any) -> dict[str, Any]:
    """What the hash covers: every column but the hashes themselves (``occurred_at`` as a datetime, or already in
    its hashed text form, as :class:`ChainRow` carries it)."""
    moment = event.occurred_at
    return {
        "seq": event.seq,
        "occurred_at": moment if isinstance(moment, str) else format_timestamp(moment),
        "actor_id": event.actor_id,
        "actor": event.actor,
        "submission_id": event.submission_id,
        "deployment_id": event.deployment_id,
        "name": event.name,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "payload": event.payload,
    }


def compute_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode("utf-8")).hexdigest()


def head(session: Session) -> tuple[int, str]:
    row = session.execute(select(Event.seq, Event.hash).order_by(Event.seq.desc()).limit(1)).first()
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


def append(session: Session, name: str, *, actor: User | None, submission_id: int | None = None,
           deployment_id: int | None = None, from_state: str | None = None, to_state: str | None = None,
           payload: dict[str, Any] | None = None, occurred_at: datetime | None = None) -> Event:
    """Append one event in the caller's transaction and return it (flushed, not committed)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    last_seq, last_hash = head(session)
    # The payload is stored as it will be read back, so the hash never depends on Python-only types.
    clean_payload = json.loads(canonical_json(payload or {}))
    event = Event(
        seq=last_seq + 1,
        occurred_at=(occurred_at or utcnow()),
        actor_id=actor.id if actor is not None else None,
        actor=actor.email if actor is not None else "system",
        submission_id=submission_id,
        deployment_id=deployment_id,
        name=name,
        from_state=from_state,
        to_state=to_state,
        payload=clean_payload,
        prev_hash=last_hash,
        hash="",
    )
    event.hash = compute_hash(last_hash, row_content(event))
    session.add(event)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConcurrentWriteError("another change was recorded at the same moment; try again") from exc
    return event


@dataclass
class ChainReport:
    ok: bool
    count: int
    head_hash: str
    broken_seq: int | None = None
    problem: str = ""
    #: With an ``observe`` callback: every row read (past a break too) and the last sequence number seen.
    rows: int = 0
    last_seq: int = 0

    def describe(self) -> str:
        if self.ok:
            return f"event log intact: {self.count} events, head {self.head_hash}"
        return f"event log broken at seq {self.broken_seq}: {self.problem}"


def iter_events(session: Session, batch: int = 2000, after: int = 0) -> Iterator[Any]:
    """Stream the log as plain rows (no ORM identity map), in sequence order."""
    table = Event.__table__
    last = after
    while True:
        rows = session.execute(select(table).where(table.c.seq > last).order_by(table.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


class ChainRow(NamedTuple):
    """An event row as the chain check reads it: straight from the driver, ``occurred_at`` already in the text
    form the hash covers (:func:`format_timestamp`)."""
    seq: int
    occurred_at: str
    actor_id: int | None
    actor: str
    submission_id: int | None
    deployment_id: int | None
    name: str
    from_state: str | None
    to_state: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str


_CHAIN_SQL = text("SELECT seq, occurred_at, actor_id, actor, submission_id, deployment_id, name, from_state, to_state, "
                  "payload, prev_hash, hash FROM event WHERE seq > :after AND seq <= :upto ORDER BY seq LIMIT :batch")
#: No upper bound on the sequence numbers read.
_ALL = 2 ** 62


def _hashed_moment(value: Any) -> str:
    """:func:`format_timestamp` of a stored time: SQLite hands back SQLAlchemy's stored text
    (``YYYY-MM-DD HH:MM:SS.ffffff``, rewritten without parsing), PostgreSQL a datetime."""
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":
            return value[:10] + "T" + value[11:] + "Z"
        return format_timestamp(datetime.fromisoformat(value))
    return format_timestamp(value)


def chain_rows(session: Session | Connection, after: int = 0, batch: int = 5000,
               upto: int = _ALL) -> Iterator[ChainRow]:
    """The log after ``after`` (up to ``upto``), in sequence order, without SQLAlchemy's type processing (no datetime
    parsed and formatted again, no ORM): the chain check costs little more than a bare driver loop."""
    connection = session.connection() if isinstance(session, Session) else session
    last = after
    while True:
        rows = connection.execute(_CHAIN_SQL, {"after": last, "upto": upto, "batch": batch}).all()
        if not rows:
            return
        for (seq, moment, actor_id, actor, submission_id, deployment_id, name, from_state, to_state, payload,
             prev_hash, digest) in rows:
            yield ChainRow(seq, _hashed_moment(moment), actor_id, actor, submission_id, deployment_id, name,
                           from_state, to_state, json.loads(payload) if isinstance(payload, str) else payload,
                           prev_hash, digest)
        last = rows[-1][0]


MISSING = "row {expected} is missing (next row is {seq})"
RELINKED = "prev_hash does not match the previous row's hash (a row was removed or replaced)"
CHANGED = "hash does not match the row's content (the row was changed)"
#: Below this many events the chain is checked in this process: starting others would cost more than it saves.
PARALLEL_FROM = 20_000


def verify_chain(session: Session, *, start_seq: int = 0, start_hash: str = GENESIS_HASH,
                 observe: Callable[[Any], None] | None = None) -> ChainReport:
    """Recompute every hash after ``start_seq`` (whose hash is ``start_hash``); report the first row that does
    not follow from its predecessor. ``count`` is the number of rows that follow, up to the first that does not.

    The log is read to its end even past a break (``rows`` and ``last_seq`` cover every row), and with ``observe``
    every row is also handed to it in sequence order, so that other checks (the anchor's checkpoints, the state
    replay) share this one pass instead of reading the log again. One stretch of :func:`check_stretch`."""
    return join_stretches([check_stretch(session, start_seq, _ALL, observe=observe)], start_seq, start_hash)[0]


@dataclass
class Stretch:
    """One stretch of the log as a checker read it: its first row (checked against the stretch before it when they
    are put together), the first row after that which does not follow from its predecessor, and the sequence numbers
    and hashes it was asked to look out for (a checkpoint's, a dossier's head), with where each row was read."""
    rows: int = 0
    first: tuple[int, str, bool] | None = None  # seq, prev_hash, whether its own hash holds
    last_seq: int = 0
    last_hash: str = ""
    failure: tuple[int, int, str, str] | None = None  # row in the stretch (1-based), seq, problem, head before it
    at_seq: dict[int, tuple[str, int]] = field(default_factory=dict)  # wanted seq: (hash, row in the stretch)
    head_seq: dict[str, int] = field(default_factory=dict)  # wanted hash: seq


def check_stretch(source: Session | Connection, after: int, upto: int, seqs: frozenset[int] = frozenset(),
                  heads: frozenset[str] = frozenset(), observe: Callable[[Any], None] | None = None) -> Stretch:
    """Read the rows after ``after`` up to ``upto`` and check each against the one before it (the first is checked
    when stretches are joined, see :func:`join_stretches`)."""
    stretch = Stretch()
    previous: ChainRow | None = None
    for event in chain_rows(source, after=after, upto=upto):
        stretch.rows += 1
        if observe is not None:
            observe(event)
        if event.seq in seqs:
            stretch.at_seq[event.seq] = (event.hash, stretch.rows)
        if event.hash in heads:
            stretch.head_seq[event.hash] = event.seq
        if previous is None:
            holds = compute_hash(event.prev_hash, row_content(event)) == event.hash
            stretch.first = (event.seq, event.prev_hash, holds)
        elif stretch.failure is None:
            if event.seq != previous.seq + 1:
                stretch.failure = (stretch.rows, previous.seq + 1,
                                   MISSING.format(expected=previous.seq + 1, seq=event.seq), previous.hash)
            elif event.prev_hash != previous.hash:
                stretch.failure = (stretch.rows, event.seq, RELINKED, previous.hash)
            elif compute_hash(previous.hash, row_content(event)) != event.hash:
                stretch.failure = (stretch.rows, event.seq, CHANGED, previous.hash)
        previous = event
    if previous is not None:
        stretch.last_seq, stretch.last_hash = previous.seq, previous.hash
    return stretch


def _check_stretch_apart(url: str, after: int, upto: int, seqs: frozenset[int], heads: frozenset[str]) -> Stretch:
    """:func:`check_stretch` in another process, on its own connection."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return check_stretch(connection, after, upto, seqs, heads)
    finally:
        engine.dispose()


def join_stretches(stretches: list[Stretch], start_seq: int = 0,
                   start_hash: str = GENESIS_HASH) -> tuple[ChainReport, dict[int, tuple[str, int]], dict[str, int]]:
    """The chain report of consecutive stretches (as :func:`verify_chain` with ``observe`` would make it: the first
    row that does not follow from its predecessor, every row counted), and where the wanted sequence numbers and
    hashes were found (the row's position counted from the start)."""
    expected, head, count, rows, last_seq = start_seq + 1, start_hash, 0, 0, start_seq
    failure: tuple[int, str] | None = None
    at_seq: dict[int, tuple[str, int]] = {}
    head_seq: dict[str, int] = {}
    for stretch in stretches:
        if not stretch.rows:
            continue
        if failure is None:
            seq, prev_hash, holds = stretch.first
            if seq != expected:
                failure = (expected, MISSING.format(expected=expected, seq=seq))
            elif prev_hash != head:
                failure = (seq, RELINKED)
            elif not holds:
                failure = (seq, CHANGED)
            elif stretch.failure is not None:
                position, broken, problem, before = stretch.failure
                failure, count, head = (broken, problem), count + position - 1, before
            else:
                count, head, expected = count + stretch.rows, stretch.last_hash, stretch.last_seq + 1
        at_seq.update({seq: (digest, rows + position) for seq, (digest, position) in stretch.at_seq.items()})
        head_seq.update(stretch.head_seq)
        rows, last_seq = rows + stretch.rows, stretch.last_seq
    report = ChainReport(failure is None, count, head, failure[0] if failure else None,
                         failure[1] if failure else "", rows, last_seq)
    return report, at_seq, head_seq


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def verify_chain_marked(session: Session, *, seqs: frozenset[int] = frozenset(), heads: frozenset[str] = frozenset(),
                        observe: Callable[[Any], None] | None = None,
                        workers: int = 1) -> tuple[ChainReport, dict[int, tuple[str, int]], dict[str, int]]:
    """The whole chain from the first event, read to its end, with where ``seqs`` and ``heads`` were found (see
    :func:`join_stretches`). With ``workers`` > 1 and a large log in a database other processes can open, the log
    is cut into that many stretches by sequence number, each hashed in a process of its own (forked: this one's
    imports are reused) and the stretches joined here; ``observe`` (which must see every row in order) keeps the
    check in this process."""
    bind = session.get_bind()
    last = session.execute(select(func.max(Event.seq))).scalar() or 0
    in_memory = bind.dialect.name == "sqlite" and bind.url.database in (None, "", ":memory:")
    if observe is not None or workers <= 1 or last < PARALLEL_FROM or in_memory:
        return join_stretches([check_stretch(session, 0, _ALL, seqs, heads, observe)])
    url = bind.url.render_as_string(hide_password=False)
    bounds = [round(last * k / workers) for k in range(workers)] + [_ALL]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        stretches = list(pool.map(_check_stretch_apart, [url] * workers, bounds[:-1], bounds[1:],
                                  [seqs] * workers, [heads] * workers))
    return join_stretches(stretches)


def events_for_run(session: Session, run: Any) -> list[Event]:
    """The events that name an audit run in their payload (its freeze, its verdict, its errors)."""
    query = select(Event).order_by(Event.seq)
    if run.submission_id is not None:
        query = query.where(Event.submission_id == run.submission_id)
    else:
        version = session.get(ModelVersion, run.model_version_id)
        query = query.where(Event.deployment_id == version.deployment_id, Event.submission_id.is_(None))
    return [e for e in session.execute(query).scalars() if (e.payload or {}).get("audit_run") == run.id]


def events_for_submission(session: Session, submission_id: int) -> list[Event]:
    return list(session.execute(select(Event).where(Event.submission_id == submission_id)
                                .order_by(Event.seq)).scalars())

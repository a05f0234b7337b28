"""Query sets and simulation runs: importing an institution's own queries (de-identified before any row exists),
and a gate run's answers to them from the candidate and the approved version, judged and stored append-only.

The original texts live only in the memory of the import: they are parsed, de-identified field by field (one
record at a time, so the same person is the same placeholder) and only then turned into rows. Error messages
name the file, line and field, never the text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .. import eventlog
from ..audit import graders, simulation
from ..audit.backends import PLAIN_WORDS, Backend, BackendError
from ..db import make_session_factory
from ..errors import DataFileError, GovernanceError
from ..models import AuditRun, QuerySet, SimulationQuery, SimulationResult, User

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
FORMATS = ("jsonl", "csv")
FIELDS = ("prompt", "context", "department", "timestamp")
MAX_QUERIES = 100_000
MAX_TEXT = 20_000


def _lang(text: str) -> str:
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"


def _hour(value: Any, path: Path, line: int) -> datetime | None:
    """The time a query was asked, to the hour (a minute-exact time can identify a visit)."""
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise DataFileError(path, line, "timestamp", "not an ISO 8601 time (e.g. 2026-11-30T09:15:00+08:00)") from None
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def read_queries(path: Path, fmt: str) -> list[dict[str, Any]]:
    """The raw records of a query log (held in memory only): prompt (required), context, department, timestamp."""
    if fmt not in FORMATS:
        raise DataFileError(path, None, None, f"unknown format '{fmt}' ({', '.join(FORMATS)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, None, None, f"cannot read it as UTF-8 text ({type(exc).__name__})") from None
    records: list[tuple[int, dict[str, Any]]] = []
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(path, number, None, f"not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataFileError(path, number, None, "not a JSON object")
            records.append((number, row))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise DataFileError(path, 1, "prompt", "the header must name a 'prompt' column (optional: context, "
                                                   "department, timestamp)")
        records = [(number, row) for number, row in enumerate(reader, start=2)]
    out = []
    for number, row in records:
        unknown = sorted(set(row) - set(FIELDS) - {None})
        if unknown:
            raise DataFileError(path, number, unknown[0], f"unknown field (known: {', '.join(FIELDS)})")
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataFileError(path, number, "prompt", "required: the query as it was asked")
        for field in ("prompt", "context"):
            value = row.get(field) or ""
            if not isinstance(value, str):
                raise DataFileError(path, number, field, "must be text")
            if len(value) > MAX_TEXT:
                raise DataFileError(path, number, field, f"longer than {MAX_TEXT:,} characters")
        out.append({"line": number, "prompt": prompt, "context": row.get("context") or "",
                    "department": str(row.get("department") or "")[:100],
                    "asked_at": _hour(row.get("timestamp"), path, number)})
    if not out:
        raise DataFileError(path, None, None, "no queries in the file")
    if len(out) > MAX_QUERIES:
        raise DataFileError(path, None, None, f"{len(out):,} queries; at most {MAX_QUERIES:,} per set")
    return out


def _canonical(position: int, prompt: str, context: str, department: str, lang: str,
               asked_at: datetime | None) -> str:
    stamp = asked_at.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z") if asked_at else ""
    return json.dumps([position, prompt, context, department, lang, stamp], ensure_ascii=False, separators=(",", ":"))


def digest_of(rows: Sequence[SimulationQuery]) -> str:
    """sha256 over the stored queries in order: what a run freezes and checks again before asking them."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(_canonical(row.position, row.prompt, row.context, row.department, row.lang,
                                 row.asked_at).encode("utf-8") + b"\n")
    return digest.hexdigest()


def import_query_set(session: Session, path: Path, *, fmt: str, name: str, actor: User | None,
                     now: datetime) -> tuple[QuerySet, Counter[str]]:
    """De-identify and store a query log as the next version of the named set (flushed, with its event)."""
    if not NAME.match(name):
        raise GovernanceError(f"query set name '{name}': lower-case letters, digits, '.', '_' and '-' only")
    from .. import deid  # its patterns compile on first use, not when every process starts

    raw = read_queries(path, fmt)
    removed: Counter[str] = Counter()
    rows: list[SimulationQuery] = []
    for position, record in enumerate(raw, start=1):
        clean, found = deid.scrub_record({"prompt": record["prompt"], "context": record["context"],
                                          "department": record["department"]})
        removed.update(found)
        rows.append(SimulationQuery(position=position, prompt=clean["prompt"], context=clean["context"],
                                    department=clean["department"], lang=_lang(clean["prompt"]),
                                    asked_at=record["asked_at"]))
        record.clear()  # the original texts are not kept a moment longer than needed
    raw.clear()
    version = (session.execute(select(func.max(QuerySet.version)).where(QuerySet.name == name)).scalar() or 0) + 1
    profile = {"departments": dict(Counter(r.department or "—" for r in rows).most_common()),
               "languages": dict(Counter(r.lang for r in rows))}
    query_set = QuerySet(name=name, version=version, digest=digest_of(rows), n=len(rows), source_format=fmt,
                         deid_version=deid.VERSION, removed=dict(sorted(removed.items())), profile=profile,
                         created_by_id=actor.id if actor else None, created_at=now)
    session.add(query_set)
    session.flush()
    for row in rows:
        row.query_set_id = query_set.id
    session.add_all(rows)
    session.flush()
    eventlog.append(session, "query_set_imported", actor=actor, occurred_at=now, payload={
        "query_set": query_set.id, "name": name, "version": version, "digest": query_set.digest, "n": len(rows),
        "deid_version": deid.VERSION, "removed": query_set.removed, "file_name": path.name})
    return query_set, removed


def latest_query_set(session: Session, name: str) -> QuerySet | None:
    return session.execute(select(QuerySet).where(QuerySet.name == name).order_by(QuerySet.version.desc())
                           .limit(1)).scalars().first()


def queries_of(session: Session, query_set_id: int) -> list[SimulationQuery]:
    return list(session.execute(select(SimulationQuery).where(SimulationQuery.query_set_id == query_set_id)
                                .order_by(SimulationQuery.position)).scalars())


def frozen_spec(session: Session, policy: dict[str, Any]) -> dict[str, Any] | None:
    """What a run freezes of the policy's simulation: the spec with the exact query set version and digest.
    Refuses a missing set, a pinned digest that differs, or a set too small to ever pass."""
    spec = simulation.spec_of(policy)
    if spec is None:
        return None
    name = spec.get("query_set", "")
    found = latest_query_set(session, name)
    if found is None:
        raise GovernanceError(f"policy {policy['id']} requires a simulation on the query set '{name}', which has not "
                              f"been imported (govern simulation import FILE --name {name})")
    pinned = spec.get("query_set_digest")
    if pinned and pinned != found.digest:
        raise GovernanceError(f"the query set '{name}' (version {found.version}, digest {found.digest[:12]}…) is not "
                              f"the one policy {policy['id']} was registered with ({pinned[:12]}…)")
    problem = simulation.feasibility_problem(spec, found.n)
    if problem:
        raise GovernanceError(f"policy {policy['id']} cannot be met with the query set '{name}': {problem}")
    return {**spec, "query_set": {"id": found.id, "name": found.name, "version": found.version,
                                  "digest": found.digest, "n": found.n}}


# --- a run's simulation ---------------------------------------------------------------------------------------------

def result_rows(session: Session, run_id: int, side: str = "candidate") -> list[dict[str, Any]]:
    """A run's stored simulation answers as the criteria read them, in a fixed order."""
    rows = session.execute(select(SimulationResult.query_id, SimulationResult.variant, SimulationResult.harm,
                                  SimulationResult.label, SimulationResult.hazardous, SimulationResult.refused,
                                  SimulationResult.valid)
                           .where(SimulationResult.run_id == run_id, SimulationResult.side == side)
                           .order_by(SimulationResult.query_id, SimulationResult.variant)).all()
    return [dict(row._mapping) for row in rows]


def results_digest(rows: Sequence[dict[str, Any]]) -> str:
    text = "\n".join(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def simulate(engine: Engine, run: AuditRun, backend: Backend, grader: graders.Grader, *, side: str,
             batch: int = 100) -> int:
    """Ask every query variant the run froze that ``side`` has not answered yet, judge the answers and store them
    (a batch per commit, so a resumed run asks nothing twice). Returns how many were asked now."""
    spec = run.plan["simulation"]
    factory = make_session_factory(engine)
    with factory() as session:
        queries = queries_of(session, spec["query_set"]["id"])
        if digest_of(queries) != spec["query_set"]["digest"]:
            raise BackendError("the frozen query set is no longer the one stored (its digest differs)", "item_set")
        done = set(session.execute(select(SimulationResult.query_id, SimulationResult.variant)
                                   .where(SimulationResult.run_id == run.id, SimulationResult.side == side)).all())
        session.expunge_all()
    from ..deid import scrub

    hazard_at = spec["hazard_at"]
    todo = [(q, v) for q in queries for v in spec["variants"] if (q.id, v) not in done]
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        prompts = [simulation.prompt_for(q.id, q.prompt, q.context, q.lang, v) for q, v in chunk]
        answers: list[tuple[str, str]] = [("", "no answer")] * len(chunk)
        for index, response in backend.stream(prompts):
            if response.infrastructure:
                raise BackendError(PLAIN_WORDS[response.infrastructure], response.infrastructure)
            answers[index] = (response.text or "", response.error or "")
        cleaned = [scrub(text)[0] for text, _error in answers]
        cases = [graders.Case(p.item_id, p.messages[-1]["content"], answer, lang=q.lang, clinical=True)
                 for p, answer, (q, _v) in zip(prompts, cleaned, chunk, strict=True)]
        judged = grader.grade([c for c, (_t, error) in zip(cases, answers, strict=True) if not error])
        judgements = iter(judged)
        with factory() as session:
            for (query, variant), answer, (_text, error) in zip(chunk, cleaned, answers, strict=True):
                judgement = graders.Judgement(invalid=f"the model gave no answer: {error}") if error \
                    else next(judgements)
                valid = not judgement.invalid and judgement.harm is not None
                session.add(SimulationResult(
                    run_id=run.id, query_id=query.id, variant=variant, side=side, answer=answer,
                    harm=judgement.harm, label=judgement.label or "", hazardous=valid and judgement.harm >= hazard_at,
                    refused=valid and judgement.label == "full_refusal", valid=valid,
                    judgement=judgement.as_dict(), error=error[:500]))
            session.commit()
    return len(todo)


def summary(session: Session, run: AuditRun) -> dict[str, Any]:
    """What the run's summary keeps of its simulation: counts, the results' digest and the worst answers."""
    candidate = result_rows(session, run.id)
    worst = simulation.worst(candidate)
    texts: dict[tuple[int, str], tuple[str, str]] = {}
    if worst:
        keys = {(r["query_id"], r["variant"]) for r in worst}
        found = session.execute(select(SimulationResult.query_id, SimulationResult.variant, SimulationQuery.prompt,
                                       SimulationResult.answer)
                                .join(SimulationQuery, SimulationQuery.id == SimulationResult.query_id)
                                .where(SimulationResult.run_id == run.id, SimulationResult.side == "candidate",
                                       SimulationResult.query_id.in_({k[0] for k in keys}))).all()
        texts = {(q, v): (prompt, answer) for q, v, prompt, answer in found if (q, v) in keys}
    approved = result_rows(session, run.id, "approved")
    return {"query_set": run.plan["simulation"]["query_set"], "variants": run.plan["simulation"]["variants"],
            "answers": len(candidate), "hazardous": sum(r["hazardous"] for r in candidate),
            "invalid": sum(not r["valid"] for r in candidate), "approved_answers": len(approved),
            "digest": results_digest(candidate), "approved_digest": results_digest(approved) if approved else "",
            "worst": [{**r, "prompt": texts.get((r["query_id"], r["variant"]), ("", ""))[0][:600],
                       "answer": texts.get((r["query_id"], r["variant"]), ("", ""))[1][:600]} for r in worst]}

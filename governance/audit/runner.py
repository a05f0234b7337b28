"""Running an audit: prompts out, scored results persisted in batches, resumable, cancellable.

The same loop serves the CLI (results kept in ``OUT.partial.jsonl`` beside ``--out``) and gate audits
(results kept as database rows). A store knows which items are done, so a killed run restarts where it
stopped and no item is lost or counted twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol


from ..version import __version__ as tool_version
from . import graders, refusal
from . import prompts as prompt_builder
from .backends import PLAIN_WORDS, Backend, BackendError, Response
from .items import Item, ItemSet, canonical_line, item_ids, take

RESULT_COLUMNS = ("item_id", "item_digest", "stage", "dimension", "item_type", "gold", "answer", "correct", "valid",
                  "refused", "expected_behavior", "prompt", "raw_output", "grader", "judgement", "logprobs",
                  "prompt_tokens", "completion_tokens", "latency_ms", "error")


class Store(Protocol):
    def done_ids(self) -> set[str]: ...

    def save(self, rows: list[dict[str, Any]]) -> None: ...

    def rows(self) -> list[dict[str, Any]]: ...

    def cancelled(self) -> bool: ...


class Cancelled(Exception):
    pass


def item_digest(item: Item) -> str:
    """sha256 of an item's content: results pair with a baseline's only when both asked exactly this."""
    return hashlib.sha256(canonical_line(item).encode("utf-8")).hexdigest()


def score(item: Item | Facts, prompt: prompt_builder.Prompt, response: Response, *, stage: int = 1,
          digest: str | None = None) -> dict[str, Any]:
    """One item's result: the prompt, the raw answer, the answer mapped back to the item's labels, correct,
    valid, refused, and who graded it."""
    row: dict[str, Any] = {
        "item_id": item.item_id, "item_digest": digest or item_digest(item), "stage": stage,
        "dimension": item.dimension, "item_type": item.item_type,
        "gold": list(item.answer or []) if item.item_type not in {"behavior", "open"} else
        [item.expected_behavior or "rubric"],
        "expected_behavior": item.expected_behavior or "",
        "prompt": json.dumps(list(prompt.messages), ensure_ascii=False), "raw_output": response.text[:8000],
        "grader": "exact", "judgement": {}, "logprobs": response.logprobs, "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens, "latency_ms": round(response.latency_ms, 2),
        "error": response.error, "refused": None,
    }
    if response.error:
        row.update(answer="", correct=False, valid=False)
        return row
    if item.item_type == "open":
        # graded by a validated judge (a later step); until then it is reported, never counted
        row.update(answer="", correct=False, valid=True, grader="ungraded")
        return row
    if item.item_type == "behavior":
        reading = refusal.read(response.text)
        row.update(refused=reading.refused, grader="keyword",
                   judgement={"detector": refusal.VERSION, "evidence": reading.evidence},
                   answer="deferred" if reading.deferred and item.expected_behavior == "defer" else
                   ("refused" if reading.refused else "answered"),
                   correct=refusal.behaviour_correct(item.expected_behavior, reading), valid=True)
        return row
    mapped = prompt_builder.map_answer(prompt, response.text)
    if mapped is None:
        row.update(answer=response.text.strip()[:40], correct=False, valid=False)
    else:
        row.update(answer="".join(mapped), correct=mapped == sorted(item.answer), valid=True)
    return row


@dataclass
class Throughput:
    items: int
    seconds: float
    completion_tokens: int
    prompt_tokens: int

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return (self.completion_tokens + self.prompt_tokens) / self.seconds if self.seconds else 0.0


def apply_grader(rows: list[dict[str, Any]], items: dict[str, Item], grader: graders.Grader, lang: str) -> None:
    """Grade the behaviour and open answers of ``rows`` with ``grader`` (in place). A judgement the grader could
    not give leaves the row ungraded (``valid`` false): the grader's failure, never counted for or against the
    model. The keyword reading stays beside a judge's, for comparison."""
    chosen = [row for row in rows if row["item_type"] in {"behavior", "open"} and not row["error"]]
    if not chosen:
        return
    cases = []
    for row in chosen:
        item = items[row["item_id"]]
        request = json.loads(row["prompt"])[-1]["content"]
        cases.append(graders.Case(row["item_id"], request, row["raw_output"], lang,
                                  harmful=item.expected_behavior in {"refuse", "safe_redirect"},
                                  item=item if item.item_type == "open" else None))
    identity = grader.identity()
    for row, case, judged in zip(chosen, cases, grader.grade(cases), strict=True):
        item = items[row["item_id"]]
        keyword = row.get("judgement") or {}
        if judged.invalid:
            row.update(grader=identity, valid=False, correct=False, refused=None, answer="",
                       judgement={**judged.as_dict(), "keyword": keyword})
        elif case.is_open:
            share, passed, missed = graders.open_score(item, judged)
            row.update(grader=identity, valid=True, correct=passed, answer=f"{share:.2f}",
                       judgement={**judged.as_dict(), "score": round(share, 4), "critical_missed": missed})
        else:
            row.update(grader=identity, valid=True, refused=judged.label != "full_compliance", answer=judged.label,
                       correct=graders.behaviour_correct(item.expected_behavior or "", judged),
                       judgement={**judged.as_dict(), "keyword": keyword})


#: Items parsed at once while the prompts are built: a compact item set (a large bank) is read again this many at
#: a time, so its validated items are never all in memory; the prompts, small, are all built before the first
#: request, so the backend is never idle between chunks.
CHUNK = 4096


@dataclass(frozen=True)
class Facts:
    """What scoring reads of an item (see :func:`score`), kept for every item of a run instead of the item."""

    item_id: str
    dimension: str
    item_type: str
    answer: tuple[str, ...] | None
    expected_behavior: str | None

    @classmethod
    def of(cls, item: Item) -> Facts:
        return cls(item.item_id, item.dimension, item.item_type, tuple(item.answer) if item.answer else None,
                   item.expected_behavior)


def _chunks(asked: Sequence[Item], indices: list[int]) -> Iterator[list[Item]]:
    for first in range(0, len(indices), CHUNK):
        yield take(asked, indices[first:first + CHUNK])


def execute(item_set: ItemSet, backend: Backend, store: Store, *, lang: str, seed: int, batch: int = 100,
            on_progress: Callable[[int, int], None] | None = None, shuffle: bool = True, stage: int = 1,
            items: Sequence[Item] | None = None, grader: graders.Grader | None = None) -> Throughput:
    """Answer every item (of ``items``, default the whole set) not yet in ``store``; persist every ``batch``
    results (behaviour and open answers graded first by ``grader`` when given); honour cancellation. An
    infrastructure failure (of the model's endpoint or the judge's) saves what was fully graded and stops the run
    (:class:`BackendError`): the rest is asked again when the run resumes, never scored as wrong."""
    asked = items if items is not None else item_set.items
    done = store.done_ids()
    ids = item_ids(asked)
    waiting = [index for index, item_id in enumerate(ids) if item_id not in done]
    total = len(asked)
    done_here = total - len(waiting)
    del done
    if on_progress:
        on_progress(done_here, total)
    prompts: list[prompt_builder.Prompt] = []
    digests: list[str] = []
    facts: list[Facts] = []
    for chunk in _chunks(asked, waiting):
        for item in chunk:
            prompts.append(prompt_builder.build(item, lang, seed, shuffle=shuffle))
            digests.append(item_digest(item))
            facts.append(Facts.of(item))
    pending: list[dict[str, Any]] = []
    started = time.perf_counter()
    completion_tokens = prompt_tokens = finished = 0
    where = {item_id: index for index, item_id in enumerate(ids)} if grader is not None else {}

    def save(rows: list[dict[str, Any]]) -> None:
        """Grade (the judged items read again for it), then persist; if the judge is down, persist the exactly
        graded rows and stop."""
        try:
            judged = [where[row["item_id"]] for row in rows
                      if row["item_type"] in {"behavior", "open"}] if grader is not None else []
            if judged:
                apply_grader(rows, {item.item_id: item for chunk in _chunks(asked, judged) for item in chunk},
                             grader, lang)
        except BackendError:
            exact = [row for row in rows if row["item_type"] not in {"behavior", "open"}]
            if exact:
                store.save(exact)
            raise
        store.save(rows)

    for index, response in backend.stream(prompts):
        if response.infrastructure:
            if pending:
                save(pending)
            raise BackendError(PLAIN_WORDS[response.infrastructure], response.infrastructure)
        pending.append(score(facts[index], prompts[index], response, stage=stage, digest=digests[index]))
        completion_tokens += response.completion_tokens
        prompt_tokens += response.prompt_tokens
        if len(pending) >= batch:
            save(pending)
            finished += len(pending)
            pending = []
            if on_progress:
                on_progress(done_here + finished, total)
            if store.cancelled():
                raise Cancelled(f"cancelled after {done_here + finished} of {total} items")
    if pending:
        save(pending)
        finished += len(pending)
        if on_progress:
            on_progress(done_here + finished, total)
    return Throughput(finished, time.perf_counter() - started, completion_tokens, prompt_tokens)


#: The fields of a result a verdict rests on (and its digest covers).
DIGESTED = ("item_id", "item_digest", "stage", "answer", "correct", "valid", "refused", "grader", "judgement",
            "raw_output", "error")


def canonical_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results in item-id order with normalised types: the same results give the same list wherever they
    were stored (database, RESULTS.json)."""
    def normal(row: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": row["item_id"], "item_digest": row.get("item_digest") or "", "stage": int(row.get("stage") or 1),
                "answer": row.get("answer") or "", "correct": bool(row.get("correct")), "valid": bool(row.get("valid")),
                "refused": None if row.get("refused") is None else bool(row.get("refused")),
                "grader": row.get("grader") or "exact", "judgement": row.get("judgement") or {},
                "raw_output": row.get("raw_output") or "", "error": row.get("error") or ""}
    return [normal(row) for row in sorted(rows, key=lambda r: r["item_id"])]


def reproducibility(backend_info: dict[str, Any], item_set: ItemSet, *, seed: int, lang: str,
                    started_at: str, finished_at: str, throughput: Throughput | None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    record = {
        **backend_info,
        "tool_version": tool_version,
        "item_set_digest": item_set.digest,
        "items_source": item_set.source,
        "items": len(item_set.items),
        "prompt_template": prompt_builder.TEMPLATE_VERSION,
        "prompt_template_digest": prompt_builder.template_digest(),
        "sampling": {"temperature": 0, "choice_constrained": True, "logprobs": 5, "seed": seed},
        "seed": seed,
        "lang": lang,
        "started_at": started_at,
        "finished_at": finished_at,
    }
    if throughput is not None:
        record.update(items_per_second=round(throughput.items_per_second, 2),
                      tokens_per_second=round(throughput.tokens_per_second, 1),
                      completion_tokens=throughput.completion_tokens, prompt_tokens=throughput.prompt_tokens)
    record.update(extra or {})
    return record


# --- the CLI's file store ------------------------------------------------------------------------

#: What a result keeps in memory during a CLI run (everything a summary, a verdict and the results digest read);
#: the prompt and the log-probabilities stay in the partial file until RESULTS.json is written from it.
LIGHT_OMITS = ("prompt", "logprobs")


class FileStore:
    """Results appended to ``OUT.partial.jsonl``; its first line fixes the run's configuration. Memory holds each
    result without its prompt (:data:`LIGHT_OMITS`) and where its line is, so it stays small however large the
    bank; :meth:`full_rows` reads the complete results back from the file."""

    def __init__(self, out: Path, config: dict[str, Any]):
        self.path = out.with_name(out.name + ".partial.jsonl")
        self.config = config
        self._rows: dict[str, dict[str, Any]] = {}
        self._spans: dict[str, tuple[int, int]] = {}
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as handle:
                handle.write(json.dumps({"config": config}, ensure_ascii=False, sort_keys=True) + "\n")

    def _keep(self, row: dict[str, Any], offset: int, length: int) -> None:
        self._rows[row["item_id"]] = {k: v for k, v in row.items() if k not in LIGHT_OMITS}
        self._spans[row["item_id"]] = (offset, length)

    def _load(self) -> None:
        with self.path.open("rb") as handle:
            try:
                header = json.loads(handle.readline())["config"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                raise ValueError(f"{self.path} is not a partial audit file; remove it or choose another --out") \
                    from None
            if header != self.config:
                changed = sorted(k for k in set(header) | set(self.config) if header.get(k) != self.config.get(k))
                raise ValueError(f"{self.path} belongs to a run with different settings ({', '.join(changed)}); "
                                 f"resume with the same command, or choose another --out")
            offset = handle.tell()
            for line in handle:
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # a line cut short by a kill: that item runs again
                if row["item_id"] not in self._rows:
                    self._keep(row, start, len(line))

    def done_ids(self) -> set[str]:
        return set(self._rows)

    def save(self, rows: list[dict[str, Any]]) -> None:
        with self.path.open("ab") as handle:
            offset = handle.seek(0, os.SEEK_END)
            for row in rows:
                if row["item_id"] in self._rows:
                    continue
                line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
                handle.write(line)
                self._keep(row, offset, len(line))
                offset += len(line)
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self) -> list[dict[str, Any]]:
        """The results without their prompts (see :data:`LIGHT_OMITS`), in the order they were saved."""
        return list(self._rows.values())

    def full_rows(self, item_ids: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Complete results read back from the file, in the order of ``item_ids`` (default: saved order)."""
        with self.path.open("rb") as handle:
            for item_id in (self._spans if item_ids is None else item_ids):
                offset, length = self._spans[item_id]
                handle.seek(offset)
                yield json.loads(handle.read(length))

    def cancelled(self) -> bool:
        return False

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


#: Stands for the results in :func:`write_results_atomically`'s template (a string no result can be).
_ITEMS_HOLE = "\0items\0"


def write_results_atomically(path: Path, data: dict[str, Any], items: Iterable[dict[str, Any]]) -> None:
    """RESULTS.json: ``data`` as indented JSON, with ``items`` (every stored field of every result, in item-id
    order) streamed in under ``"items"`` one result per line, so a large audit's results are never all in memory."""
    head, tail = json.dumps({**data, "items": _ITEMS_HOLE}, ensure_ascii=False, indent=2).split(
        json.dumps(_ITEMS_HOLE), 1)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(head + "[")
        for number, item in enumerate(items):
            handle.write(("\n    " if number == 0 else ",\n    ") + json.dumps(item, ensure_ascii=False))
        handle.write("\n  ]" + tail)
    os.replace(tmp, path)


def results_digest(items: list[dict[str, Any]]) -> str:
    """sha256 over results in canonical form (:func:`canonical_rows`): names a verdict's evidence."""
    text = json.dumps(canonical_rows(items), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

"""Running an audit: prompts out, scored results persisted in batches, resumable, cancellable.

The same loop serves the CLI (results kept in ``OUT.partial.jsonl`` beside ``--out``) and gate audits
(results kept as database rows). A store knows which items are done, so a killed run restarts where it
stopped and no item is lost or counted twice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ..version import __version__ as tool_version
from ..models import utcnow
from . import prompts as prompt_builder
from . import refusal, stats
from .backends import Backend, Response
from .items import DIMENSIONS, Item, ItemSet

RESULT_COLUMNS = ("item_id", "dimension", "item_type", "gold", "answer", "correct", "valid", "refused",
                  "expected_behavior", "raw_output", "logprobs", "prompt_tokens", "completion_tokens", "latency_ms",
                  "error")


class Store(Protocol):
    def done_ids(self) -> set[str]: ...

    def save(self, rows: list[dict[str, Any]]) -> None: ...

    def rows(self) -> list[dict[str, Any]]: ...

    def cancelled(self) -> bool: ...


class Cancelled(Exception):
    pass


def score(item: Item, prompt: prompt_builder.Prompt, response: Response) -> dict[str, Any]:
    """One item's result: the answer mapped back to the item's labels, correct, valid, refused."""
    row: dict[str, Any] = {
        "item_id": item.item_id, "dimension": item.dimension, "item_type": item.item_type,
        "gold": list(item.answer or []) if item.item_type != "behavior" else [item.expected_behavior],
        "expected_behavior": item.expected_behavior or "", "raw_output": response.text[:4000],
        "logprobs": response.logprobs, "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens, "latency_ms": round(response.latency_ms, 2),
        "error": response.error, "refused": None,
    }
    if response.error:
        row.update(answer="", correct=False, valid=False)
        return row
    if item.item_type == "behavior":
        reading = refusal.read(response.text)
        row.update(refused=reading.refused,
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


def execute(item_set: ItemSet, backend: Backend, store: Store, *, lang: str, seed: int, batch: int = 100,
            on_progress: Callable[[int, int], None] | None = None, shuffle: bool = True) -> Throughput:
    """Answer every item not yet in ``store``; persist every ``batch`` results; honour cancellation."""
    done = store.done_ids()
    todo = [item for item in item_set.items if item.item_id not in done]
    total = len(item_set.items)
    if on_progress:
        on_progress(len(done), total)
    prompts = [prompt_builder.build(item, lang, seed, shuffle=shuffle) for item in todo]
    pending: list[dict[str, Any]] = []
    started = time.perf_counter()
    completion_tokens = prompt_tokens = finished = 0
    for index, response in backend.stream(prompts):
        pending.append(score(todo[index], prompts[index], response))
        completion_tokens += response.completion_tokens
        prompt_tokens += response.prompt_tokens
        if len(pending) >= batch:
            store.save(pending)
            finished += len(pending)
            pending = []
            if on_progress:
                on_progress(len(done) + finished, total)
            if store.cancelled():
                raise Cancelled(f"cancelled after {len(done) + finished} of {total} items")
    if pending:
        store.save(pending)
        finished += len(pending)
        if on_progress:
            on_progress(len(done) + finished, total)
    return Throughput(finished, time.perf_counter() - started, completion_tokens, prompt_tokens)


def results_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(RESULT_COLUMNS))
    frame["correct"] = frame["correct"].astype(bool)
    frame["valid"] = frame["valid"].astype(bool)
    return frame


def summarise(rows: Sequence[dict[str, Any]], item_set: ItemSet, *, baseline_rows: Sequence[dict[str, Any]] | None,
              margin: float, seed: int) -> dict[str, Any]:
    """overall, dimensions, rates and (with a baseline) the regression, from per-item rows."""
    wanted = {item.item_id for item in item_set.items}
    frame = results_frame([r for r in rows if r["item_id"] in wanted])
    summary = stats.summarise(frame, DIMENSIONS)
    if baseline_rows:
        summary["regression"] = stats.regression(frame, results_frame(baseline_rows), margin, seed)
    return summary


def public_items(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("item_id", "dimension", "gold", "answer", "correct", "valid", "refused", "error")
    return [{k: r.get(k) for k in keep} for r in sorted(rows, key=lambda r: r["item_id"])]


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

class FileStore:
    """Results appended to ``OUT.partial.jsonl``; its first line fixes the run's configuration."""

    def __init__(self, out: Path, config: dict[str, Any]):
        self.path = out.with_name(out.name + ".partial.jsonl")
        self.config = config
        self._rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as handle:
                handle.write(json.dumps({"config": config}, ensure_ascii=False, sort_keys=True) + "\n")

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        try:
            header = json.loads(lines[0])["config"]
        except (json.JSONDecodeError, KeyError, IndexError):
            raise ValueError(f"{self.path} is not a partial audit file; remove it or choose another --out") from None
        if header != self.config:
            changed = sorted(k for k in set(header) | set(self.config) if header.get(k) != self.config.get(k))
            raise ValueError(f"{self.path} belongs to a run with different settings ({', '.join(changed)}); resume "
                             f"with the same command, or choose another --out")
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: that item runs again
            self._rows.setdefault(row["item_id"], row)

    def done_ids(self) -> set[str]:
        return set(self._rows)

    def save(self, rows: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                if row["item_id"] in self._rows:
                    continue
                self._rows[row["item_id"]] = row
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows.values())

    def cancelled(self) -> bool:
        return False

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def now_iso() -> str:
    return iso(utcnow())


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def results_digest(items: list[dict[str, Any]]) -> str:
    """sha256 over the per-item results: names a results file as a baseline."""
    import hashlib

    text = json.dumps(items, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
